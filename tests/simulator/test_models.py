"""Behaviour models: plausible shapes, consistent physics, monotonic counters, determinism."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from simulator.models import (
    ElevatorModel,
    ElevatorParams,
    LeakEpisode,
    OutdoorSensorModel,
    OutdoorSensorParams,
    PowerMeterModel,
    PowerMeterParams,
    WaterMeterModel,
    WaterMeterParams,
    Weather,
    WeatherParams,
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
    with pytest.raises(ValueError, match="heating_balance_c"):
        PowerMeterParams(heating_balance_c=20, cooling_balance_c=18)
    with pytest.raises(ValueError, match="saving_fraction"):
        PowerMeterParams(saving_fraction=1.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        PowerMeterParams(saving_from=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="not be negative"):
        PowerMeterParams(cooling_per_c=-0.1)
    with pytest.raises(ValueError, match="warmest_hour"):
        WeatherParams(warmest_hour=24)


# --------------------------------------------------------------------------- weather


def daily_means(w: Weather, first: date, days: int) -> list[float]:
    out = []
    for i in range(days):
        t0 = datetime.combine(first + timedelta(days=i), datetime.min.time(), SHANGHAI)
        out.append(sum(w.temperature_c(t0.timestamp() + h * 1800) for h in range(48)) / 48)
    return out


def test_weather_is_shanghai_like_and_shared_by_seed() -> None:
    w = Weather(WeatherParams(), CLOCK, seed=1)
    january = daily_means(w, date(2025, 1, 1), 31)
    july = daily_means(w, date(2025, 7, 1), 31)
    assert 3.0 <= sum(january) / 31 <= 7.5
    assert 27.5 <= sum(july) / 31 <= 32.0
    # Fronts: warmer and cooler days within a month, a few degrees apart.
    assert 2.0 <= max(july) - min(july) <= 12.0
    # Coldest before dawn, warmest mid-afternoon (on average over a month).
    dawn = [w.temperature_c(at(d, 5)) for d in range(28)]
    afternoon = [w.temperature_c(at(d, 14.5)) for d in range(28)]
    assert sum(afternoon) / 28 - sum(dawn) / 28 > 5.0
    # The same seed is the same weather for every model; another seed is other weather.
    assert Weather(WeatherParams(), CLOCK, seed=1).temperature_c(at(3, 9)) == w.temperature_c(
        at(3, 9)
    )
    assert Weather(WeatherParams(), CLOCK, seed=2).temperature_c(at(3, 9)) != w.temperature_c(
        at(3, 9)
    )


def test_outdoor_sensor_reads_the_weather() -> None:
    sensor = OutdoorSensorModel("t", OutdoorSensorParams(), CLOCK, seed=4)
    weather = Weather(WeatherParams(), CLOCK, seed=4)
    for day in range(3):
        for hour in (3.0, 9.5, 15.0):
            sensor.advance(at(day, hour))
            v = sensor.values()
            assert v["outdoor_temperature"] == pytest.approx(
                weather.temperature_c(at(day, hour)), abs=0.1
            )
            assert 15.0 <= v["outdoor_humidity"] <= 100.0
    before = sensor.values()
    sensor.advance(at(0, 0))  # earlier: ignored
    assert sensor.values() == before


# --------------------------------------------------------------------------- air conditioning

HVAC = {"cooling_per_c": 0.025, "heating_per_c": 0.012}


def hvac_meter(seed: int = 1, **kw: object) -> PowerMeterModel:
    params = PowerMeterParams(peak_kw=200.0, **{**HVAC, **kw})  # type: ignore[arg-type]
    return PowerMeterModel("pm", params, CLOCK, seed)


def day_kwh(m: PowerMeterModel, start: datetime, days: int = 1) -> float:
    m.advance(start.timestamp())
    e0 = m.energy_kwh()
    m.advance((start + timedelta(days=days)).timestamp())
    return m.energy_kwh() - e0


def test_air_conditioning_follows_the_outdoor_temperature() -> None:
    summer = datetime(2025, 7, 21, tzinfo=SHANGHAI)  # a Monday
    spring = datetime(2025, 4, 21, tzinfo=SHANGHAI)
    winter = datetime(2025, 1, 20, tzinfo=SHANGHAI)
    plain = PowerMeterModel("pm", PowerMeterParams(peak_kw=200.0), CLOCK, 1)
    for day, extra in ((summer, 0.15), (winter, 0.04)):
        with_ac, without = day_kwh(hvac_meter(), day), day_kwh(plain, day)
        assert with_ac > without * (1 + extra), day
    # Between the balance points nothing is added.
    m = hvac_meter()
    for h in range(24):
        t = (spring + timedelta(hours=h)).timestamp()
        temp = m.weather.temperature_c(t)
        if 12.0 <= temp <= 18.0:
            assert m.hvac_kw(t, 1.0) == 0.0
    t = (summer + timedelta(hours=15)).timestamp()
    want = 200.0 * 0.025 * (m.weather.temperature_c(t) - 18.0)
    assert m.hvac_kw(t, 1.0) == pytest.approx(want)
    assert m.hvac_kw(t, 0.0) == pytest.approx(want * 0.15)  # empty building: idle share


def test_the_measure_saves_its_fraction_of_the_air_conditioning() -> None:
    measure = datetime(2025, 7, 1, tzinfo=SHANGHAI)
    saving = hvac_meter(saving_from=measure, saving_fraction=0.3)
    none = hvac_meter()
    before = datetime(2025, 6, 20, tzinfo=SHANGHAI)
    assert day_kwh(saving, before, 5) == pytest.approx(day_kwh(none, before, 5), rel=1e-12)
    after = datetime(2025, 7, 10, tzinfo=SHANGHAI)
    saved = day_kwh(none, after, 7) - day_kwh(saving, after, 7)
    plain = PowerMeterModel("pm", PowerMeterParams(peak_kw=200.0), CLOCK, 1)
    ac = day_kwh(hvac_meter(), after, 7) - day_kwh(plain, after, 7)
    assert saved == pytest.approx(0.3 * ac, rel=1e-9)
    assert saved > 1000  # a week of July air conditioning at 200 kW peak


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


def test_entrapments_last_as_long_as_the_params_say() -> None:
    """``entrapment_minutes``: how long a passenger waits for rescue (the demo lets some wait
    past the 30-minute limit)."""
    with pytest.raises(ValueError, match="entrapment_minutes"):
        ElevatorParams(entrapment_minutes=(0.0, 5.0))
    with pytest.raises(ValueError, match="entrapment_minutes"):
        ElevatorParams(entrapment_minutes=(20.0, 10.0))
    params = ElevatorParams(
        lowest_floor=-2,
        top_floor=20,
        faults_per_week=20.0,
        entrapment_share=1.0,
        entrapment_minutes=(31.0, 33.0),
    )
    m = ElevatorModel("el", params, CLOCK, seed=11)
    lengths: list[float] = []
    since: float | None = None
    for t, v in sweep(m, at(0, 0), at(14, 0), 10.0):
        if v["entrapment"] and since is None:
            since = t
        elif not v["entrapment"] and since is not None:
            lengths.append((t - since) / 60)
            since = None
    assert len(lengths) >= 5
    assert all(31.0 - 1 / 6 <= x <= 33.0 + 1 / 6 for x in lengths), lengths


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


STATES = ElevatorModel.STATE_METRICS


def test_state_values_are_what_the_model_reports_at_each_instant() -> None:
    """The bulk states over a week of faults, entrapments and a maintenance window equal the
    model's own values() at every 5-second instant, across several calls."""
    stepped = elevator(faults_per_week=20.0, inspection_every_days=3)
    bulk = elevator(faults_per_week=20.0, inspection_every_days=3)
    t0 = at(0, 0)
    stepped.advance(t0)
    bulk.advance(t0)
    bulk.track_states()
    seen: dict[str, set[float]] = {k: set() for k in STATES}
    for day in range(7):
        times = np.arange(at(day, 0), at(day + 1, 0), 5.0)
        bulk.advance(float(times[-1]) + 1.0)  # the model may stand past the last instant
        got = bulk.state_values(times)
        for i, t in enumerate(times):
            stepped.advance(float(t))
            want = stepped.values(STATES)
            for k in STATES:
                assert got[k][i] == want[k], (k, float(t))
                seen[k].add(want[k])
    assert seen["service_mode"] == {1.0, 2.0, 7.0}  # normal, maintenance, faults
    assert len(seen["fault_code"]) >= 3 and seen["entrapment"] == {0.0, 1.0}


def test_state_values_know_an_injected_fault_and_refuse_untracked_times() -> None:
    m = elevator(faults_per_week=0.0)
    with pytest.raises(RuntimeError, match="advance"):
        m.track_states()
    t = at(0, 8.5)
    m.advance(t)
    with pytest.raises(RuntimeError, match="track_states"):
        m.state_values(np.array([t]))
    m.track_states()
    m.inject_fault(55, 300.0, entrapment=True)
    m.advance(t + 600)
    got = m.state_values(np.array([t - 0.0, t + 299.0, t + 300.0]))
    assert list(got["fault_code"]) == [55.0, 55.0, 0.0]
    assert list(got["entrapment"]) == [1.0, 1.0, 0.0]
    assert list(got["service_mode"]) == [7.0, 7.0, 1.0]
    with pytest.raises(ValueError, match="outside the tracked"):
        m.state_values(np.array([t + 300.0]))  # before the last call's end: dropped
    with pytest.raises(ValueError, match="outside the tracked"):
        m.state_values(np.array([t + 700.0]))  # the model is not there yet
    m.track_states(False)
    with pytest.raises(RuntimeError, match="track_states"):
        m.state_values(np.array([t + 600.0]))
