"""Use of a cumulative counter (kWh, m3) per window, robust to glitches, rollover and resets.

Rules (../shared/domain.md, "Counters"):

* use is the sum of positive deltas between trusted samples;
* a drop (to 0 or to any lower value) that returns to the previous level within
  ``glitch_horizon`` is a read glitch: the low samples are skipped, not turned into a reset
  followed by a huge jump;
* a jump that falls back (the next two samples lie between the old level and the jump) is a
  spike glitch and is skipped;
* a drop that does not return is a rollover when ``rollover`` (the register maximum, scaled) is
  given and the drop is more than half of it -- the delta then adds ``rollover`` -- otherwise a
  reset or meter replacement: flagged, and nothing is counted across it;
* each delta is spread over the time between its two samples, so a gap across midnight puts
  each day's share in its own day instead of all of it in the day the meter came back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

Point = tuple[datetime, float]


@dataclass(frozen=True, slots=True)
class CounterWindow:
    device: str
    start: datetime
    end: datetime
    delta: float
    samples: int  # trusted samples inside the window
    glitches: int  # samples skipped as read glitches
    rollovers: int
    resets: int  # drops that did not come back: counted as data-quality issues


@dataclass(frozen=True, slots=True)
class _Step:
    t0: datetime
    t1: datetime
    delta: float


@dataclass(slots=True)
class _Cleaned:
    trusted: list[datetime]
    steps: list[_Step]
    glitches: list[datetime]
    rollovers: list[datetime]
    resets: list[datetime]


def clean_counter(
    points: Sequence[Point],
    rollover: float | None = None,
    glitch_horizon: timedelta = timedelta(hours=1),
) -> _Cleaned:
    """Split a counter series into trusted samples, positive steps and flagged events."""
    out = _Cleaned([], [], [], [], [])
    n = len(points)
    if n == 0:
        return out
    base_t, base_v = points[0]
    out.trusted.append(base_t)
    i = 1
    while i < n:
        t, v = points[i]
        if v >= base_v:
            if _is_spike(points, i, base_v):
                out.glitches.append(t)
                i += 1
                continue
            if v > base_v:
                out.steps.append(_Step(base_t, t, v - base_v))
            base_t, base_v = t, v
            out.trusted.append(t)
            i += 1
            continue
        # A drop: a glitch if the counter comes back within the horizon.
        j = i + 1
        while j < n and points[j][0] - t <= glitch_horizon and points[j][1] < base_v:
            j += 1
        if j < n and points[j][0] - t <= glitch_horizon:
            out.glitches.extend(p[0] for p in points[i:j])
            i = j
            continue
        if rollover is not None and base_v - v > rollover / 2:
            out.steps.append(_Step(base_t, t, rollover - base_v + v))
            out.rollovers.append(t)
        else:
            out.resets.append(t)
        base_t, base_v = t, v
        out.trusted.append(t)
        i += 1
    return out


def _is_spike(points: Sequence[Point], i: int, base_v: float) -> bool:
    v = points[i][1]
    following = points[i + 1 : i + 3]
    return len(following) == 2 and all(base_v <= w < v for _, w in following)


def counter_windows(
    device: str,
    points: Sequence[Point],
    bounds: Sequence[tuple[datetime, datetime]],
    rollover: float | None = None,
    glitch_horizon: timedelta = timedelta(hours=1),
) -> list[CounterWindow]:
    """One :class:`CounterWindow` per bound; windows with no data at all are omitted."""
    c = clean_counter(points, rollover, glitch_horizon)
    out: list[CounterWindow] = []
    for ws, we in bounds:
        delta = 0.0
        touched = False
        for s in c.steps:
            if s.t1 <= ws or s.t0 >= we:
                continue
            touched = True
            span = (s.t1 - s.t0).total_seconds()
            overlap = (min(s.t1, we) - max(s.t0, ws)).total_seconds()
            delta += s.delta * (overlap / span if span > 0 else 1.0)
        samples = sum(1 for t in c.trusted if ws <= t < we)
        glitches = sum(1 for t in c.glitches if ws <= t < we)
        rollovers = sum(1 for t in c.rollovers if ws <= t < we)
        resets = sum(1 for t in c.resets if ws <= t < we)
        if touched or samples or glitches or resets:
            out.append(
                CounterWindow(device, ws, we, delta, samples, glitches, rollovers, resets)
            )
    return out
