"""InfluxDB line protocol for :class:`Reading` records, built as plain strings.

One line per reading::

    <metric>,<tag>=<v>,... value=<float>,quality=<int>i <microseconds since the epoch>

The tag set is ``device``, ``unit`` (when not empty) and ``reading.tags``, sorted by key as
InfluxDB prefers. ``quality`` is a field, not a tag: a point's identity in InfluxDB is
(measurement, tag set, time), and the identity of a reading is ``(device, metric, time)``, so only
values that cannot change between replays of the same sample may be tags.

The escaped ``measurement,tags`` prefix is cached per distinct (metric, device, unit, tags): a
site has a few thousand of them, while a writer encodes hundreds of thousands of lines a second.
A :class:`~store.columnar.ReadingBatch` (what the outbox hands the store) is encoded column-wise
with Arrow compute, never building a ``Reading`` per row. The client library's ``Point`` class is
several times slower than either path and is not used.

Only names that InfluxDB 1.x and 2.x/3.x parse the same way are accepted: a backslash that
would escape a following special character (or end the name), a newline, an empty name, a
measurement starting with ``#`` (a comment line) and non-finite values raise
:class:`LineProtocolError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from store.columnar import ReadingBatch
from store.reading import EPOCH, Reading, from_us

RESERVED_TAG_KEYS = frozenset({"device", "unit", "value", "quality", "time"})
"""Keys ``Reading.tags`` may not use: the encoder's own tags and fields, and InfluxDB's time."""

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_TAG_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_AFTER_BACKSLASH = frozenset(",= \\")
_ONE_US = timedelta(microseconds=1)
_QUALITY = {0: ",quality=0i ", 1: ",quality=1i ", 2: ",quality=2i "}
_CACHE_LIMIT = 100_000

PrefixKey = tuple[str, str, str, tuple[tuple[str, str], ...]]


class LineProtocolError(ValueError):
    """A reading cannot be written as line protocol (the message names the reading)."""


def _check_text(s: str, what: str) -> None:
    if not s:
        raise LineProtocolError(f"empty {what}")
    if min(s) < " ":
        raise LineProtocolError(f"{what} {s!r} contains a line break or control character")
    if "\\" in s:
        # InfluxDB 1.x keeps "\\" as two characters, 2.x reads it as one: only a backslash
        # that escapes nothing is read the same way by both.
        for i, ch in enumerate(s):
            if ch == "\\" and (i + 1 == len(s) or s[i + 1] in _AFTER_BACKSLASH):
                raise LineProtocolError(
                    f"{what} {s!r}: a backslash before ',', '=', ' ', '\\' or at the end "
                    "is read differently by InfluxDB versions"
                )


def escape_measurement(name: str) -> str:
    """Escape a measurement name (commas and spaces)."""
    _check_text(name, "measurement")
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} starts with '#' (a comment line)")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_tag(text: str, what: str = "tag") -> str:
    """Escape a tag key or value (commas, spaces and equals signs)."""
    _check_text(text, what)
    return text.translate(_TAG_ESCAPES)


def tag_set(device: str, unit: str, tags: Mapping[str, str]) -> str:
    """The escaped, key-sorted ``,k=v...`` tag set; empty tag values are left out."""
    pairs: dict[str, str] = {}
    for k, v in tags.items():
        if k in RESERVED_TAG_KEYS:
            raise LineProtocolError(f"tag key {k!r} is reserved ({', '.join(RESERVED_TAG_KEYS)})")
        if v:
            pairs[k] = v
    pairs["device"] = device
    if unit:
        pairs["unit"] = unit
    return "".join(
        f",{escape_tag(k, 'tag key')}={escape_tag(pairs[k], f'value of tag {k!r}')}"
        for k in sorted(pairs)
    )


class LineEncoder:
    """Encodes readings; keeps the escaped prefix of every series it has seen."""

    __slots__ = ("_key_prefixes", "_prefixes")

    def __init__(self) -> None:
        self._prefixes: dict[PrefixKey, str] = {}
        self._key_prefixes: dict[str, str] = {}  # by the joined series key of table_payload

    def encode(self, r: Reading) -> str:
        """One line, without the trailing newline. Raises :class:`LineProtocolError`."""
        return self.encode_many((r,))[0]

    def encode_many(self, readings: Sequence[Reading]) -> list[str]:
        """One line per reading, in order. Raises :class:`LineProtocolError`.

        The hot loop of every write: memos keyed on object identity are safe within one call
        because the readings keep their ``time`` and ``tags`` objects alive for its duration.
        """
        out: list[str] = []
        append = out.append
        local: dict[tuple[str, str, str, int], str] = {}
        quality_text = _QUALITY
        epoch, one_us = EPOCH, _ONE_US
        last_time: object = None
        last_us = 0
        for r in readings:
            tags = r.tags
            lkey = (r.metric, r.device, r.unit, id(tags))
            prefix = local.get(lkey)
            if prefix is None:
                prefix = local[lkey] = self._prefix_of(r)
            v = r.value
            if v.__class__ is not float:
                v = self._as_float(r)
            if v - v:  # nan or +-inf: line protocol cannot carry them
                raise self._error(r, f"value {v!r} is not finite")
            q = quality_text.get(r.quality)
            if q is None:
                raise self._error(r, f"quality {r.quality!r} is not 0, 1 or 2")
            t = r.time
            if t is not last_time:
                last_time, last_us = t, (t - epoch) // one_us
            append(f"{prefix} value={v!r}{q}{last_us}")
        return out

    def payload(self, readings: Sequence[Reading]) -> bytes:
        """The request body for a batch: lines joined by newlines, UTF-8."""
        if isinstance(readings, ReadingBatch):
            return self.table_payload(readings.table)
        return "\n".join(self.encode_many(readings)).encode()

    def table_payload(self, table: pa.Table) -> bytes:
        """:meth:`payload` of a table with ``store.columnar.SCHEMA``, built column-wise."""
        n = table.num_rows
        if n == 0:
            return b""
        finite = pc.is_finite(table.column("value"))
        if not pc.all(finite).as_py():
            row = _row(table, pc.index(finite, False).as_py())
            raise _row_error(row, f"value {row['value']!r} is not finite")
        if pc.max(table.column("quality")).as_py() > 2:
            row = _row(table, pc.index(pc.greater(table.column("quality"), 2), True).as_py())
            raise _row_error(row, f"quality {row['quality']!r} is not 0, 1 or 2")
        # Series key per row; "\x1f" cannot occur in a name that passes _check_text and tags
        # JSON escapes it, so distinct series never share a key.
        key = pc.binary_join_element_wise(
            table.column("metric"),
            table.column("device"),
            table.column("unit"),
            pc.cast(table.column("tags"), pa.string()),
            "\x1f",
        )
        series = pc.dictionary_encode(key).combine_chunks()
        keys: list[str] = series.dictionary.to_pylist()
        cache = self._key_prefixes
        prefixes = [cache.get(k) for k in keys]
        missing = [i for i, p in enumerate(prefixes) if p is None]
        if missing:
            if len(cache) + len(missing) > _CACHE_LIMIT:
                cache.clear()  # churn past the limit means tags vary per sample
            first_rows = pc.index_in(series.dictionary.take(missing), value_set=key)
            reps = table.select(["metric", "device", "unit", "tags", "time"]).take(first_rows)
            for i, row in zip(missing, reps.to_pylist(), strict=True):
                prefixes[i] = cache[keys[i]] = _row_prefix(row)
        lines = pc.binary_join_element_wise(
            pa.array(prefixes, pa.string()).take(series.indices),
            " value=",
            # Arrow prints the shortest representation that round-trips, as repr() does.
            pc.cast(table.column("value"), pa.string()).combine_chunks(),
            ",quality=",
            pc.cast(table.column("quality"), pa.string()).combine_chunks(),
            "i ",
            pc.cast(table.column("time"), pa.string()).combine_chunks(),
            "",
        )
        whole = pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), lines)
        body: bytes = pc.binary_join(whole, "\n")[0].as_buffer().to_pybytes()
        return body

    def _prefix_of(self, r: Reading) -> str:
        tags = r.tags
        key = (r.metric, r.device, r.unit, tuple(tags.items()) if tags else ())
        prefix = self._prefixes.get(key)
        if prefix is None:
            try:
                prefix = escape_measurement(r.metric) + tag_set(r.device, r.unit, tags)
            except LineProtocolError as e:
                raise self._error(r, str(e)) from None
            if len(self._prefixes) >= _CACHE_LIMIT:
                # Churn past the limit means tags vary per sample: start over rather than grow.
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def _as_float(self, r: Reading) -> float:
        v = r.value
        # bool is an int, but line protocol would store True as a boolean field.
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._error(r, f"value {v!r} is not a number")
        return float(v)

    @staticmethod
    def _error(r: Reading, detail: str) -> LineProtocolError:
        return _encode_error(r.device, r.metric, r.time, detail)


def _row_prefix(row: dict[str, Any]) -> str:
    try:
        tags = json.loads(row["tags"])
        return escape_measurement(row["metric"]) + tag_set(row["device"], row["unit"], tags)
    except LineProtocolError as e:
        raise _row_error(row, str(e)) from None


def _row(table: pa.Table, i: int) -> dict[str, Any]:
    row: dict[str, Any] = table.slice(i, 1).to_pylist()[0]
    return row


def _row_error(row: dict[str, Any], detail: str) -> LineProtocolError:
    return _encode_error(row["device"], row["metric"], from_us(row["time"]), detail)


def _encode_error(device: str, metric: str, when: datetime, detail: str) -> LineProtocolError:
    return LineProtocolError(
        f"cannot encode reading {device}/{metric} at {when.isoformat()}: {detail}"
    )
