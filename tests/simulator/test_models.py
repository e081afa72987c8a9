"""Behaviour models: plausible shapes, consistent physics, monotonic counters, determinism."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from simulator.models import (
    ElevatorModel,
    ElevatorParams,
    LeakEpisode,
    PowerMeterModel,
    PowerMeterParams,
    WaterMeterModel,
    WaterMeterParams,
)
from simulator.noise import LocalClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLOCK = LocalClock(SHANGHAI)
MONDAY = datetime(2025, 3, 3, tzinfo=SHANGHAI)  # a Monday, local midnight


def at(day: int, hour: float) -> float:
    """POSIX time of local ``hour`` on day ``day`` after MONDAY."""
    return (MONDAY + timedelta(days=day, hours=hour)).timestamp()


def sweep(model: PowerMeterModel | WaterMeterModel | ElevatorModel, t0: float, t1: float,
          step: float) -> list[tuple[float, dict[str, float]]]:  # fmt: skip
    out = []
    t = t0
    while t < t1:
        model.advance(t)
        out.append((t, model.values()))
        t += step
    return out


# --------------------------------------------------------------------------- power meter


def power(peak: float = 300.0, usage: str = "office", seed: int = 1) -> PowerMeterModel:
    return PowerMeterModel("pm", PowerMeterParams(peak_kw=peak, usage=usage), CLOCK, seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("usage", ["office", "mall"])
def test_power_daily_shape_weekday_and_weekend(usage: str) -> None:
    m = power(usage=usage)
    samples = sweep(m, at(0, 0), at(14, 0), 600.0)
    by: dict[tuple[bool, int], list[float]] = defaultdict(list)
    for t, v in samples:
        lt = datetime.fromtimestamp(t, SHANGHAI)
        by[(lt.weekday() >= 5, lt.hour)].append(v["active_power"])

    def mean(weekend: bool, hours: range) -> float:
        vals = [p for h in hours for p in by[(weekend, h)]]
        return sum(vals) / len(vals)

    night = mean(False, range(1, 5))
    afternoon = mean(False, range(14, 17))
    assert 0.15 * 300 <= night <= 0.25 * 300  # base load
    assert afternoon > 2.5 * night
    assert afternoon > 0.8 * 300
    morning_ramp = [mean(False, range(h, h + 1)) for h in (7, 8, 9, 10)]
    assert morning_ramp == sorted(morning_ramp)
    assert mean(True, range(14, 17)) < afternoon  # weekends are lower
    assert mean(True, range(1, 5)) == pytest.approx(night, rel=0.1)


def test_power_electrical_quantities_are_consistent() -> None:
    m = power(peak=180.0)
    for _, v in sweep(m, at(0, 0), at(2, 0), 97.0):
        pf = v["power_factor"]
        assert 0.85 <= pf <= 0.98
        for ph in "abc":
            assert 220.0 <= v[f"voltage_{ph}"] <= 235.0
        volts = [v[f"voltage_{ph}"] for ph in "abc"]
        assert max(volts) - min(volts) < 6.0  # small imbalance
        p_sum = sum(v[f"voltage_{ph}"] * v[f"current_{ph}"] for ph in "abc") * pf / 1000
        assert p_sum == pytest.approx(v["active_power"], rel=1e-9)
        assert v["reactive_power"] == pytest.approx(
            v["active_power"] * math.tan(math.acos(pf)), rel=1e-9
        )
        assert abs(v["frequency"] - 50.0) <= 0.05


def test_energy_counter_is_the_integral_of_power_and_monotonic() -> None:
    m = power()
    samples = sweep(m, at(0, 0), at(3, 0), 300.0)
    energies = [v["energy_import"] for _, v in samples]
    assert all(b >= a for a, b in itertools.pairwise(energies))
    # Integrate the smoothed power numerically over the same span.
    t0, t1 = samples[0][0], samples[-1][0]
    n = 20_000
    h = (t1 - t0) / n
    integral = sum(m.mean_kw(t0 + (i + 0.5) * h) for i in range(n)) * h / 3600
    assert energies[-1] - energies[0] == pytest.approx(integral, rel=1e-4)
    # A working day uses several MWh at a 300 kW peak.
    assert 2000 < (energies[-1] - energies[0]) / 3 < 6000


def test_counters_do_not_depend_on_sampling_cadence() -> None:
    coarse, fine = power(), power()
    start = at(0, 6)
    coarse.advance(start)
    fine.advance(start)
    t = start
    for _ in range(2000):
        t += 37.0
        fine.advance(t)
    coarse.advance(t)
    assert coarse.energy_kwh() == pytest.approx(fine.energy_kwh(), rel=1e-12)
    assert coarse.values()["active_power"] == fine.values()["active_power"]


def test_models_are_deterministic_by_seed_and_never_go_back() -> None:
    a, b, c = power(seed=7), power(seed=7), power(seed=8)
    for m in (a, b, c):
        m.advance(at(1, 15))
    assert a.values() == b.values()
    assert a.values()["active_power"] != c.values()["active_power"]
    before = a.values()
    a.advance(at(1, 14))  # earlier: ignored
    assert a.values() == before


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="peak_kw"):
        PowerMeterParams(peak_kw=0)
    with pytest.raises(ValueError, match="floor 0"):
        ElevatorParams(lowest_floor=0)
    with pytest.raises(ValueError, match="leak_every_days"):
        WaterMeterParams(leak_every_days=3, leak_nights=5)
    with pytest.raises(ValueError, match="timezone-aware"):
        LeakEpisode(datetime(2025, 1, 1), datetime(2025, 1, 2))


# --------------------------------------------------------------------------- water meter


def mnf_by_night(samples: list[tuple[float, dict[str, float]]], step: float) -> dict[date, float]:
    """Minimum night flow: lowest rolling 60-min mean flow within 02:00-04:00 local."""
    window = round(3600 / step)
    nights: dict[date, list[float]] = defaultdict(list)
    for t, v in samples:
        lt = datetime.fromtimestamp(t, SHANGHAI)
        if 2 <= lt.hour < 4:
            nights[lt.date()].append(v["flow_rate"])
    return {
        d: min(sum(f[i : i + window]) / window for i in range(len(f) - window + 1))
        for d, f in nights.items()
    }


def test_water_flow_is_zero_at_night_except_during_the_leak() -> None:
    params = WaterMeterParams(peak_m3h=3.0, leak_every_days=21, leak_nights=5, leak_m3h=0.3)
    m = WaterMeterModel("wm", params, CLOCK, seed=3)
    step = 300.0
    samples = sweep(m, at(0, 0), at(35, 0), step)
    mnf = mnf_by_night(samples, step)
    leaking = sorted(d for d, f in mnf.items() if f > 0.1)
    clean = [f for f in mnf.values() if f <= 0.1]
    # A 35-day history holds a whole episode: at least 5 consecutive leak nights.
    assert len(leaking) >= 5
    runs, run = [], 1
    for a, b in itertools.pairwise(leaking):
        run = run + 1 if (b - a).days == 1 else 1
        runs.append(run)
    assert max(runs) >= 5
    assert all(0.29 <= mnf[d] <= 0.35 for d in leaking)
    assert all(f < 0.05 for f in clean)
    # Daytime use is far above the night.
    day = [
        v["flow_rate"] for t, v in samples if 10 <= datetime.fromtimestamp(t, SHANGHAI).hour < 16
    ]
    assert sum(day) / len(day) > 1.5
    # The model's own account of its leaks matches the nights found.
    windows = m.leak_windows(
        datetime.fromtimestamp(at(0, 0), UTC), datetime.fromtimestamp(at(35, 0), UTC)
    )
    assert windows
    for s, e in windows:
        assert (e - s) <= timedelta(days=5) - timedelta(hours=14) + timedelta(minutes=5)


def test_water_volume_is_monotonic_and_integrates_flow() -> None:
    m = WaterMeterModel("wm", WaterMeterParams(peak_m3h=2.0), CLOCK, seed=5)
    samples = sweep(m, at(0, 0), at(2, 0), 10.0)
    vols = [v["volume"] for _, v in samples]
    assert all(b >= a for a, b in itertools.pairwise(vols))
    integral = sum(v["flow_rate"] for _, v in samples[:-1]) * 10.0 / 3600
    assert vols[-1] - vols[0] == pytest.approx(integral, rel=2e-3)


def test_fixed_leak_episode() -> None:
    leak = LeakEpisode(
        datetime(2025, 3, 4, 20, tzinfo=SHANGHAI), datetime(2025, 3, 6, 9, tzinfo=SHANGHAI), 0.5
    )
    m = WaterMeterModel("wm", WaterMeterParams(leaks=(leak,), night_draws_per_hour=0), CLOCK)
    m.advance(at(1, 3))  # Tuesday 03:00: before the leak
    assert m.values()["flow_rate"] == 0.0
    m.advance(at(2, 3))  # Wednesday 03:00: leaking
    assert m.values()["flow_rate"] == pytest.approx(0.5)
    m.advance(at(4, 3))
    assert m.values()["flow_rate"] == 0.0


# --------------------------------------------------------------------------- elevator


def elevator(**kw: float) -> ElevatorModel:
    params = ElevatorParams(lowest_floor=-2, top_floor=20, **kw)  # type: ignore[arg-type]
    return ElevatorModel("el", params, CLOCK, seed=11)


def test_elevator_states_are_consistent_and_counters_increase() -> None:
    m = elevator(faults_per_week=40.0)
    samples = sweep(m, at(0, 0), at(3, 0), 4.0)
    prev: dict[str, float] | None = None
    floors = set()
    seen = {k: 0 for k in ("running", "fault_code", "entrapment", "passenger_in_car")}
    for _, v in samples:
        floors.add(v["floor"])
        for k in seen:
            seen[k] += v[k] > 0
        assert v["floor"] != 0
        assert -2 <= v["floor"] <= 20
        if v["running"]:
            assert v["direction"] in (1, 2)
            assert v["door_closed_locked"] == 1
            assert v["door_zone"] == 0
            assert v["service_mode"] == 1
        else:
            assert v["direction"] == 0
        if v["fault_code"]:
            assert v["service_mode"] == 7
            assert v["running"] == 0
        else:
            assert v["service_mode"] in (1, 2)
            assert v["entrapment"] == 0
        if v["entrapment"]:
            assert v["passenger_in_car"] == 1
            assert v["door_zone"] == 0
        if prev is not None:
            for c in ("run_count", "running_hours", "door_cycles"):
                assert v[c] >= prev[c]
        prev = v
    assert {-2, -1, 1, 20} <= floors  # basements, lobby and top floor all visited
    assert all(seen.values()), seen


def test_elevator_traffic_follows_the_day_and_faults_happen() -> None:
    m = elevator(faults_per_week=3.0)
    samples = sweep(m, at(0, 0), at(28, 0), 20.0)
    runs_by_hour: dict[int, float] = defaultdict(float)
    last: float | None = None
    faults = entrapments = inspections = 0
    prev = {"fault_code": 0.0, "entrapment": 0.0, "service_mode": 1.0}
    for t, v in samples:
        lt = datetime.fromtimestamp(t, SHANGHAI)
        if last is not None and lt.weekday() < 5:
            runs_by_hour[lt.hour] += v["run_count"] - last
        last = v["run_count"]
        faults += v["fault_code"] > 0 and prev["fault_code"] == 0
        entrapments += v["entrapment"] == 1 and prev["entrapment"] == 0
        inspections += v["service_mode"] == 2 and prev["service_mode"] != 2
        prev = v
    for busy in (8, 12, 18):
        assert runs_by_hour[busy] > 3 * runs_by_hour[3]
        assert runs_by_hour[busy] > runs_by_hour[15]
    assert 4 <= faults <= 25  # ~12 expected in 4 weeks at 3 a week
    assert entrapments >= 1
    assert inspections == 2  # semi-monthly maintenance window
    assert samples[-1][1]["running_hours"] > samples[0][1]["running_hours"]


def test_inject_fault_stops_the_car_for_its_duration() -> None:
    m = elevator(faults_per_week=0.0)
    t = at(0, 8.5)
    m.advance(t)
    m.inject_fault(55, 300.0, entrapment=True)
    v = m.values()
    assert v["fault_code"] == 55
    assert v["service_mode"] == 7
    assert v["running"] == 0
    assert v["entrapment"] == 1
    m.advance(t + 299)
    assert m.values()["fault_code"] == 55
    m.advance(t + 301)
    assert m.values()["fault_code"] == 0
    assert m.values()["entrapment"] == 0
    with pytest.raises(ValueError):
        m.inject_fault(0, 10.0)
