"""Process logging: human-readable text (the default) or one JSON object per line.

JSON is for log shippers (journald -> Loki, Docker's json-file -> Elasticsearch): every line
is one object with ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, plus the
fields a call passes in ``extra`` (``device``, ``config_file``, ...) and ``exception`` with the
traceback when there is one. The format comes from ``--log-format`` or ``FACMON_LOG_FORMAT``.

Secrets: every value registered with :func:`redact` (the config's ``SecretStr`` fields,
``FACMON_API_TOKEN``, a generated demo token) is replaced by ``***`` in every line, whatever
the format, so a token that reaches a message or a traceback by accident still stays out of
the logs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, SecretBytes, SecretStr

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
FORMAT_ENV = "FACMON_LOG_FORMAT"
MASK = "***"
_HANDLER_NAME = "facmon"
# Shorter values would mask ordinary words; no real token is this short.
_MIN_SECRET = 6

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def redact(values: Iterable[str | None]) -> None:
    """Mask these values in every log line from now on."""
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET)


def secret_values(model: BaseModel) -> list[str]:
    """Every ``SecretStr``/``SecretBytes`` value in a pydantic model (a site config), nested
    models, lists and dicts included."""
    return list(_walk_secrets(model))


def _walk_secrets(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, SecretBytes):
        yield value.get_secret_value().decode("utf-8", "replace")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk_secrets(getattr(value, name))
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _walk_secrets(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_secrets(v)


def _mask(text: str) -> str:
    with _secrets_lock:
        secrets = list(_secrets)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        return _mask(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = _mask(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = _mask(record.exc_text)
        if record.stack_info:
            out["stack"] = _mask(self.formatStack(record.stack_info))
        # Extra fields are data from the caller: anything JSON cannot hold is shown as text.
        return _mask(json.dumps(out, ensure_ascii=False, default=str))


def resolve_format(flag: str | None, env: Mapping[str, str] | None = None) -> LogFormat:
    """``--log-format`` if given, else ``FACMON_LOG_FORMAT``, else text."""
    source = "--log-format" if flag else FORMAT_ENV
    value = (flag or (os.environ if env is None else env).get(FORMAT_ENV, "") or "text").lower()
    for known in LOG_FORMATS:
        if value == known:
            return known
    raise ValueError(f"{source}: {value!r} is not one of {', '.join(LOG_FORMATS)}")


def setup_logging(level: str, fmt: LogFormat = "text") -> None:
    """Configure the root logger for a facmon process; a second call replaces the handler
    the first added. Like ``logging.basicConfig``, it adds no handler when someone else
    configured the root logger already (pytest running ``main()`` in-process)."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == _HANDLER_NAME]
    for h in ours:
        root.removeHandler(h)
    if ours or not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # Python warnings go through logging too, so a JSON log stays JSON on every line.
    logging.captureWarnings(True)
    # pymodbus logs every failed request at ERROR; the collector logs failures once per episode.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # Alembic narrates every plugin and migration step at INFO; a user needs its warnings.
    logging.getLogger("alembic").setLevel(logging.WARNING)
