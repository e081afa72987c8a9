"""store.states: time-weighted state durations with honest unknown time (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from store.states import StateWindow, state_windows

T0 = datetime(2024, 3, 1, 16, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
H = timedelta(hours=1)
UP, DOWN, PLANNED = 1.0, 0.0, 2.0


def pts(*pairs: tuple[timedelta, float]) -> list[tuple[datetime, float]]:
    return [(T0 + dt, v) for dt, v in pairs]


def win(n: int, every: timedelta) -> list[tuple[datetime, datetime]]:
    return [(T0 + k * every, T0 + (k + 1) * every) for k in range(n)]


def shape(got: list[StateWindow]) -> list[tuple[datetime, dict[float, float], float]]:
    return [(w.start, w.durations, w.unknown) for w in got]


def test_a_sample_holds_until_the_next_one() -> None:
    p = pts((0 * MIN, UP), (10 * MIN, DOWN), (40 * MIN, UP))
    got = state_windows("el", p, win(1, H), gap_tolerance=H)
    assert shape(got) == [(T0, {UP: 600.0 + 1200.0, DOWN: 1800.0}, 0.0)]
    assert got[0].coverage == 1.0


def test_a_sample_holds_at_most_the_gap_tolerance_the_rest_is_unknown() -> None:
    p = pts((0 * MIN, UP), (50 * MIN, DOWN))
    got = state_windows("el", p, win(1, H), gap_tolerance=15 * MIN)
    # UP 0-15, unknown 15-50, DOWN 50-60 (its 15 min are clipped by the window end)
    assert shape(got) == [(T0, {UP: 900.0, DOWN: 600.0}, 2100.0)]
    assert got[0].coverage == pytest.approx(1 - 2100 / 3600)


def test_spans_are_clipped_to_each_window() -> None:
    p = pts((-10 * MIN, DOWN), (50 * MIN, UP), (70 * MIN, UP))
    got = state_windows("el", p, win(2, H), gap_tolerance=30 * MIN)
    # DOWN -10..20 (20 min inside), unknown 20..50, UP 50..70 then 70..100
    assert shape(got) == [
        (T0, {DOWN: 1200.0, UP: 600.0}, 1800.0),
        (T0 + H, {UP: 600.0 + 1800.0}, 1200.0),
    ]


def test_windows_no_sample_reaches_are_omitted() -> None:
    p = pts((-30 * MIN, UP), (3 * H, DOWN))
    got = state_windows("el", p, win(4, H), gap_tolerance=30 * MIN)
    # the first sample ends exactly at T0; hours 2 and 3 see nothing; hour 4 sees DOWN
    assert shape(got) == [(T0 + 3 * H, {DOWN: 1800.0}, 1800.0)]
    assert state_windows("el", [], win(1, H), gap_tolerance=H) == []
    assert state_windows("el", p, win(4, H), gap_tolerance=timedelta(0)) == []


def test_the_domain_uptime_vector() -> None:
    # domain.md: 720 h; up 700 h, down 6 h in 3 faults, planned 8 h, unknown 6 h.
    p: list[tuple[datetime, float]] = []
    for h in range(720):
        if 600 <= h < 606:
            continue  # no data
        state = DOWN if h in (100, 101, 300, 301, 500, 501) else PLANNED if 400 <= h < 408 else UP
        p.append((T0 + h * H, state))
    (w,) = state_windows("el", p, [(T0, T0 + 720 * H)], gap_tolerance=H)
    up, down, unknown = w.durations[UP], w.durations[DOWN], w.unknown
    assert (up, down, w.durations[PLANNED], unknown) == (
        700 * 3600.0,
        6 * 3600.0,
        8 * 3600.0,
        6 * 3600.0,
    )
    assert up / (up + down) == pytest.approx(0.99150, abs=5e-6)
    assert up / (up + down + unknown) == pytest.approx(0.98315, abs=5e-6)
    assert (up + unknown) / (up + down + unknown) == pytest.approx(0.99157, abs=5e-6)
    assert w.coverage == pytest.approx(0.9917, abs=5e-5)
