"""Regression cases: tests/collector/cases/<name>/ polled once through a real server.

The folder format is described in cases/README.md.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.modbus import ModbusCollector
from collector.profile import ProfileLoader, load_profile
from store.reading import Quality, Reading
from tests.collector.modbus_server import ModbusTestServer, Unit, make_device

CASES = Path(__file__).parent / "cases"
SHIPPED = Path(__file__).parents[2] / "collector" / "profiles"


def _yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=ProfileLoader)


def _profile_for(case: dict[str, Any], tmp_path: Path) -> str:
    name = case["profile"]
    overrides: dict[str, dict[str, Any]] = case.get("overrides") or {}
    if not overrides:
        return str(name)
    data = _yaml(SHIPPED / f"{name}.yaml")
    metrics = {r["metric"] for r in data["registers"]}
    unknown = set(overrides) - metrics
    assert not unknown, f"overrides name metrics the profile lacks: {sorted(unknown)}"
    data["registers"] = [{**r, **overrides.get(r["metric"], {})} for r in data["registers"]]
    path = tmp_path / f"{name}-case.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def _unit(tables: dict[str, dict[int, Any]]) -> Unit:
    unit = Unit()
    assert set(tables) <= {"holding", "input", "coil", "discrete"}, set(tables)
    for table, entries in tables.items():
        t = unit.table(table)
        for start, words in (entries or {}).items():
            for i, w in enumerate(words if isinstance(words, list) else [words]):
                t[int(start) + i] = bool(w) if table in ("coil", "discrete") else int(w)
    return unit


def _check(expected: dict[str, Any], readings: Sequence[Reading]) -> None:
    got = {r.metric: r for r in readings}
    absent = {m for m, e in expected.items() if e == "absent"}
    assert not absent & set(got), f"should be absent: {sorted(absent & set(got))}"
    listed = set(expected) - absent
    unexpected = set(got) - listed - {"poll_latency", "last_ok_age"}
    assert not unexpected, f"readings not in expected.yaml: {sorted(unexpected)}"
    for metric in sorted(listed):
        assert metric in got, f"no reading for {metric}"
        e = expected[metric]
        spec = e if isinstance(e, dict) else {"value": e}
        value = float(spec["value"])
        quality = Quality[spec.get("quality", "GOOD")]
        r = got[metric]
        if math.isnan(value):
            assert math.isnan(r.value), metric
        else:
            assert r.value == pytest.approx(value, rel=1e-6, abs=1e-9), metric
        assert r.quality is quality, f"{metric}: {r.quality.name} != {quality.name}"


@pytest.mark.parametrize("name", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_case(name: str, tmp_path: Path) -> None:
    folder = CASES / name
    case = _yaml(folder / "device.yaml")
    profile = _profile_for(case, tmp_path)
    unit_id = int(case.get("unit_id", 1))
    unit = _unit(_yaml(folder / "registers.yaml"))
    expected = _yaml(folder / "expected.yaml")

    async def main() -> list[Reading]:
        async with ModbusTestServer({unit_id: unit}) as srv:
            dev = make_device(
                name.replace("_", "-"),
                srv.port,
                unit=unit_id,
                profile=profile,
                kind=load_profile(profile).kind,
                timeout=0.5,
            )
            collector = ModbusCollector([dev], lambda _: None, site_id="cases")
            try:
                return await collector.poll_device(dev.id)
            finally:
                collector.close()

    _check(expected, asyncio.run(main()))


def test_there_are_cases() -> None:
    assert len([p for p in CASES.iterdir() if p.is_dir()]) >= 3
