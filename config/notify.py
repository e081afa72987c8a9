"""Delivery channels: how a notification leaves facmon (webhook, group robots, e-mail, MQTT).

Kept beside ``config.models`` (which imports it) so the models file stays about the site itself.
A site declares its channels once under ``channels``; a person lists the ids of the channels that
reach them in ``contacts``. Tokens, signing secrets and passwords are never written in the file:
``*_env`` fields name the environment variables they are read from when a message is sent, so
rotating a secret needs no config change and a leaked config file leaks no secret.

:func:`notify_problems` checks the references between channels and people on the raw YAML data,
so the loader can point at the file and line of each problem.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from config.broker import MqttProtocol, MqttTls
from config.durations import Duration

__all__ = [
    "MQTT_TOPIC_FIELDS",
    "Channel",
    "ChannelTls",
    "DingtalkChannel",
    "EmailChannel",
    "FeishuChannel",
    "MqttChannel",
    "WebhookChannel",
    "WecomChannel",
    "notify_problems",
]

Loc = tuple[str | int, ...]

# Same pattern as config.models.Ident (the loader recognises it for a friendly message).
Ident = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Identifier: letters, digits, '_', '-', '.'; at most 64 characters",
    ),
]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers facmon sets itself on webhook requests; config may not override them.
_OWN_HEADERS = frozenset(
    {"content-type", "content-length", "host", "idempotency-key"}
    | {"x-facmon-timestamp", "x-facmon-signature"}
)
# Placeholders a channel's MQTT topic template may use.
MQTT_TOPIC_FIELDS = frozenset(
    {"site", "recipient", "kind", "priority", "building", "device", "ticket"}
)


def _env_name(v: str) -> str:
    if not _ENV_NAME.match(v):
        raise ValueError(
            f"must be the name of an environment variable (letters, digits and '_', not "
            f"starting with a digit), e.g. FACMON_WEBHOOK_SECRET; got {v!r}"
        )
    return v


EnvName = Annotated[str, AfterValidator(_env_name)]


def _http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return v


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Channel(_Model):
    id: Ident = Field(description="Channel id, referenced by people's 'contacts' and escalation")
    timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="Longest one delivery attempt may take (connect, send, answer)",
    )

    @field_validator("timeout")
    @classmethod
    def _sane_timeout(cls, v: timedelta) -> timedelta:
        if not timedelta(milliseconds=100) <= v <= timedelta(minutes=2):
            raise ValueError("must be between 100ms and 2m")
        return v


class WebhookChannel(_Channel):
    type: Literal["webhook"] = Field(
        description="POST a JSON document to your own endpoint (ticketing, SMS gateway, ...)"
    )
    url: HttpUrl = Field(description="Endpoint the JSON is posted to (http or https)")
    secret_env: EnvName | None = Field(
        default=None,
        description="Environment variable holding the HMAC-SHA256 key; when set, requests carry "
        "X-Facmon-Timestamp and X-Facmon-Signature: sha256=<hex of HMAC(key, "
        "'<timestamp>.<body>')>",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (not secret), e.g. {X-Site: s1}"
    )
    headers_env: dict[str, EnvName] = Field(
        default_factory=dict,
        description="Headers whose values are secrets: header name -> environment variable, "
        "e.g. {Authorization: FACMON_HOOK_AUTH}",
    )

    @field_validator("headers", "headers_env")
    @classmethod
    def _valid_headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower() in _OWN_HEADERS:
                raise ValueError(f"header {name!r} is set by facmon and cannot be configured")
        return v

    @model_validator(mode="after")
    def _no_twice(self) -> WebhookChannel:
        both = sorted({h.lower() for h in self.headers} & {h.lower() for h in self.headers_env})
        if both:
            raise ValueError(f"header(s) {', '.join(both)} given in both headers and headers_env")
        return self


class _RobotChannel(_Channel):
    url: HttpUrl | None = Field(
        default=None,
        description="Robot webhook URL. It contains the robot's token: prefer url_env",
    )
    url_env: EnvName | None = Field(
        default=None, description="Environment variable holding the robot's full webhook URL"
    )
    mention: bool = Field(
        default=True, description="@mention the person the message is for, when possible"
    )

    @model_validator(mode="after")
    def _one_url(self) -> _RobotChannel:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url_env' (recommended) or 'url'")
        return self


class WecomChannel(_RobotChannel):
    type: Literal["wecom"] = Field(
        description="WeCom (企业微信) group robot; the URL ends in ?key=<token>. A mention by "
        "phone is only possible in a text message, so messages that @ someone are plain text "
        "and the others markdown"
    )


class DingtalkChannel(_RobotChannel):
    type: Literal["dingtalk"] = Field(
        description="DingTalk (钉钉) custom group robot; the URL ends in ?access_token=<token>"
    )
    secret_env: EnvName | None = Field(
        default=None,
        description="Environment variable holding the robot's signing secret (加签, SEC...); "
        "requests then carry timestamp and sign",
    )


class FeishuChannel(_RobotChannel):
    type: Literal["feishu"] = Field(
        description="Feishu/Lark (飞书) custom group robot. Custom robots cannot @ by phone: a "
        "mention uses the person's e-mail address"
    )
    secret_env: EnvName | None = Field(
        default=None,
        description="Environment variable holding the robot's signing secret (签名校验)",
    )


class EmailChannel(_Channel):
    type: Literal["email"] = Field(
        description="E-mail through an SMTP server, to each person's email"
    )
    host: str = Field(min_length=1, description="SMTP server host name or IP address")
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="SMTP port; default 587 for starttls, 465 for ssl, 25 for none",
    )
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="starttls (upgrade a plain connection), ssl (TLS from the start, 'SMTPS') "
        "or none (only for a relay on the same host)",
    )
    ca_file: Path | None = Field(
        default=None, description="CA certificates (PEM) to verify the server; default: system"
    )
    username_env: EnvName | None = Field(
        default=None, description="Environment variable holding the SMTP user name"
    )
    password_env: EnvName | None = Field(
        default=None, description="Environment variable holding the SMTP password"
    )
    sender: str = Field(
        description="From address, e.g. 'facmon <facmon@example.com>'; its domain also names "
        "the Message-ID"
    )

    @field_validator("sender")
    @classmethod
    def _has_address(cls, v: str) -> str:
        if "@" not in v or any(c in v for c in "\r\n"):
            raise ValueError("must be an e-mail address, e.g. 'facmon <facmon@example.com>'")
        return v

    @model_validator(mode="after")
    def _login_pair(self) -> EmailChannel:
        if self.password_env is not None and self.username_env is None:
            raise ValueError("password_env needs username_env")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"starttls": 587, "ssl": 465, "none": 25}[self.security]


ChannelTls = MqttTls
"""The TLS block of an ``mqtt`` channel: the same as the ``mqtt`` collector's."""


class MqttChannel(_Channel):
    type: Literal["mqtt"] = Field(
        description="Publish each message as JSON to an MQTT topic (pagers, displays, apps)"
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host name or address")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 for TLS)")
    topic: str = Field(
        default="facmon/{site}/pages/{recipient}",
        description="Topic template; may use {site}, {recipient}, {kind}, {priority}, "
        "{building}, {device} and {ticket}",
    )
    qos: Literal[0, 1, 2] = Field(
        default=1,
        description="1 waits for the broker's PUBACK (at least once); 0 is fire-and-forget",
    )
    protocol: MqttProtocol = Field(default="5", description="MQTT protocol version: 3.1.1 or 5")
    username_env: EnvName | None = Field(
        default=None, description="Environment variable holding the broker user name"
    )
    password_env: EnvName | None = Field(
        default=None, description="Environment variable holding the broker password"
    )
    tls: ChannelTls | None = Field(default=None, description="TLS settings; omit for plain TCP")

    @field_validator("topic")
    @classmethod
    def _valid_template(cls, v: str) -> str:
        if not v or "\x00" in v:
            raise ValueError("must be a non-empty topic")
        if "+" in v or "#" in v:
            raise ValueError("a topic to publish to cannot contain the wildcards + or #")
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(v) if name is not None]
        except ValueError as e:
            raise ValueError(f"bad template: {e}") from None
        unknown = sorted({n for n in names if n not in MQTT_TOPIC_FIELDS})
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)} (use "
                f"{', '.join('{' + n + '}' for n in sorted(MQTT_TOPIC_FIELDS))})"
            )
        return v

    @model_validator(mode="after")
    def _login_pair(self) -> MqttChannel:
        if self.password_env is not None and self.username_env is None:
            raise ValueError("password_env needs username_env")
        return self


Channel = Annotated[
    WebhookChannel | WecomChannel | DingtalkChannel | FeishuChannel | EmailChannel | MqttChannel,
    Field(discriminator="type"),
]


def notify_problems(data: Any) -> Iterator[tuple[Loc, str]]:
    """Cross-references on the raw config: unique channel ids, and every person's contacts
    name a declared channel (an e-mail channel also needs the person's 'email')."""
    if not isinstance(data, Mapping):
        return
    channels: dict[str, Mapping[str, Any]] = {}
    raw = data.get("channels")
    for i, ch in enumerate(raw if isinstance(raw, list) else []):
        cid = ch.get("id") if isinstance(ch, Mapping) else None
        if not isinstance(cid, str):
            continue
        if cid in channels:
            yield ("channels", i, "id"), f"duplicate channel id '{cid}'"
        else:
            channels[cid] = ch
    oncall = data.get("oncall")
    people = oncall.get("people") if isinstance(oncall, Mapping) else None
    for pi, person in enumerate(people if isinstance(people, list) else []):
        contacts = person.get("contacts") if isinstance(person, Mapping) else None
        if not isinstance(contacts, list):
            continue
        assert isinstance(person, Mapping)
        seen: set[str] = set()
        for ci, cid in enumerate(contacts):
            if not isinstance(cid, str):
                continue
            loc: Loc = ("oncall", "people", pi, "contacts", ci)
            if cid in seen:
                yield loc, f"channel '{cid}' is listed twice"
                continue
            seen.add(cid)
            ch = channels.get(cid)
            if ch is None:
                known = ", ".join(channels) or "none declared under 'channels'"
                yield loc, f"unknown channel '{cid}' (declared: {known})"
            elif ch.get("type") == "email" and not person.get("email"):
                yield loc, f"channel '{cid}' sends e-mail but this person has no 'email' address"
