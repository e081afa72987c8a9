"""The store contract: one suite, run unchanged against every backend (see conftest.py).

Every expectation is computed by hand from the data written in the test; the comments show the
arithmetic. Windows start at 16:00 UTC, which is midnight in Asia/Shanghai, so nothing here can
pass by accident of epoch-aligned buckets.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from store.base import Aggregate, RejectedPointsError, Store, Windows, WindowValue
from store.counters import CounterWindow
from store.reading import Quality, Reading, to_us

StoreFactory = Callable[[], Store]

T0 = datetime(2024, 3, 1, 16, 0, tzinfo=UTC)  # 2024-03-02 00:00 in Asia/Shanghai
US = timedelta(microseconds=1)
MIN = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
GOOD, UNCERTAIN, BAD = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD

TAGS_A = {"building": "A座", "floor": "3F", "tenant": "星巴克"}
TAGS_B = {"building": "B座", "floor": "B1"}
TAGS_ZH_KEY = {"区域": "地下车库", "用途": "消防"}


def rd(
    t: datetime,
    device: str,
    metric: str,
    value: float,
    quality: Quality = GOOD,
    unit: str = "kWh",
    tags: Mapping[str, str] = TAGS_A,
) -> Reading:
    return Reading(t, device, metric, value, unit, quality, tags)


def shuffled(readings: list[Reading], seed: int = 7) -> list[Reading]:
    out = list(readings)
    random.Random(seed).shuffle(out)
    return out


def approx_windows(values: list[WindowValue]) -> list[tuple[str, datetime, object]]:
    return [(w.device, w.start, pytest.approx(w.value)) for w in values]


def plain(values: list[WindowValue]) -> list[tuple[str, datetime, float]]:
    return [(w.device, w.start, w.value) for w in values]


# -- writes and latest -------------------------------------------------------------------------
LATEST_DATA = [
    rd(T0 + H, "pm-1", "energy_kwh", 100.0),
    rd(T0 + 2 * H + US, "pm-1", "energy_kwh", 101.5, UNCERTAIN),
    rd(T0 + 30 * MIN, "pm-1", "power_kw", 12.5, unit="kW"),
    rd(T0 + 90 * MIN, "pm-1", "power_kw", 0.0, BAD, unit="kW"),  # latest is any quality
    rd(T0 + H, "pm-2", "energy_kwh", 50.0, tags=TAGS_B),
    rd(T0 + H + 123_457 * US, "wm-1", "flow", 3.25, unit="m³/h", tags=TAGS_ZH_KEY),
]


def test_latest_is_the_last_reading_per_device_and_metric_with_every_field(
    store_factory: StoreFactory,
) -> None:
    s = store_factory()
    data = shuffled(LATEST_DATA)
    s.write(data[:3])
    s.write(data[3:])
    pm1_energy, pm1_power, pm2_energy, wm1_flow = (LATEST_DATA[i] for i in (1, 3, 4, 5))

    got = s.latest()

    assert got == [pm1_energy, pm1_power, pm2_energy, wm1_flow]
    # Field by field, so a failure says which one does not round-trip.
    assert got[0].time == T0 + 2 * H + US and got[0].time.tzinfo is not None
    assert got[0].quality is UNCERTAIN and got[0].unit == "kWh"
    assert dict(got[0].tags) == {"building": "A座", "floor": "3F", "tenant": "星巴克"}
    assert got[1].quality is BAD and got[1].value == 0.0 and got[1].unit == "kW"
    assert dict(got[3].tags) == {"区域": "地下车库", "用途": "消防"}
    assert got[3].unit == "m³/h" and got[3].time.microsecond == 123_457


def test_latest_filters_by_device_metric_and_since(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.write(LATEST_DATA)

    assert s.latest(devices=["pm-1"], metrics=["energy_kwh"]) == [LATEST_DATA[1]]
    assert s.latest(metrics=["power_kw"]) == [LATEST_DATA[3]]
    assert s.latest(devices=["pm-2", "wm-1"]) == [LATEST_DATA[4], LATEST_DATA[5]]
    # since: only series whose last reading is at or after it (T0+2h+1us qualifies).
    assert s.latest(since=T0 + 2 * H) == [LATEST_DATA[1]]
    assert s.latest(devices=["nobody"]) == []
    assert s.latest(devices=[]) == []


def test_an_empty_store_answers_empty(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.write([])
    w = Windows(T0, T0 + D, H)
    assert s.latest() == []
    assert s.aggregate("power_kw", w, "mean") == []
    assert s.series("power_kw", T0, T0 + D) == {}
    assert s.last_before("power_kw", T0) == {}
    assert s.counter_delta("energy_kwh", w) == []
    assert s.state_durations("state", w, gap_tolerance=30 * MIN) == []


def test_writes_are_idempotent_on_device_metric_time(store_factory: StoreFactory) -> None:
    s = store_factory()
    batch = [rd(T0 + k * MIN, "pm-1", "power_kw", float(k), unit="kW") for k in range(10)]
    s.write(batch)
    s.write(batch)  # a replay after a crash between write and ack
    extra = [rd(T0 + k * MIN, "pm-1", "power_kw", float(k), unit="kW") for k in (10, 11)]
    s.write(shuffled(batch[5:] + extra))  # half replayed, half new
    s.write([batch[0], batch[0]])  # the same sample twice in one batch

    pts = s.series("power_kw", T0, T0 + H)
    assert pts == {"pm-1": [(T0 + k * MIN, float(k)) for k in range(12)]}
    # mean of 0..11 = 5.5: a duplicate would move it
    got = s.aggregate("power_kw", Windows(T0, T0 + H, H), "mean")
    assert approx_windows(got) == [("pm-1", T0, pytest.approx(5.5))]
    assert s.latest() == [extra[-1]]


def test_microsecond_timestamps_are_distinct_samples_and_exact(store_factory: StoreFactory) -> None:
    s = store_factory()
    t = T0 + 999_998 * US
    s.write([rd(t + k * US, "pm-1", "power_kw", float(k)) for k in range(4)])  # crosses a second

    pts = s.series("power_kw", t, t + 4 * US)
    assert pts == {"pm-1": [(t + k * US, float(k)) for k in range(4)]}
    assert pts["pm-1"][3][0] == datetime(2024, 3, 1, 16, 0, 1, 1, tzinfo=UTC)
    assert s.last_before("power_kw", t + 3 * US) == {"pm-1": (t + 2 * US, 2.0)}
    assert s.latest()[0].time == t + 3 * US


def test_non_finite_values_are_rejected(store_factory: StoreFactory) -> None:
    s = store_factory()
    good = rd(T0, "pm-1", "power_kw", 1.0)
    for bad_value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(RejectedPointsError):
            s.write([good, rd(T0 + MIN, "pm-1", "power_kw", bad_value)])
    s.write([good])
    assert s.series("power_kw", T0, T0 + H) == {"pm-1": [(T0, 1.0)]}


# -- windowed aggregates -----------------------------------------------------------------------
DAILY = Windows(T0, T0 + 2 * D + 6 * H, D)  # 2 local days, then a last window clipped to 6 h
DAILY_DATA = [
    rd(T0 - US, "pm-1", "power_kw", 999.0),  # before the first window
    rd(T0, "pm-1", "power_kw", 10.0),  # a window includes its start...
    rd(T0 + 4 * H, "pm-1", "power_kw", 20.0),
    rd(T0 + 5 * H, "pm-1", "power_kw", 1000.0, BAD),  # never aggregated
    rd(T0 + D - US, "pm-1", "power_kw", 30.0),  # ...and not its end
    rd(T0 + D, "pm-1", "power_kw", 40.0),
    rd(T0 + D + 2 * H, "pm-1", "power_kw", 50.0, UNCERTAIN),  # only BAD is excluded
    rd(T0 + 2 * D + H, "pm-1", "power_kw", 60.0),
    rd(T0 + 2 * D + 6 * H, "pm-1", "power_kw", 70.0),  # = windows.end: outside the clipped window
    rd(T0 + 2 * D + 7 * H, "pm-1", "power_kw", 80.0),
    rd(T0 + D + 3 * H, "pm-2", "power_kw", 5.0, tags=TAGS_B),
    rd(T0 + D + 4 * H, "pm-2", "power_kw", 7.0, tags=TAGS_B),
    rd(T0 + 2 * H, "pm-3", "power_kw", 500.0, BAD, tags=TAGS_B),  # only BAD: no window at all
    rd(T0 + 2 * H, "pm-1", "energy_kwh", 12345.0),  # another metric
]


@pytest.mark.parametrize(
    ("fn", "pm1", "pm2"),
    [
        # pm-1 day 1: 10, 20, 30; day 2: 40, 50; clipped day 3: 60.  pm-2 day 2: 5, 7.
        ("mean", [20.0, 45.0, 60.0], 6.0),
        ("min", [10.0, 40.0, 60.0], 5.0),
        ("max", [30.0, 50.0, 60.0], 7.0),
        ("last", [30.0, 50.0, 60.0], 7.0),
    ],
)
def test_daily_aggregates_align_on_local_midnight_exclude_bad_and_clip_the_last_window(
    store_factory: StoreFactory, fn: Aggregate, pm1: list[float], pm2: float
) -> None:
    s = store_factory()
    s.write(shuffled(DAILY_DATA))

    got = s.aggregate("power_kw", DAILY, fn)

    starts = [T0, T0 + D, T0 + 2 * D]  # the clipped window still starts at its start
    expected = [("pm-1", st, pytest.approx(v)) for st, v in zip(starts, pm1, strict=True)]
    expected.append(("pm-2", T0 + D, pytest.approx(pm2)))
    assert approx_windows(got) == expected


def test_aggregate_device_filter(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.write(DAILY_DATA)
    assert plain(s.aggregate("power_kw", DAILY, "max", devices=["pm-2"])) == [("pm-2", T0 + D, 7.0)]
    assert s.aggregate("power_kw", DAILY, "max", devices=["pm-3"]) == []
    assert s.aggregate("power_kw", DAILY, "max", devices=[]) == []


def test_quarter_hour_windows_align_on_their_start_not_on_the_epoch(
    store_factory: StoreFactory,
) -> None:
    start = datetime(2024, 3, 1, 0, 7, tzinfo=UTC)  # :07, :22, :37 -- not on the 15-min grid
    w = Windows(start, start + 45 * MIN, 15 * MIN)
    s = store_factory()
    s.write(
        [
            rd(start - US, "s-1", "temp_c", 100.0, unit="℃"),
            rd(start, "s-1", "temp_c", 1.0, unit="℃"),
            rd(start + 15 * MIN - US, "s-1", "temp_c", 3.0, unit="℃"),
            rd(start + 15 * MIN, "s-1", "temp_c", 5.0, unit="℃"),
            rd(start + 33 * MIN, "s-1", "temp_c", 7.0, unit="℃"),
            rd(start + 44 * MIN, "s-1", "temp_c", 9.0, unit="℃"),
            rd(start + 45 * MIN, "s-1", "temp_c", 11.0, unit="℃"),
        ]
    )
    starts = [start, start + 15 * MIN, start + 30 * MIN]
    # [:07, :22): 1, 3   [:22, :37): 5   [:37, :52): 7, 9
    assert approx_windows(s.aggregate("temp_c", w, "mean")) == [
        ("s-1", st, pytest.approx(v)) for st, v in zip(starts, [2.0, 5.0, 8.0], strict=True)
    ]
    assert plain(s.aggregate("temp_c", w, "last")) == [
        ("s-1", st, v) for st, v in zip(starts, [3.0, 5.0, 9.0], strict=True)
    ]


# -- series and last_before --------------------------------------------------------------------
SERIES_DATA = [
    rd(T0 - 2 * H, "pm-1", "energy_kwh", 5.0),
    rd(T0 - H, "pm-1", "energy_kwh", 6.0, BAD),
    rd(T0, "pm-1", "energy_kwh", 7.0),
    rd(T0 + H, "pm-1", "energy_kwh", 8.0, UNCERTAIN),
    rd(T0 + 2 * H, "pm-1", "energy_kwh", 9.0),
    rd(T0 + 3 * H, "pm-1", "energy_kwh", 10.0),
    rd(T0 + 30 * MIN, "pm-2", "energy_kwh", 1.0, tags=TAGS_B),
    rd(T0 + 90 * MIN, "pm-2", "energy_kwh", 2.0, BAD, tags=TAGS_B),
]


def test_series_is_the_non_bad_points_of_a_half_open_range_in_time_order(
    store_factory: StoreFactory,
) -> None:
    s = store_factory()
    s.write(shuffled(SERIES_DATA))

    assert s.series("energy_kwh", T0, T0 + 3 * H) == {
        "pm-1": [(T0, 7.0), (T0 + H, 8.0), (T0 + 2 * H, 9.0)],
        "pm-2": [(T0 + 30 * MIN, 1.0)],
    }
    assert s.series("energy_kwh", T0, T0 + 3 * H, devices=["pm-2"]) == {
        "pm-2": [(T0 + 30 * MIN, 1.0)]
    }
    assert s.series("power_kw", T0, T0 + 3 * H) == {}


def test_series_arrays_are_series_as_arrays(store_factory: StoreFactory) -> None:
    """A backend's own ``series_arrays`` gives exactly the samples ``series`` gives, including
    when one instant was written under two tag sets (tags changed between replays)."""
    s = store_factory()
    s.write(shuffled(SERIES_DATA))
    s.write([rd(T0 + H, "pm-1", "energy_kwh", 8.5, tags=TAGS_B)])  # same instant, new tags
    s.write([rd(T0 + 4 * H, "pm-3", "energy_kwh", 1.0, BAD)])  # only BAD: no series at all

    for devices in (None, ["pm-1"], ["pm-2", "pm-3"]):
        pts = s.series("energy_kwh", T0, T0 + 5 * H, devices)
        got = s.series_arrays("energy_kwh", T0, T0 + 5 * H, devices)
        assert list(got) == list(pts)
        for device, (t, v) in got.items():
            assert t.dtype == np.int64 and v.dtype == np.float64
            assert t.tolist() == [to_us(p[0]) for p in pts[device]]
            assert v.tolist() == [p[1] for p in pts[device]]
    assert s.series_arrays("energy_kwh", T0, T0 + 5 * H, []) == {}
    assert s.series_arrays("power_kw", T0, T0 + 5 * H) == {}
    t, v = s.series_arrays("energy_kwh", T0, T0 + 3 * H)["pm-2"]
    assert (t.tolist(), v.tolist()) == ([to_us(T0 + 30 * MIN)], [1.0])


def test_last_before_is_strictly_before_and_skips_bad(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.write(shuffled(SERIES_DATA))

    # T0 itself is not before T0; the BAD 6.0 at T0-1h is skipped; pm-2 has nothing before T0.
    assert s.last_before("energy_kwh", T0) == {"pm-1": (T0 - 2 * H, 5.0)}
    assert s.last_before("energy_kwh", T0 + H) == {
        "pm-1": (T0, 7.0),
        "pm-2": (T0 + 30 * MIN, 1.0),
    }
    assert s.last_before("energy_kwh", T0 + 4 * H, devices=["pm-2"]) == {
        "pm-2": (T0 + 30 * MIN, 1.0)
    }


# -- counters ----------------------------------------------------------------------------------
DAYS3 = Windows(T0, T0 + 3 * D, D)
COUNTER_DATA = [
    # glitch: a drop to 0 that comes back is a read glitch, not a reset and a huge jump.
    rd(T0 + H, "glitch", "energy_kwh", 1000.0),
    rd(T0 + 2 * H, "glitch", "energy_kwh", 1010.0),
    rd(T0 + 3 * H, "glitch", "energy_kwh", 0.0),
    rd(T0 + 4 * H, "glitch", "energy_kwh", 1020.0),
    rd(T0 + 20 * H, "glitch", "energy_kwh", 1100.0),
    # rollover of a register whose maximum is 100000: 99990 -> 5 is +15.
    rd(T0 + D + H, "rollover", "energy_kwh", 99990.0),
    rd(T0 + D + 2 * H, "rollover", "energy_kwh", 5.0),
    rd(T0 + D + 3 * H, "rollover", "energy_kwh", 20.0),
    # spike: a jump that falls back is skipped.
    rd(T0 + D + H, "spike", "energy_kwh", 500.0),
    rd(T0 + D + 2 * H, "spike", "energy_kwh", 90000.0),
    rd(T0 + D + 3 * H, "spike", "energy_kwh", 501.0),
    rd(T0 + D + 4 * H, "spike", "energy_kwh", 502.0),
    # gap across midnight: 120 kWh over 12 h, 6 h each side of local midnight.
    rd(T0 + D - 6 * H, "gap", "energy_kwh", 2000.0),
    rd(T0 + D + 6 * H, "gap", "energy_kwh", 2120.0),
    # meter replaced: a drop that never comes back and is no rollover.
    rd(T0 + 2 * D + H, "reset", "energy_kwh", 5000.0),
    rd(T0 + 2 * D + 2 * H, "reset", "energy_kwh", 10.0),
    rd(T0 + 2 * D + 4 * H, "reset", "energy_kwh", 15.0),
    # a glitch at the very end of the range: recognised from the sample after windows.end.
    rd(T0 + 3 * D - 2 * H, "edge", "energy_kwh", 700.0),
    rd(T0 + 3 * D - 30 * MIN, "edge", "energy_kwh", 0.0),  # back 40 min later: within 1 h
    rd(T0 + 3 * D + 10 * MIN, "edge", "energy_kwh", 713.0),
    # a BAD sample is not a counter reading at all.
    rd(T0 + 5 * H, "glitch", "energy_kwh", 1.0e9, BAD),
]


def counter_rows(
    got: list[CounterWindow],
) -> list[tuple[str, datetime, object, int, int, int, int]]:
    return [
        (c.device, c.start, pytest.approx(c.delta), c.samples, c.glitches, c.rollovers, c.resets)
        for c in got
    ]


def test_counter_delta_across_days_with_glitches_rollover_spike_gap_and_reset(
    store_factory: StoreFactory,
) -> None:
    s = store_factory()
    s.write(shuffled(COUNTER_DATA))

    got = s.counter_delta("energy_kwh", DAYS3, rollover=100000.0)

    d1, d2, d3 = T0, T0 + D, T0 + 2 * D
    a = pytest.approx
    assert counter_rows(got) == [
        # device, window, delta, samples, glitches, rollovers, resets
        ("edge", d3, a(12.0), 1, 1, 0, 0),  # 13 kWh over 130 min, 120 of them in day 3
        ("gap", d1, a(60.0), 1, 0, 0, 0),
        ("gap", d2, a(60.0), 1, 0, 0, 0),
        ("glitch", d1, a(100.0), 4, 1, 0, 0),  # 1000 -> 1100, the 0 skipped
        ("reset", d3, a(5.0), 3, 0, 0, 1),  # nothing counted across the replacement
        ("rollover", d2, a(30.0), 3, 0, 1, 0),  # 15 + 15
        ("spike", d2, a(2.0), 3, 1, 0, 0),  # 500 -> 502
    ]
    assert all(c.end == c.start + D for c in got)


def test_counter_drop_without_a_rollover_maximum_is_a_reset(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.write(COUNTER_DATA)

    got = s.counter_delta("energy_kwh", DAYS3, devices=["rollover"])

    # 99990 -> 5 cannot be told from a meter replacement: flagged, only 5 -> 20 counted.
    assert counter_rows(got) == [("rollover", T0 + D, pytest.approx(15.0), 3, 0, 0, 1)]


def test_counter_delta_uses_the_point_before_the_window_as_anchor(
    store_factory: StoreFactory,
) -> None:
    s = store_factory()
    s.write(
        [
            rd(T0 - 2 * H, "pm-1", "energy_kwh", 100.0),  # anchor, within the 1-day lookback
            rd(T0 + 2 * H, "pm-1", "energy_kwh", 140.0),
            rd(T0 + 3 * H, "pm-1", "energy_kwh", 150.0),
            rd(T0 - 3 * D, "pm-2", "energy_kwh", 100.0),  # beyond the lookback: no anchor
            rd(T0 + 2 * H, "pm-2", "energy_kwh", 140.0),
        ]
    )

    got = s.counter_delta("energy_kwh", Windows(T0, T0 + D, D))

    # pm-1: 40 kWh over 4 h, 2 h of them inside the day -> 20, then +10.
    assert counter_rows(got) == [
        ("pm-1", T0, pytest.approx(30.0), 2, 0, 0, 0),
        ("pm-2", T0, pytest.approx(0.0), 1, 0, 0, 0),
    ]


# -- state durations ---------------------------------------------------------------------------
UP, DOWN, PLANNED = 1.0, 0.0, 2.0


def test_state_durations_count_uncovered_time_as_unknown(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.write(
        [
            rd(T0 - 20 * MIN, "el-1", "state", DOWN, unit=""),  # held until T0 only
            rd(T0, "el-1", "state", UP, unit=""),
            rd(T0 + 10 * MIN, "el-1", "state", UP, unit=""),
            rd(T0 + 2 * H, "el-1", "state", DOWN, unit=""),
            rd(T0 + 2 * H + 10 * MIN, "el-1", "state", PLANNED, BAD, unit=""),  # ignored
            rd(T0 - 10 * MIN, "el-2", "state", UP, unit=""),  # reaches 20 min into the window
            rd(T0 - 40 * MIN, "el-3", "state", UP, unit=""),  # covers nothing of the window
        ]
    )

    got = s.state_durations("state", Windows(T0, T0 + 3 * H, 3 * H), gap_tolerance=30 * MIN)

    # el-1: UP 10 min + 30 min (a sample holds at most 30 min), DOWN 30 min, unknown 110 min.
    assert [(w.device, w.start, w.end, w.durations, w.unknown) for w in got] == [
        ("el-1", T0, T0 + 3 * H, {UP: 2400.0, DOWN: 1800.0}, 6600.0),
        ("el-2", T0, T0 + 3 * H, {UP: 1200.0}, 9600.0),
    ]


def uptime_month() -> tuple[Windows, list[Reading]]:
    """The domain.md uptime vector as 30-minute samples of one elevator over a 720 h month.

    Hours from the start: DOWN 100-102, 300-302, 500-502 (3 faults, 6 h); PLANNED 400-408;
    no samples 600-606 (the last sample before, at 598.5 h, holds 1.5 h = 3 polls, up to
    600 h); UP everywhere else: 720 - 6 - 8 - 6 = 700 h.
    """
    start = datetime(2024, 3, 31, 16, tzinfo=UTC)  # April in Asia/Shanghai: 30 days = 720 h
    spans = [(100, 102, DOWN), (300, 302, DOWN), (500, 502, DOWN), (400, 408, PLANNED)]
    readings = []
    for half_hours in range(-2, 1440):
        h = half_hours / 2
        if 598.5 < h < 606:
            continue
        state = next((v for a, b, v in spans if a <= h < b), UP)
        readings.append(rd(start + h * H, "el-7", "state", state, unit="", tags=TAGS_B))
    return Windows(start, start + 720 * H, 720 * H), readings


def test_state_durations_reproduce_the_domain_uptime_vector(store_factory: StoreFactory) -> None:
    w, readings = uptime_month()
    s = store_factory()
    s.write(readings)

    (month,) = s.state_durations("state", w, gap_tolerance=90 * MIN)

    assert month.durations == {
        UP: pytest.approx(700 * 3600),
        DOWN: pytest.approx(6 * 3600),
        PLANNED: pytest.approx(8 * 3600),
    }
    assert month.unknown == pytest.approx(6 * 3600)
    up, down, unknown = month.durations[UP], month.durations[DOWN], month.unknown
    # domain.md: A = 99.150 %, A_low = 98.315 %, A_high = 99.157 %, coverage = 99.17 %
    assert round(100 * up / (up + down), 3) == 99.150
    assert round(100 * up / (up + down + unknown), 3) == 98.315
    assert round(100 * (up + unknown) / (up + down + unknown), 3) == 99.157
    assert round(100 * month.coverage, 2) == 99.17


def test_state_durations_per_day_of_the_uptime_month(store_factory: StoreFactory) -> None:
    w, readings = uptime_month()
    s = store_factory()
    s.write(readings)

    days = s.state_durations("state", Windows(w.start, w.end, D), gap_tolerance=90 * MIN)

    assert len(days) == 30
    # day 5 = hours 96-120 holds the first fault; day 26 = hours 600-624 the 6 h without data.
    assert (days[4].start, days[4].durations, days[4].unknown) == (
        w.start + 4 * D,
        {UP: 22 * 3600.0, DOWN: 2 * 3600.0},
        0.0,
    )
    assert (days[25].durations, days[25].unknown) == ({UP: 18 * 3600.0}, 6 * 3600.0)
    assert days[16].durations == {UP: 16 * 3600.0, PLANNED: 8 * 3600.0}  # hours 384-408


def test_a_glitch_just_before_the_window_is_not_taken_as_the_baseline(
    store_factory: StoreFactory,
) -> None:
    s = store_factory()
    s.write(
        [
            rd(T0 - 40 * MIN, "pm-1", "energy_kwh", 1000.0),
            rd(T0 - 20 * MIN, "pm-1", "energy_kwh", 0.0),  # read glitch just before midnight
            rd(T0 + 20 * MIN, "pm-1", "energy_kwh", 1012.0),  # back within the 1 h horizon
        ]
    )

    got = s.counter_delta("energy_kwh", Windows(T0, T0 + D, D))

    # 12 kWh between T0-40min and T0+20min, 20 of the 60 min inside the day: 4. Today the
    # glitch is the baseline: 1012 over 40 min, half of it inside -> 506.
    assert counter_rows(got) == [("pm-1", T0, pytest.approx(4.0), 1, 0, 0, 0)]
