"""The message an edge facmon publishes and central ingest workers read: one batch of samples of
one building, compact JSON (``facmon-batch`` version 1).

::

    {"v": 1, "site": "riverside", "building": "tower-a",
     "tags": [{"building": "tower-a", "kind": "power_meter", "site": "riverside"}, ...],
     "series": [["pm-1", "power", "kW", 0], ...],
     "points": [[0, 1764236400000000, 12.5, 0], ...]}

``tags`` lists each distinct tag set once (one per device, usually); ``series`` each distinct
(device, metric, unit, index into ``tags``); a point is (index into ``series``, time in
microseconds since 1970 UTC, value, quality 0 good / 1 uncertain / 2 bad). The identity of a
sample (device, metric, time) travels unchanged, so a batch delivered twice (QoS 1) is stored
once.

Why JSON and not line protocol or the outbox's Arrow blob: it is readable with
``mosquitto_sub``, any language can produce or consume it, it carries quality and unit as
values of their own (line protocol would need conventions for both), and ``json`` encodes and
decodes it in C. Values that are not finite are written as ``NaN``/``Infinity`` (Python's JSON;
most stores refuse them anyway).

Both directions work on Arrow columns (:class:`~store.columnar.ReadingBatch`), never building a
``Reading`` object per sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from store.columnar import SCHEMA, InvalidReadingError, ReadingBatch, tags_json

__all__ = [
    "FORMAT_VERSION",
    "BadBatch",
    "DecodedBatch",
    "EncodedBatch",
    "decode_batch",
    "encode_batches",
]

FORMAT_VERSION = 1
NO_BUILDING = "_"
"""Building level of samples whose tags name no building (e.g. facmon's own figures)."""


class BadBatch(ValueError):
    """A message that is not a valid batch; ``reason`` is the counter it is filed under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    building: str
    samples: int
    payload: bytes


def encode_batches(site: str, batch: ReadingBatch, max_samples: int) -> Iterator[EncodedBatch]:
    """Messages for ``batch``: grouped by building, samples kept in their order within a
    building, at most ``max_samples`` per message."""
    table = batch.table.combine_chunks()
    tags_col = table.column("tags").chunk(0) if table.num_rows else None
    if tags_col is None:
        return
    tag_texts: list[str] = tags_col.dictionary.to_pylist()
    tag_objs = [json.loads(t) for t in tag_texts]
    buildings = [t.get("building") or NO_BUILDING for t in tag_objs]
    row_building = pa.array(buildings, pa.string()).take(tags_col.indices)
    distinct = list(dict.fromkeys(buildings))
    for building in distinct:
        rows = table if len(distinct) == 1 else table.filter(pc.equal(row_building, building))
        for start in range(0, rows.num_rows, max_samples):
            chunk = rows.slice(start, max_samples)
            if chunk.num_rows:
                yield EncodedBatch(
                    building, chunk.num_rows, _encode(site, building, chunk, tag_objs)
                )


def _encode(site: str, building: str, chunk: pa.Table, tag_objs: list[Any]) -> bytes:
    tags_enc = pc.dictionary_encode(chunk.column("tags").combine_chunks().indices)
    # Local tag list: only the tag sets this message uses.
    local_tags = [tag_objs[i] for i in tags_enc.dictionary.to_pylist()]
    key = pc.binary_join_element_wise(
        chunk.column("device"),
        chunk.column("metric"),
        chunk.column("unit"),
        pc.cast(tags_enc.indices, pa.string()),
        "\x1f",
    )
    series = pc.dictionary_encode(key.combine_chunks())
    first = pc.index_in(series.dictionary, value_set=key)
    reps = pa.table(
        {
            "device": chunk.column("device").take(first),
            "metric": chunk.column("metric").take(first),
            "unit": chunk.column("unit").take(first),
            "tag": tags_enc.indices.take(first),
        }
    )
    series_rows = list(
        zip(
            reps.column("device").to_pylist(),
            reps.column("metric").to_pylist(),
            reps.column("unit").to_pylist(),
            reps.column("tag").to_pylist(),
            strict=True,
        )
    )
    points = list(
        zip(
            series.indices.to_pylist(),
            chunk.column("time").to_pylist(),
            chunk.column("value").to_pylist(),
            chunk.column("quality").to_pylist(),
            strict=True,
        )
    )
    doc = {
        "v": FORMAT_VERSION,
        "site": site,
        "building": building,
        "tags": local_tags,
        "series": series_rows,
        "points": points,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    site: str
    building: str
    readings: ReadingBatch


def _column(values: tuple[Any, ...], kind: str, what: str) -> pa.Array:
    """An Arrow column of ``values`` with the type Arrow infers, checked against ``kind``
    (inference, not a target type: a target type would truncate 1.5 to an integer silently)."""
    try:
        col = pa.array(values)
    except (TypeError, OverflowError, pa.ArrowException) as e:
        raise BadBatch("bad_point", f"{what}: {e}") from None
    t = col.type
    ok = {
        "int": pa.types.is_integer(t),
        "number": pa.types.is_integer(t) or pa.types.is_floating(t),
        "text": pa.types.is_string(t),
    }[kind]
    if not ok or col.null_count:
        expected = {"int": "integers", "number": "numbers", "text": "strings"}[kind]
        raise BadBatch(
            "bad_point" if kind != "text" else "bad_series", f"{what} must be {expected}"
        )
    return col


def decode_batch(
    payload: bytes | bytearray, device_ids: Literal["as_sent", "site_prefixed"] = "as_sent"
) -> DecodedBatch:
    """The samples of one message. Raises :class:`BadBatch`; a message is taken whole or not
    at all."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBatch("malformed_json", f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadBatch("not_a_batch", "payload is not a JSON object")
    if doc.get("v") != FORMAT_VERSION:
        raise BadBatch("unknown_version", f"format version {doc.get('v')!r}, expected 1")
    site, building = doc.get("site"), doc.get("building")
    if not isinstance(site, str) or not site or not isinstance(building, str) or not building:
        raise BadBatch("not_a_batch", "site and building must be non-empty strings")
    tags, series, points = doc.get("tags"), doc.get("series"), doc.get("points")
    if not all(isinstance(x, list) for x in (tags, series, points)) or not points or not series:
        raise BadBatch("not_a_batch", "tags, series and points must be lists, points not empty")
    assert isinstance(tags, list) and isinstance(series, list) and isinstance(points, list)
    try:
        tag_texts = [tags_json(t) if isinstance(t, dict) else _no_tags(t) for t in tags]
    except InvalidReadingError as e:
        raise BadBatch("bad_series", str(e)) from None
    try:
        dev_t, metric_t, unit_t, tag_t = zip(*series, strict=True)
        idx_l, time_l, value_l, quality_l = zip(*points, strict=True)
    except (ValueError, TypeError):
        raise BadBatch("not_a_batch", "series or points are not lists of 4 items") from None
    device_col = _column(dev_t, "text", "series devices")
    metric_col = _column(metric_t, "text", "series metrics")
    unit_col = _column(unit_t, "text", "series units")
    if (
        pc.min(pc.utf8_length(device_col)).as_py() == 0
        or pc.min(pc.utf8_length(metric_col)).as_py() == 0
    ):
        raise BadBatch("bad_series", "a series has an empty device or metric")
    if device_ids == "site_prefixed":
        device_col = pc.binary_join_element_wise(site, device_col, ".")
    series_tags = _column(tag_t, "int", "series tags indexes")
    point_series = _column(idx_l, "int", "point series indexes")
    quality = _column(quality_l, "int", "point qualities")
    _in_range(point_series, len(series), "a point's series index")
    _in_range(series_tags, len(tags), "a series' tags index")
    _in_range(quality, 3, "a point's quality")
    try:
        tag_of_series = pc.cast(series_tags, pa.int32())
        idx = pc.cast(point_series, pa.int32())
        times = pc.cast(_column(time_l, "int", "point times"), pa.int64())
        values = pc.cast(_column(value_l, "number", "point values"), pa.float64())
    except pa.ArrowInvalid as e:  # an integer that does not fit
        raise BadBatch("bad_point", str(e)) from None
    table = pa.Table.from_arrays(
        [
            times,
            device_col.take(idx),
            metric_col.take(idx),
            values,
            unit_col.take(idx),
            pc.cast(quality, pa.uint8()),
            pa.DictionaryArray.from_arrays(
                tag_of_series.take(idx), pa.array(tag_texts, pa.string())
            ),
        ],
        schema=SCHEMA,
    )
    return DecodedBatch(site, building, ReadingBatch(table))


def _no_tags(t: Any) -> str:
    raise InvalidReadingError(f"a tag set is {t!r}, not an object")


def _in_range(col: pa.Array, n: int, what: str) -> None:
    lo, hi = (v.as_py() for v in pc.min_max(col).values())
    if lo < 0 or hi >= n:
        raise BadBatch("bad_point", f"{what} is out of range (0..{n - 1})")
