"""The collector's fast decode path (``BlockDecoder.columns``) against the per-field one.

Every planned read the collector makes goes through ``columns`` when it can: these tests pin
that it gives exactly what ``BlockDecoder.decode`` (and so decode/scaled/quality_of) gives, and
that it steps aside (None) whenever the per-field path has something to report.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest

from collector.codec import block_decoder, encode_raw
from collector.planner import plan
from collector.profile import Register, load_profile
from store.reading import Quality

NUMERIC = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4}


def _reg(k: int, address: int, type_: str, order: str, **kw: Any) -> Register:
    return Register(metric=f"m{k}", address=address, type=type_, word_order=order, unit="u", **kw)


def _words_of(read_regs: list[tuple[Register, int]], count: int, rng: random.Random) -> list[int]:
    words = [rng.randrange(65536) for _ in range(count)]  # gaps hold garbage
    for reg, offset in read_regs:
        if reg.type.startswith("float"):
            raw: float = rng.uniform(-1e6, 1e6)
        else:
            bits = 16 * WIDTH[reg.type]
            lo, hi = (
                (0, 2**bits - 1)
                if reg.type.startswith("u")
                else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            )
            raw = rng.randint(lo, hi)
        words[offset : offset + reg.count] = encode_raw(reg, raw)
    return words


@pytest.mark.parametrize("seed", range(40))
def test_columns_equal_the_per_field_decode(seed: int) -> None:
    rng = random.Random(seed)
    order = rng.choice(("ABCD", "DCBA"))  # one byte order per read: a single unpack
    regs: list[Register] = []
    address = 0
    for k in range(rng.randint(1, 12)):
        type_ = rng.choice(NUMERIC)
        kw: dict[str, Any] = {}
        if rng.random() < 0.3:
            kw.update(scale=rng.choice((0.1, 0.01, 10.0)), offset=rng.choice((0.0, -40.0)))
        if rng.random() < 0.2:
            kw.update(min=-1000.0, max=1000.0)
        regs.append(_reg(k, address, type_, order, **kw))
        address += regs[-1].count + rng.choice((0, 0, 1, 3))
    (read,) = plan(regs, max_gap=10)
    dec = block_decoder(read.registers, read.count)
    assert dec.block is not None
    words = _words_of(list(read.registers), read.count, rng)
    fast = dec.columns(words)
    assert fast is not None
    values, qualities = fast
    slow = dec.decode(words)
    assert list(dec.metrics) == [r.metric for r, _, _ in slow]
    assert values == [v for _, v, _ in slow]
    assert all(type(v) is float for v in values)
    assert list(qualities) == [q for _, _, q in slow]


def test_columns_step_aside_for_values_that_are_not_finite() -> None:
    regs = [_reg(0, 0, "float32", "ABCD"), _reg(1, 2, "float32", "ABCD")]
    (read,) = plan(regs)
    dec = block_decoder(read.registers, read.count)
    nan = list(struct.unpack(">2H", struct.pack(">f", math.nan)))
    assert dec.columns([0x42F6, 0xE979, *nan]) is None  # the collector counts and skips it
    assert dec.columns([0x42F6, 0xE979, 0x42F6, 0xE979]) is not None


def test_reads_without_a_single_unpack_use_the_per_field_path() -> None:
    mixed = [_reg(0, 0, "float32", "ABCD"), _reg(1, 2, "float32", "CDAB")]
    (read,) = plan(mixed)
    assert block_decoder(read.registers, read.count).columns([0] * read.count) is None


def test_sentinels_bounds_and_enums_grade_like_quality_of() -> None:
    regs = [
        _reg(0, 0, "uint16", "ABCD", nan_value=65535),
        _reg(1, 1, "int16", "ABCD", min=0.0),
        _reg(2, 2, "uint16", "ABCD", enum={0: "off", 1: "on"}),
        _reg(3, 3, "uint16", "ABCD", scale=0.1),
    ]
    (read,) = plan(regs)
    dec = block_decoder(read.registers, read.count)
    fast = dec.columns([65535, 0xFFFF, 7, 123])
    assert fast is not None
    values, qualities = fast
    assert values == pytest.approx([65535.0, -1.0, 7.0, 12.3])
    assert list(qualities) == [Quality.BAD, Quality.BAD, Quality.UNCERTAIN, Quality.GOOD]
    assert list(qualities) == [q for _, _, q in dec.decode([65535, 0xFFFF, 7, 123])]


@pytest.mark.parametrize(
    "name", ["generic_power_meter_3p", "elevator_gbt24476", "generic_water_meter"]
)
def test_shipped_profiles_take_the_fast_path_where_they_can(name: str) -> None:
    profile = load_profile(name)
    rng = random.Random(name)
    for read in plan([r for r in profile.registers if r.type != "string"]):
        if read.table in ("coil", "discrete"):
            continue
        dec = block_decoder(read.registers, read.count)
        words = [rng.randrange(1, 200) for _ in range(read.count)]
        fast = dec.columns(words)
        slow = dec.decode(words)
        if fast is None:
            continue
        values, qualities = fast
        assert values == [v for _, v, _ in slow]
        assert list(qualities) == [q for _, _, q in slow]
