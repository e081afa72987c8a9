"""Readings held as columns: the form batches travel in between the outbox and the stores.

Building a :class:`~store.reading.Reading` costs several microseconds in Python, which alone would
cap the durable path far below 100k samples/s. So the outbox keeps each batch as an Arrow table
and hands the store a :class:`ReadingBatch`: a ``Sequence[Reading]`` that any backend can iterate
(rows are built lazily), while a columnar backend such as the embedded DuckDB store inserts
``batch.table`` directly without ever creating ``Reading`` objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from itertools import chain
from types import MappingProxyType
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from store.polls import PollBatch, PollBatches
from store.reading import EPOCH, Quality, Reading

_TAGS_TYPE = pa.dictionary(pa.int32(), pa.string())
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_ONE_US = timedelta(microseconds=1)

# time is microseconds since the epoch (UTC), the precision every backend stores, so the column
# maps 1:1 onto the embedded store's BIGINT column and a line-protocol timestamp. tags is the
# JSON text of the tag mapping, dictionary-encoded because a batch carries few distinct tag sets
# (one per device): the blob is half the size and each set is serialised once.
SCHEMA = pa.schema(
    [
        pa.field("time", pa.int64(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("quality", pa.uint8(), nullable=False),
        pa.field("tags", _TAGS_TYPE, nullable=False),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
_MAX_QUALITY = max(Quality)
_QUALITIES = {int(q): q for q in Quality}


class InvalidReadingError(ValueError):
    """A reading cannot be represented (wrong type, missing value, non-string tag, ...)."""


def tags_json(tags: Mapping[str, str]) -> str:
    """Canonical JSON of a tag mapping: sorted keys, zh-CN text kept readable (not \\u-escaped)."""
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidReadingError(f"tag {k!r}={v!r}: tag keys and values must be strings")
    return json.dumps(dict(tags), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _tags_column(tags: list[Mapping[str, str]]) -> pa.DictionaryArray:
    # Readings of one device usually share one tags object: encode by identity (in C) so each
    # distinct object is validated and serialised once per batch, not once per sample.
    by_id = pc.dictionary_encode(pa.array([id(t) for t in tags], pa.int64()))
    obj = {id(t): t for t in tags}
    texts = [tags_json(obj[i]) for i in by_id.dictionary.to_pylist()]
    uniq = list(dict.fromkeys(texts))
    codes = by_id.indices
    if len(uniq) != len(texts):  # equal tag sets in distinct objects: one dictionary entry each
        pos = {t: k for k, t in enumerate(uniq)}
        codes = pc.take(pa.array([pos[t] for t in texts], pa.int32()), codes)
    return pa.DictionaryArray.from_arrays(codes, pa.array(uniq, pa.string()))


def _parse_tags(text: str) -> Mapping[str, str]:
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise InvalidReadingError(f"tags column holds {text!r}, not a JSON object")
    return MappingProxyType(parsed)


def _polls_table(polls: Sequence[PollBatch]) -> pa.Table:
    """The Arrow table of ``polls``; raises :class:`InvalidReadingError` like from_readings."""
    n = len(polls)
    lens = np.fromiter((len(p) for p in polls), np.int64, n)
    total = int(lens.sum())
    try:
        times = np.fromiter(((p.time - EPOCH) // _ONE_US for p in polls), np.int64, n)
        devices = pa.array([p.device for p in polls], pa.string())
        # Per-poll columns repeated per sample in C: one index per sample, no Python loop.
        owner = pa.array(np.repeat(np.arange(n, dtype=np.int32), lens))
        values = np.fromiter(chain.from_iterable(p.values for p in polls), np.float64, total)
        # bytes() reads IntEnum members in C: 8 ns a sample against 280 for pa.array.
        qualities = np.frombuffer(b"".join(bytes(p.qualities) for p in polls), np.uint8)
        tags = _poll_tags([p.tags for p in polls])
        columns = [
            pa.array(np.repeat(times, lens)),
            pc.take(devices, owner),
            _shared_strings([p.metrics for p in polls], lens, total),
            pa.array(values),
            _shared_strings([p.units for p in polls], lens, total),
            pa.array(qualities),
            pa.DictionaryArray.from_arrays(pc.take(tags.indices, owner), tags.dictionary),
        ]
    except (ValueError, TypeError, OverflowError, AttributeError, pa.ArrowException) as e:
        raise InvalidReadingError(str(e)) from e
    for name, col in zip(COLUMNS, columns, strict=True):
        if col.null_count:
            raise InvalidReadingError(f"{name} is missing (None) in a reading")
    if total and int(qualities.max()) > _MAX_QUALITY:
        raise InvalidReadingError(f"quality must be one of {[int(q) for q in Quality]}")
    return pa.Table.from_arrays(columns, schema=SCHEMA)


# JSON of the tag mappings of polls, by object: a collector gives each device one immutable tag
# mapping for its lifetime (PollBatch's contract), so each is serialised once, not in every
# batch. The entry holds the mapping, so its id cannot be reused while cached.
_POLL_TAGS: dict[int, tuple[Mapping[str, str], str]] = {}
_POLL_TAGS_MAX = 100_000


def _poll_tags(tags: list[Mapping[str, str]]) -> pa.DictionaryArray:
    """The tags column of polls (one entry per poll), JSON text per distinct tag set."""
    codes: list[int] = []
    pos: dict[int, int] = {}
    texts: dict[str, int] = {}
    for t in tags:
        k = pos.get(id(t))
        if k is None:
            hit = _POLL_TAGS.get(id(t))
            if hit is None or hit[0] is not t:
                if len(_POLL_TAGS) >= _POLL_TAGS_MAX:
                    _POLL_TAGS.clear()
                hit = _POLL_TAGS[id(t)] = (t, tags_json(t))
            k = pos[id(t)] = texts.setdefault(hit[1], len(texts))
        codes.append(k)
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array(list(texts), pa.string())
    )


def _shared_strings(
    parts: Sequence[Sequence[str]], lens: npt.NDArray[np.int64], total: int
) -> pa.Array:
    """One string column of the polls' ``parts``, each distinct sequence object converted once.

    The collector hands every poll of a device the same metrics and units tuples, so a batch
    holds few distinct ones: converting those and gathering by index costs a few ns a sample,
    against about 120 ns for converting every string.
    """
    first: dict[int, int] = {}  # id of a part -> where it starts in uniq (parts are alive)
    uniq: list[str] = []
    starts: list[int] = []
    for part in parts:
        at = first.get(id(part))
        if at is None:
            at = first[id(part)] = len(uniq)
            uniq.extend(part)
        starts.append(at)
    if len(uniq) == total:  # nothing shared: the strings as they are
        return pa.array(uniq, pa.string())
    begin = np.cumsum(lens) - lens  # where each poll's samples start in the column
    shift = np.repeat(np.asarray(starts, np.int64) - begin, lens)
    return pc.take(pa.array(uniq, pa.string()), pa.array(np.arange(total) + shift))


class ReadingBatch(Sequence[Reading]):
    """An immutable batch of readings stored as an Arrow table with :data:`SCHEMA`."""

    __slots__ = ("_rows", "_table")

    def __init__(self, table: pa.Table) -> None:
        if table.schema != SCHEMA:
            table = table.select(list(COLUMNS)).cast(SCHEMA)
        self._table: pa.Table = table
        self._rows: list[Reading] | None = None

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_readings(cls, readings: Iterable[Reading]) -> ReadingBatch:
        """Columns of ``readings``; raises :class:`InvalidReadingError` if one cannot be stored."""
        if isinstance(readings, ReadingBatch):
            return readings
        if isinstance(readings, PollBatch):
            return cls(_polls_table([readings]))
        if isinstance(readings, PollBatches):
            return cls(_polls_table(readings.polls))
        rs = readings if isinstance(readings, list) else list(readings)
        try:
            columns = [
                pa.array([r.time for r in rs], _TIMESTAMP).cast(pa.int64()),
                pa.array([r.device for r in rs], pa.string()),
                pa.array([r.metric for r in rs], pa.string()),
                pa.array([r.value for r in rs], pa.float64()),
                pa.array([r.unit for r in rs], pa.string()),
                pa.array([r.quality for r in rs], pa.uint8()),
                _tags_column([r.tags for r in rs]),
            ]
        except (ValueError, TypeError, OverflowError, AttributeError, pa.ArrowException) as e:
            raise InvalidReadingError(str(e)) from e
        for name, col in zip(COLUMNS, columns, strict=True):
            if col.null_count:
                raise InvalidReadingError(f"{name} is missing (None) in a reading")
        if rs and pc.max(columns[5]).as_py() > _MAX_QUALITY:
            raise InvalidReadingError(f"quality must be one of {[int(q) for q in Quality]}")
        return cls(pa.Table.from_arrays(columns, schema=SCHEMA))

    @classmethod
    def concat(cls, batches: Sequence[ReadingBatch]) -> ReadingBatch:
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return cls(SCHEMA.empty_table())
        return cls(pa.concat_tables([b.table for b in batches]))

    # -- serialisation (the outbox blob) ---------------------------------------------------
    def to_bytes(self) -> bytes:
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, SCHEMA) as w:
            w.write_table(self._table)
        return bytes(sink.getvalue().to_pybytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> ReadingBatch:
        return cls(ipc.open_stream(pa.py_buffer(data)).read_all())

    # -- access ----------------------------------------------------------------------------
    @property
    def table(self) -> pa.Table:
        return self._table

    def column(self, name: str) -> list[Any]:
        """One column as Python values (tags as JSON text), without building readings."""
        return list(self._table.column(name).to_pylist())

    def all_finite(self) -> bool:
        value = self._table.column("value")
        return bool(pc.all(pc.is_finite(value)).as_py() is not False)

    def __len__(self) -> int:
        return int(self._table.num_rows)

    @overload
    def __getitem__(self, i: int) -> Reading: ...

    @overload
    def __getitem__(self, i: slice) -> ReadingBatch: ...

    def __getitem__(self, i: int | slice) -> Reading | ReadingBatch:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step == 1:
                return ReadingBatch(self._table.slice(start, max(0, stop - start)))
            return ReadingBatch(self._table.take(pa.array(range(start, stop, step), pa.int64())))
        return self._materialise()[i]

    def __iter__(self) -> Iterator[Reading]:
        return iter(self._materialise())

    def __repr__(self) -> str:
        return f"ReadingBatch({len(self)} readings)"

    def _materialise(self) -> list[Reading]:
        if self._rows is None:
            t = self._table
            tags_cache: dict[str, Mapping[str, str]] = {}
            rows: list[Reading] = []
            for us, device, metric, value, unit, q, tags in zip(
                t.column("time").to_pylist(),
                t.column("device").to_pylist(),
                t.column("metric").to_pylist(),
                t.column("value").to_pylist(),
                t.column("unit").to_pylist(),
                t.column("quality").to_pylist(),
                t.column("tags").to_pylist(),
                strict=True,
            ):
                m = tags_cache.get(tags)
                if m is None:
                    m = tags_cache[tags] = _parse_tags(tags)
                rows.append(
                    Reading(
                        EPOCH + timedelta(microseconds=us),
                        device,
                        metric,
                        value,
                        unit,
                        _QUALITIES[q],
                        m,
                    )
                )
            self._rows = rows
        return self._rows
