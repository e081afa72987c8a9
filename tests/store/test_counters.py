"""store.counters: use of a cumulative counter per window (pure; hand-computed vectors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from store.counters import CounterWindow, clean_counter, counter_windows, counter_windows_arrays
from store.reading import from_us, to_us

T0 = datetime(2024, 3, 1, 16, 0, tzinfo=UTC)  # local midnight, Asia/Shanghai
MIN = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)


def pts(*pairs: tuple[timedelta, float]) -> list[tuple[datetime, float]]:
    return [(T0 + dt, v) for dt, v in pairs]


def days(n: int) -> list[tuple[datetime, datetime]]:
    return [(T0 + k * D, T0 + (k + 1) * D) for k in range(n)]


def rows(got: list[CounterWindow]) -> list[tuple[datetime, object, int, int, int, int]]:
    return [
        (c.start, pytest.approx(c.delta), c.samples, c.glitches, c.rollovers, c.resets) for c in got
    ]


def one_day(points: list[tuple[datetime, float]], **kw: object) -> tuple[object, ...]:
    (w,) = counter_windows("m", points, days(1), **kw)  # type: ignore[arg-type]
    return (pytest.approx(w.delta), w.samples, w.glitches, w.rollovers, w.resets)


def test_use_is_the_sum_of_positive_deltas() -> None:
    p = pts((H, 0.0), (2 * H, 5.0), (3 * H, 5.0), (4 * H, 12.0))
    assert one_day(p) == (pytest.approx(12.0), 4, 0, 0, 0)


def test_a_drop_to_zero_that_comes_back_is_a_glitch_not_a_reset() -> None:
    p = pts((H, 100.0), (2 * H, 0.0), (3 * H, 104.0))
    assert one_day(p) == (pytest.approx(4.0), 2, 1, 0, 0)


def test_a_drop_to_a_lower_value_that_comes_back_is_a_glitch() -> None:
    p = pts((H, 100.0), (H + 10 * MIN, 60.0), (H + 20 * MIN, 101.0))
    assert one_day(p) == (pytest.approx(1.0), 2, 1, 0, 0)


def test_several_low_samples_inside_the_horizon_are_all_glitches() -> None:
    p = pts(
        (H, 100.0),
        (H + 10 * MIN, 0.0),
        (H + 20 * MIN, 0.0),
        (H + 30 * MIN, 7.0),
        (H + 40 * MIN, 103.0),
    )
    assert one_day(p) == (pytest.approx(3.0), 2, 3, 0, 0)


def test_a_drop_that_returns_only_after_the_horizon_is_a_reset() -> None:
    # 0 for 2 h: by the rule a reset; use restarts from 0 (the 105 after it is counted).
    p = pts((H, 100.0), (H + 10 * MIN, 0.0), (3 * H, 105.0))
    assert one_day(p) == (pytest.approx(105.0), 3, 0, 0, 1)
    # A longer horizon makes the same data a glitch.
    assert one_day(p, glitch_horizon=3 * H) == (pytest.approx(5.0), 2, 1, 0, 0)


def test_a_drop_with_nothing_after_it_is_a_reset() -> None:
    p = pts((H, 100.0), (2 * H, 50.0))
    assert one_day(p) == (pytest.approx(0.0), 2, 0, 0, 1)


def test_rollover_at_the_register_maximum_adds_the_maximum() -> None:
    p = pts((H, 99_990.0), (2 * H, 5.0), (3 * H, 20.0))
    assert one_day(p, rollover=100_000.0) == (pytest.approx(30.0), 3, 0, 1, 0)
    # Without the maximum the same drop cannot be told from a meter replacement.
    assert one_day(p) == (pytest.approx(15.0), 3, 0, 0, 1)


def test_a_drop_of_less_than_half_the_maximum_is_a_reset_not_a_rollover() -> None:
    p = pts((H, 50_000.0), (2 * H, 45_000.0), (4 * H, 45_010.0))
    assert one_day(p, rollover=100_000.0) == (pytest.approx(10.0), 3, 0, 0, 1)


def test_a_spike_that_falls_back_is_skipped() -> None:
    p = pts((H, 500.0), (2 * H, 90_000.0), (3 * H, 501.0), (4 * H, 502.0))
    assert one_day(p) == (pytest.approx(2.0), 3, 1, 0, 0)
    # Falling back exactly onto the old level is still a spike.
    p = pts((H, 500.0), (2 * H, 90_000.0), (3 * H, 500.0), (4 * H, 500.0))
    assert one_day(p) == (pytest.approx(0.0), 3, 1, 0, 0)


def test_a_real_jump_is_kept() -> None:
    # The counter stays up after the jump (or holds it): use, not a spike.
    assert one_day(pts((H, 100.0), (2 * H, 5000.0), (3 * H, 5001.0), (4 * H, 5002.0)))[0] == (
        pytest.approx(4902.0)
    )
    assert one_day(pts((H, 100.0), (2 * H, 200.0), (3 * H, 200.0), (4 * H, 200.0)))[0] == (
        pytest.approx(100.0)
    )


def test_a_jump_in_the_last_two_samples_cannot_be_judged_yet() -> None:
    # Only one sample after the jump: it is counted, and the fall back is then a reset. The
    # store reads a day past windows.end so that data after the window settles such cases.
    p = pts((H, 100.0), (2 * H, 5000.0), (3 * H, 101.0))
    assert one_day(p) == (pytest.approx(4900.0), 3, 0, 0, 1)


def test_a_gap_across_midnight_is_split_in_proportion_to_time() -> None:
    # 120 over 12 h, 8 h before and 4 h after local midnight.
    p = pts((D - 8 * H, 2000.0), (D + 4 * H, 2120.0))
    assert rows(counter_windows("m", p, days(2))) == [
        (T0, pytest.approx(80.0), 1, 0, 0, 0),
        (T0 + D, pytest.approx(40.0), 1, 0, 0, 0),
    ]


def test_a_step_over_a_whole_day_gives_that_day_its_share_and_no_sample() -> None:
    p = pts((12 * H, 0.0), (2 * D + 12 * H, 48.0))
    assert rows(counter_windows("m", p, days(3))) == [
        (T0, pytest.approx(12.0), 1, 0, 0, 0),
        (T0 + D, pytest.approx(24.0), 0, 0, 0, 0),
        (T0 + 2 * D, pytest.approx(12.0), 1, 0, 0, 0),
    ]


def test_a_rollover_across_midnight_is_split_too() -> None:
    p = pts((D - H, 99_995.0), (D + H, 5.0))
    assert rows(counter_windows("m", p, days(2), rollover=100_000.0)) == [
        (T0, pytest.approx(5.0), 1, 0, 0, 0),
        (T0 + D, pytest.approx(5.0), 1, 0, 1, 0),
    ]


def test_windows_without_data_are_omitted_and_a_glitch_alone_is_reported() -> None:
    # Day 1: 100 then a glitch; it returns to 100 on day 3: no use, and day 2 saw nothing.
    p = pts((23 * H, 100.0), (23 * H + 50 * MIN, 0.0), (2 * D + 10 * MIN, 100.0))
    got = counter_windows("m", p, days(4), glitch_horizon=2 * D)
    assert rows(got) == [
        (T0, pytest.approx(0.0), 1, 1, 0, 0),
        (T0 + 2 * D, pytest.approx(0.0), 1, 0, 0, 0),
    ]
    assert counter_windows("m", [], days(2)) == []


def test_clean_counter_lists_trusted_samples_and_events_in_time_order() -> None:
    p = pts((H, 10.0), (2 * H, 0.0), (3 * H, 12.0), (4 * H, 9000.0), (5 * H, 13.0), (6 * H, 14.0))
    c = clean_counter(p)
    assert c.trusted == [T0 + H, T0 + 3 * H, T0 + 5 * H, T0 + 6 * H]
    assert c.glitches == [T0 + 2 * H, T0 + 4 * H]
    assert [(s.t0, s.t1, s.delta) for s in c.steps] == [
        (T0 + H, T0 + 3 * H, 2.0),
        (T0 + 3 * H, T0 + 5 * H, 1.0),
        (T0 + 5 * H, T0 + 6 * H, 1.0),
    ]
    assert c.rollovers == [] and c.resets == []


@pytest.mark.parametrize("seed", range(6))
def test_array_path_gives_the_same_windows_as_the_sample_path(seed: int) -> None:
    """counter_windows_arrays (interpolation when the counter never drops) == counter_windows."""
    rng = np.random.default_rng(seed)
    n = 400
    gaps = rng.choice([30, 60, 60, 60, 900, 7200], size=n)  # seconds, with some long gaps
    times = np.cumsum(gaps).astype(np.int64) * 1_000_000 + to_us(T0 - 3 * H)
    values = np.cumsum(rng.choice([0.0, 0.0, 0.4, 1.3], size=n)) + 100.0
    if seed % 2:  # a zero glitch and a reset: must take the sample-by-sample path
        values[n // 3] = 0.0
        values[2 * n // 3 :] -= 50.0
    bounds = [(T0 + k * 15 * MIN, T0 + (k + 1) * 15 * MIN) for k in range(4 * 24 * 3)]
    points = [(from_us(int(t)), float(v)) for t, v in zip(times, values, strict=True)]
    want = counter_windows("m", points, bounds)
    got = counter_windows_arrays("m", times, values, bounds)
    assert rows(got) == rows(want)
