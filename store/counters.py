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

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from store.reading import from_us

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
    """One :class:`CounterWindow` per bound; windows with no data at all are omitted.

    ``bounds`` must be sorted and non-overlapping (as ``Windows.bounds`` gives them): one sweep
    over steps and windows keeps a month of minute samples in 15-minute windows linear.
    """
    c = clean_counter(points, rollover, glitch_horizon)
    steps = c.steps
    trusted = [t.timestamp() for t in c.trusted]
    glitched = [t.timestamp() for t in c.glitches]
    rolled = [t.timestamp() for t in c.rollovers]
    reset = [t.timestamp() for t in c.resets]
    s0 = [s.t0.timestamp() for s in steps]
    s1 = [s.t1.timestamp() for s in steps]
    out: list[CounterWindow] = []
    k = 0  # first step that may still overlap the current or a later window
    for ws_dt, we_dt in bounds:
        ws = ws_dt.timestamp()
        we = we_dt.timestamp()
        while k < len(steps) and s1[k] <= ws:
            k += 1
        delta = 0.0
        touched = False
        j = k
        while j < len(steps) and s0[j] < we:
            touched = True
            span = s1[j] - s0[j]
            overlap = min(s1[j], we) - max(s0[j], ws)
            delta += steps[j].delta * (overlap / span if span > 0 else 1.0)
            j += 1
        samples = _count(trusted, ws, we)
        glitches = _count(glitched, ws, we)
        rollovers = _count(rolled, ws, we)
        resets = _count(reset, ws, we)
        if touched or samples or glitches or resets:
            out.append(
                CounterWindow(device, ws_dt, we_dt, delta, samples, glitches, rollovers, resets)
            )
    return out


def _count(times: Sequence[float], start: float, end: float) -> int:
    """How many of the sorted ``times`` lie in ``[start, end)``."""
    return bisect_left(times, end) - bisect_left(times, start)


def counter_windows_arrays(
    device: str,
    t_us: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    bounds: Sequence[tuple[datetime, datetime]],
    rollover: float | None = None,
    glitch_horizon: timedelta = timedelta(hours=1),
) -> list[CounterWindow]:
    """:func:`counter_windows` on arrays: the same result, without a Python loop per sample
    when the counter never drops (the usual month of a healthy meter).

    A series that never decreases has no glitch, spike, rollover or reset, every sample is
    trusted, and spreading each step over its interval is linear interpolation of the counter:
    a window's use is the interpolated counter at its end minus that at its start. A series
    with any drop takes the sample-by-sample path.
    """
    if len(values) == 0 or not bounds:
        return []
    steps = np.diff(values)
    if len(steps) and not bool((steps >= 0).all()):
        points = [(from_us(int(t)), float(v)) for t, v in zip(t_us, values, strict=True)]
        return counter_windows(device, points, bounds, rollover, glitch_horizon)
    times = t_us.astype(np.float64) / 1e6
    ws = np.fromiter((b[0].timestamp() for b in bounds), dtype=np.float64, count=len(bounds))
    we = np.fromiter((b[1].timestamp() for b in bounds), dtype=np.float64, count=len(bounds))
    delta = np.interp(we, times, values) - np.interp(ws, times, values)
    samples = np.searchsorted(times, we, "left") - np.searchsorted(times, ws, "left")
    # Step k runs from sample k to k+1; a window is touched by a positive step overlapping it.
    rising = np.concatenate(([0], np.cumsum(steps > 0)))
    first = np.searchsorted(times[1:], ws, "right")  # first step ending after the start
    stop = np.searchsorted(times[:-1], we, "left")  # steps before this begin before the end
    touched = (stop > first) & (rising[np.maximum(stop, first)] - rising[first] > 0)
    out: list[CounterWindow] = []
    for i in np.flatnonzero(touched | (samples > 0)).tolist():
        ws_dt, we_dt = bounds[i]
        d = float(delta[i]) if touched[i] else 0.0
        out.append(CounterWindow(device, ws_dt, we_dt, d, int(samples[i]), 0, 0, 0))
    return out
