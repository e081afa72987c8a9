"""Line protocol encoding of readings: escaping, tag order, fields, timestamps, refusals."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import pytest

from store.columnar import ReadingBatch
from store.lineprotocol import LineEncoder, LineProtocolError, escape_measurement, escape_tag
from store.reading import Quality, Reading

T0 = datetime(2024, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
T0_US = 1709280000123456


def line(r: Reading) -> str:
    return LineEncoder().encode(r)


def test_plain_reading() -> None:
    r = Reading(T0, "pm-1", "active_power", 12.5, "kW")
    assert line(r) == f"active_power,device=pm-1,unit=kW value=12.5,quality=0i {T0_US}"


def test_tags_sorted_with_device_and_unit_and_empty_values_left_out() -> None:
    r = Reading(
        T0,
        "pm-1",
        "energy",
        3.0,
        "kWh",
        Quality.UNCERTAIN,
        tags={"site": "riverside", "building": "A", "tenant": "", "floor": "12F"},
    )
    assert line(r) == (
        "energy,building=A,device=pm-1,floor=12F,site=riverside,unit=kWh "
        f"value=3.0,quality=1i {T0_US}"
    )


def test_no_unit_tag_when_unit_empty_and_bad_quality_is_a_field() -> None:
    r = Reading(T0, "lift-1", "service_mode", 2.0, quality=Quality.BAD)
    assert line(r) == f"service_mode,device=lift-1 value=2.0,quality=2i {T0_US}"


def test_tricky_names_are_escaped() -> None:
    r = Reading(
        T0,
        "dev 1,a=b",
        "water flow,total",
        1.0,
        "m3/h",
        tags={"楼 层": "B1,地下=一层", "tenant": "滨江 广场"},
    )
    assert line(r) == (
        r"water\ flow\,total,device=dev\ 1\,a\=b,tenant=滨江\ 广场,unit=m3/h,"
        r"楼\ 层=B1\,地下\=一层"
        f" value=1.0,quality=0i {T0_US}"
    )


def test_measurement_keeps_equals_sign_and_quotes_unescaped() -> None:
    assert escape_measurement('a=b "c"') == r'a=b\ "c"'
    assert escape_tag('x="y"') == r'x\="y"'


def test_portable_backslashes_pass_and_ambiguous_ones_are_refused() -> None:
    assert escape_tag(r"C:\meters") == r"C:\meters"
    for bad in ("end\\", "a\\,b", "a\\ b", "a\\=b", "a\\\\b"):
        with pytest.raises(LineProtocolError, match="backslash"):
            escape_tag(bad)


@pytest.mark.parametrize(
    ("reading", "match"),
    [
        (Reading(T0, "d", "m", math.nan), "not finite"),
        (Reading(T0, "d", "m", math.inf), "not finite"),
        (Reading(T0, "d", "m", -math.inf), "not finite"),
        (Reading(T0, "d", "#m", 1.0), "comment"),
        (Reading(T0, "", "m", 1.0), "empty"),
        (Reading(T0, "d", "m", 1.0, tags={"a": "x\ny"}), "line break"),
        (Reading(T0, "d", "m", 1.0, tags={"unit": "kW"}), "reserved"),
        (Reading(T0, "d", "m", 1.0, tags={"device": "other"}), "reserved"),
        (Reading(T0, "d", "m", True), "not a number"),
        (Reading(T0, "d", "m", "1.0"), "not a number"),  # type: ignore[arg-type]
    ],
)
def test_refusals_name_the_reading(reading: Reading, match: str) -> None:
    with pytest.raises(LineProtocolError, match=match) as e:
        LineEncoder().encode_many([Reading(T0, "ok", "m", 1.0), reading])
    assert f"{reading.device}/{reading.metric}" in str(e.value)


def test_bad_quality_is_refused() -> None:
    r = Reading(T0, "d", "m", 1.0, quality=7)  # type: ignore[arg-type]
    with pytest.raises(LineProtocolError, match="quality 7"):
        line(r)


def test_values_round_trip_exactly_and_ints_are_written_as_floats() -> None:
    for v in (0.1 + 0.2, 1e-300, -1.5e300, 123456789.123456789):
        text = line(Reading(T0, "d", "m", v))
        assert float(text.split("value=")[1].split(",")[0]) == v
    assert " value=3.0," in line(Reading(T0, "d", "m", 3))  # a float field, never 3i


def test_timestamps_are_utc_microseconds_for_any_zone_and_before_1970() -> None:
    shanghai = T0.astimezone(timezone(timedelta(hours=8)))
    assert line(Reading(shanghai, "d", "m", 1.0)).endswith(f" {T0_US}")
    early = datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert line(Reading(early, "d", "m", 1.0)).endswith(" -1")


def test_cache_sees_changed_tags_of_the_same_mapping_between_calls() -> None:
    enc = LineEncoder()
    tags = {"floor": "1F"}
    r = Reading(T0, "d", "m", 1.0, tags=tags)
    assert ",floor=1F" in enc.encode(r)
    tags["floor"] = "2F"  # a mutable mapping changed between two batches
    assert ",floor=2F" in enc.encode(r)


def test_batch_shares_prefixes_and_times_without_mixing_them() -> None:
    shared = MappingProxyType({"site": "s1"})
    rs = [
        Reading(T0 + timedelta(seconds=i // 2), f"d{i % 3}", f"m{i % 2}", float(i), tags=shared)
        for i in range(12)
    ]
    lines = LineEncoder().encode_many(rs)
    for r, text in zip(rs, lines, strict=True):
        assert text == (
            f"{r.metric},device={r.device},site=s1 value={r.value!r},quality=0i {r.time_us}"
        )


def test_payload_is_newline_joined_utf8() -> None:
    rs = [Reading(T0, "d", "电表", 1.0), Reading(T0, "d", "水表", 2.0)]
    body = LineEncoder().payload(rs)
    assert body.decode("utf-8").split("\n") == LineEncoder().encode_many(rs)


# -- the column-wise path (what the outbox hands the store) ----------------------------------
def _semantic(body: bytes) -> list[tuple[str, float, str]]:
    """(series prefix, value, quality+time) per line: the float text may differ ("3" vs "3.0")."""
    out = []
    for text in body.decode().split("\n"):
        prefix, rest = text.split(" value=")
        value, tail = rest.split(",", 1)
        out.append((prefix, float(value), tail))
    return out


def test_batch_payload_means_the_same_as_reading_payload() -> None:
    rs = [
        Reading(
            T0 + timedelta(seconds=i),
            f"dev {i % 3},x",
            "电 表" if i % 2 else "m=1",
            v,
            "kWh" if i % 4 else "",
            Quality(i % 3),
            tags={"楼": "一号楼", "tenant": "" if i % 5 else "A, B", "floor": f"{i % 2}F"},
        )
        for i, v in enumerate([0.0, -0.0, 3.0, 0.1 + 0.2, 1e-7, 1e300, -2.5e-300, 5e-324, 42.5])
    ]
    enc = LineEncoder()
    from_batch = enc.payload(ReadingBatch.from_readings(rs))
    assert _semantic(from_batch) == _semantic(enc.payload(rs))
    assert enc.payload(ReadingBatch.from_readings(rs)) == from_batch  # cached prefixes agree


def test_batch_payload_of_a_sliced_and_concatenated_batch() -> None:
    rs = [Reading(T0 + timedelta(seconds=i), f"d{i % 4}", "m", float(i)) for i in range(40)]
    batch = ReadingBatch.concat(
        [ReadingBatch.from_readings(rs[:25]), ReadingBatch.from_readings(rs[25:])]
    )[5:33]
    assert _semantic(LineEncoder().payload(batch)) == _semantic(LineEncoder().payload(rs[5:33]))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (Reading(T0, "d9", "m", math.nan), "d9/m at 2024-03-01T08:00:00.123456\\+00:00: value nan"),
        (Reading(T0, "d9", "m", 1.0, tags={"unit": "kW"}), "d9/m .*reserved"),
        (Reading(T0, "d9", "#m", 1.0), "d9/#m .*comment"),
        (Reading(T0, "d\x1fx", "m", 1.0), "control character"),
    ],
)
def test_batch_payload_refusals_name_the_reading(bad: Reading, match: str) -> None:
    good = [Reading(T0, "d1", "m", 1.0), Reading(T0, "d2", "m", 2.0)]
    with pytest.raises(LineProtocolError, match=match):
        LineEncoder().payload(ReadingBatch.from_readings([*good, bad]))


def test_empty_batch_payload_is_empty() -> None:
    assert LineEncoder().payload(ReadingBatch.from_readings([])) == b""
