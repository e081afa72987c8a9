"""Read planning: fewest reads within the protocol limits, gaps filled up to max_gap."""

from __future__ import annotations

import random
from typing import Any

import pytest

from collector.planner import Read, plan
from collector.profile import Register, load_profile


def r(metric: str, address: int, type_: str = "uint16", **kw: Any) -> Register:
    if type_ == "bit":
        kw.setdefault("table", "coil")
    return Register(metric=metric, address=address, type=type_, **kw)


def shape(reads: list[Read]) -> list[tuple[str, int, int, list[tuple[str, int]]]]:
    return [
        (rd.table, rd.address, rd.count, [(reg.metric, off) for reg, off in rd.registers])
        for rd in reads
    ]


def test_contiguous_registers_become_one_read_with_offsets() -> None:
    regs = [r("a", 10, "float32"), r("b", 12, "uint16"), r("c", 13, "uint64")]
    assert shape(plan(regs)) == [("holding", 10, 7, [("a", 0), ("b", 2), ("c", 3)])]


def test_gap_up_to_max_gap_is_read_through_and_a_larger_one_splits() -> None:
    regs = [r("a", 0), r("b", 11), r("c", 23)]  # gaps of 10 and 11 unused registers
    assert shape(plan(regs, max_gap=10)) == [
        ("holding", 0, 12, [("a", 0), ("b", 11)]),
        ("holding", 23, 1, [("c", 0)]),
    ]
    assert len(plan(regs, max_gap=11)) == 1
    assert len(plan(regs, max_gap=0)) == 3


def test_read_never_exceeds_max_registers() -> None:
    regs = [r(f"m{i}", 2 * i, "float32") for i in range(100)]  # 200 contiguous registers
    reads = plan(regs)
    assert [(rd.address, rd.count) for rd in reads] == [(0, 124), (124, 76)]
    assert sum(len(rd.registers) for rd in reads) == 100
    # A register is never cut in two: 125 would split the 63rd float.
    assert all(off + reg.count <= rd.count for rd in reads for reg, off in rd.registers)
    assert [(rd.address, rd.count) for rd in plan(regs, max_registers=10)][:2] == [
        (0, 10),
        (10, 10),
    ]


def test_tables_are_planned_separately_in_a_fixed_order() -> None:
    regs = [
        r("d", 0, "bit", table="discrete"),
        r("c", 0, "bit", table="coil"),
        r("i", 0, table="input"),
        r("h", 0),
    ]
    reads = plan(regs)
    assert [(rd.table, rd.function_code) for rd in reads] == [
        ("holding", 3),
        ("input", 4),
        ("coil", 1),
        ("discrete", 2),
    ]


def test_bit_tables_use_the_bit_limit() -> None:
    regs = [r(f"b{i}", i * 10, "bit") for i in range(300)]  # bits 0..2990
    reads = plan(regs)
    assert [(rd.address, rd.count) for rd in reads] == [(0, 1991), (2000, 991)]
    assert len(plan(regs, max_bits=100)) == 30


def test_plan_is_deterministic_whatever_the_input_order() -> None:
    regs = [r(f"m{i}", a) for i, a in enumerate([0, 1, 2, 40, 41, 60, 200, 201, 330])]
    expected = shape(plan(regs))
    rng = random.Random(7)
    for _ in range(20):
        shuffled = regs[:]
        rng.shuffle(shuffled)
        assert shape(plan(shuffled)) == expected


def test_greedy_is_minimal_on_random_layouts() -> None:
    """Compare with an exhaustive dynamic programme over split points."""
    rng = random.Random(11)
    for _ in range(200):
        addrs = sorted(rng.sample(range(0, 400), rng.randint(1, 14)))
        regs = [r(f"m{a}", a) for a in addrs]
        limit, gap = rng.randint(1, 60), rng.randint(0, 15)
        n = len(addrs)
        best = [0] + [10**9] * n  # best[j]: fewest reads covering the first j registers
        for j in range(1, n + 1):
            for i in range(j):
                span = addrs[j - 1] + 1 - addrs[i]
                gaps_ok = all(addrs[k + 1] - addrs[k] - 1 <= gap for k in range(i, j - 1))
                if span <= limit and gaps_ok:
                    best[j] = min(best[j], best[i] + 1)
        assert len(plan(regs, max_registers=limit, max_gap=gap)) == best[n]


def test_shipped_profiles_need_one_read_each() -> None:
    for name in ("generic_power_meter_3p", "elevator_gbt24476", "generic_water_meter"):
        reads = plan(load_profile(name).registers)
        assert len(reads) == 1, name
    pm = plan(load_profile("generic_power_meter_3p").registers)[0]
    assert (pm.address, pm.count) == (0, 32)  # reads through 20..29 to reach the energy counter


def test_invalid_limits_and_oversized_registers() -> None:
    with pytest.raises(ValueError):
        plan([r("a", 0)], max_gap=-1)
    with pytest.raises(ValueError):
        plan([r("a", 0)], max_registers=0)
    with pytest.raises(ValueError, match="spans 4"):
        plan([r("a", 0, "float64")], max_registers=2)
    assert plan([]) == []
