"""Codec tables: every data type in every word order, against known byte vectors."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from collector.codec import (
    decode,
    decode_raw,
    decode_text,
    encode,
    encode_raw,
    encode_text,
    quality_of,
)
from collector.profile import Register
from store.reading import Quality

ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")


def reg(type_: str, order: str = "ABCD", **kw: Any) -> Register:
    table = "coil" if type_ == "bit" else "holding"
    return Register(metric="m", address=0, table=table, type=type_, word_order=order, **kw)


# float32 123.456 is 0x42F6E979: bytes A=42 B=F6 C=E9 D=79.
FLOAT32_123_456 = {
    "ABCD": [0x42F6, 0xE979],
    "DCBA": [0x79E9, 0xF642],
    "BADC": [0xF642, 0x79E9],
    "CDAB": [0xE979, 0x42F6],
}
UINT32_0x12345678 = {
    "ABCD": [0x1234, 0x5678],
    "DCBA": [0x7856, 0x3412],
    "BADC": [0x3412, 0x7856],
    "CDAB": [0x5678, 0x1234],
}
UINT64_0x0102030405060708 = {
    "ABCD": [0x0102, 0x0304, 0x0506, 0x0708],
    "DCBA": [0x0807, 0x0605, 0x0403, 0x0201],
    "BADC": [0x0201, 0x0403, 0x0605, 0x0807],
    "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
}


@pytest.mark.parametrize("order", ORDERS)
def test_float32_123_456_in_each_word_order(order: str) -> None:
    r = reg("float32", order)
    assert encode(r, 123.456) == FLOAT32_123_456[order]
    assert decode(r, FLOAT32_123_456[order]) == pytest.approx(123.456, rel=1e-7)


@pytest.mark.parametrize("order", ORDERS)
def test_uint32_and_uint64_byte_positions(order: str) -> None:
    assert encode(reg("uint32", order), 0x12345678) == UINT32_0x12345678[order]
    assert decode(reg("uint32", order), UINT32_0x12345678[order]) == 0x12345678
    r64 = reg("uint64", order)
    assert encode(r64, 0x0102030405060708) == UINT64_0x0102030405060708[order]
    assert decode(r64, UINT64_0x0102030405060708[order]) == float(0x0102030405060708)


@pytest.mark.parametrize(
    ("order", "words"),
    [("ABCD", [0xFFFE]), ("CDAB", [0xFFFE]), ("DCBA", [0xFEFF]), ("BADC", [0xFEFF])],
)
def test_int16_minus_two_swaps_bytes_only_for_byte_swapping_orders(
    order: str, words: list[int]
) -> None:
    assert encode(reg("int16", order), -2) == words
    assert decode(reg("int16", order), words) == -2.0


def _reference_words(big_endian: bytes, order: str) -> list[int]:
    """Word order by its definition, on bytes: an implementation independent of the codec."""
    if order == "DCBA":
        data = big_endian[::-1]
    elif order == "BADC":
        data = b"".join(big_endian[i : i + 2][::-1] for i in range(0, len(big_endian), 2))
    elif order == "CDAB":
        data = b"".join(big_endian[i : i + 2] for i in reversed(range(0, len(big_endian), 2)))
    else:
        data = big_endian
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


CASES: list[tuple[str, str, float]] = [
    ("int16", ">h", -32768),
    ("int16", ">h", 32767),
    ("int16", ">h", -1234),
    ("uint16", ">H", 0),
    ("uint16", ">H", 65535),
    ("uint16", ">H", 0xBEEF),
    ("int32", ">i", -(2**31)),
    ("int32", ">i", 2**31 - 1),
    ("int32", ">i", -123456),
    ("uint32", ">I", 2**32 - 1),
    ("uint32", ">I", 305419896),
    ("int64", ">q", -(2**53)),
    ("int64", ">q", -2),
    ("uint64", ">Q", 2**53),
    ("float32", ">f", -0.15625),
    ("float32", ">f", 3.4e38),
    ("float64", ">d", 123.456),
    ("float64", ">d", -1e-300),
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("type_", "fmt", "value"), CASES)
def test_every_type_and_order_matches_the_byte_definition_and_round_trips(
    type_: str, fmt: str, value: float, order: str
) -> None:
    r = reg(type_, order)
    expected = _reference_words(struct.pack(fmt, value), order)
    assert encode(r, value) == expected
    got = decode(r, expected)
    if type_ == "float32":
        assert got == struct.unpack(">f", struct.pack(">f", value))[0]
    else:
        assert got == float(value)


@pytest.mark.parametrize("order", ORDERS)
def test_scale_and_offset(order: str) -> None:
    energy = reg("uint32", order, scale=0.01, unit="kWh", counter=True)
    words = encode(energy, 123456.78)
    assert decode_raw(energy, words) == 12345678
    assert decode(energy, words) == pytest.approx(123456.78)
    temp = reg("int16", order, scale=0.1, offset=-40)
    assert decode_raw(temp, encode(temp, 21.5)) == 615
    assert decode(temp, encode(temp, 21.5)) == pytest.approx(21.5)


def test_enum_registers_give_the_raw_code() -> None:
    r = reg("uint16", scale=0.1, enum={0: "stopped", 1: "running"})
    assert decode(r, [1]) == 1.0
    assert encode(r, 1) == [1]


def test_bits() -> None:
    r = reg("bit")
    assert decode(r, [True]) == 1.0
    assert decode(r, [False]) == 0.0
    assert encode(r, 1) == [True]
    assert encode(r, 0) == [False]


@pytest.mark.parametrize("order", ORDERS)
def test_strings(order: str) -> None:
    r = reg("string", order, length=4)
    words = encode_text(r, "1#A-7")
    assert len(words) == 4
    assert decode_text(r, words) == "1#A-7"
    if order == "ABCD":
        assert words[0] == int.from_bytes(b"1#", "big")
    with pytest.raises(TypeError):
        decode(r, words)
    with pytest.raises(ValueError, match="do not fit"):
        encode_text(r, "123456789")


@pytest.mark.parametrize(
    ("type_", "value"),
    [("uint16", 65536), ("uint16", -1), ("int16", 40000), ("uint32", 2**32), ("int16", math.nan)],
)
def test_encode_refuses_values_the_type_cannot_hold(type_: str, value: float) -> None:
    with pytest.raises(ValueError):
        encode(reg(type_), value)


def test_decode_refuses_wrong_lengths_and_words_out_of_range() -> None:
    with pytest.raises(ValueError, match="spans 2"):
        decode(reg("float32"), [0x42F6])
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        decode(reg("uint16"), [70000])


def test_encode_raw_writes_sentinels() -> None:
    r = reg("uint16", nan_value=0xFFFF, scale=0.1)
    assert encode_raw(r, 0xFFFF) == [0xFFFF]
    assert quality_of(r, decode_raw(r, [0xFFFF])) is Quality.BAD


def test_quality() -> None:
    volt = reg("float32", min=0, max=1000)
    assert quality_of(volt, 230.0) is Quality.GOOD
    assert quality_of(volt, 1000.0) is Quality.GOOD
    assert quality_of(volt, -0.1) is Quality.BAD
    assert quality_of(volt, 1000.5) is Quality.BAD
    assert quality_of(volt, math.nan) is Quality.BAD
    assert quality_of(volt, math.inf) is Quality.BAD
    # min/max are in engineering units: raw 5000 * 0.1 = 500 is in range.
    scaled = reg("uint16", scale=0.1, max=600, nan_value=0xFFFF)
    assert quality_of(scaled, 5000) is Quality.GOOD
    assert quality_of(scaled, 6001) is Quality.BAD
    assert quality_of(scaled, 0xFFFF) is Quality.BAD
    mode = reg("uint16", enum={0: "unknown", 1: "normal"})
    assert quality_of(mode, 1) is Quality.GOOD
    assert quality_of(mode, 7) is Quality.UNCERTAIN


def test_counter_rollover() -> None:
    assert reg("uint32", counter=True, scale=0.01).rollover == pytest.approx(2**32 * 0.01)
    assert reg("uint16", counter=True).rollover == 65536.0
    assert reg("uint64", counter=True).rollover == float(2**64)
    assert reg("float32", counter=True).rollover is None
    assert reg("int32", counter=True).rollover is None
    assert reg("uint32").rollover is None  # not a counter
