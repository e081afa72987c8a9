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
from store.rollups import GRID_US

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


@dataclass(frozen=True, slots=True)
class WindowBounds:
    """Sorted, non-overlapping windows with their edges as POSIX seconds, computed once.

    Reports window hundreds of meters on the same bounds: converting the datetimes once per
    report instead of once per meter is most of what a healthy meter's month costs.
    """

    bounds: Sequence[tuple[datetime, datetime]]
    starts: npt.NDArray[np.float64]
    ends: npt.NDArray[np.float64]
    edges: npt.NDArray[np.float64] | None  # starts and the last end, when each window ends
    # where the next starts

    @classmethod
    def of(cls, bounds: Sequence[tuple[datetime, datetime]]) -> WindowBounds:
        n = len(bounds)
        starts = np.fromiter((b[0].timestamp() for b in bounds), dtype=np.float64, count=n)
        ends = np.fromiter((b[1].timestamp() for b in bounds), dtype=np.float64, count=n)
        edges = None
        if n and bool((ends[:-1] == starts[1:]).all()):
            edges = np.append(starts, ends[-1])
        return cls(bounds, starts, ends, edges)

    def on_grid(self) -> bool:
        """Whether every window starts and ends on the 15-minute UTC grid (``store.rollups``)."""
        grid = GRID_US / 1e6
        return bool((np.mod(self.starts, grid) == 0).all() and (np.mod(self.ends, grid) == 0).all())


@dataclass(frozen=True, slots=True)
class CounterArrays:
    """:class:`CounterWindow` fields of one device as arrays over every window asked for.

    ``present`` marks the windows :func:`counter_windows` returns (some data); the others hold
    zeros.
    """

    present: npt.NDArray[np.bool_]
    delta: npt.NDArray[np.float64]
    samples: npt.NDArray[np.int64]
    glitches: npt.NDArray[np.int64]
    rollovers: npt.NDArray[np.int64]
    resets: npt.NDArray[np.int64]

    def windows(
        self, device: str, bounds: Sequence[tuple[datetime, datetime]]
    ) -> list[CounterWindow]:
        out: list[CounterWindow] = []
        delta = self.delta.tolist()
        samples = self.samples.tolist()
        glitches = self.glitches.tolist()
        rollovers = self.rollovers.tolist()
        resets = self.resets.tolist()
        for i in np.flatnonzero(self.present).tolist():
            ws_dt, we_dt = bounds[i]
            out.append(
                CounterWindow(
                    device, ws_dt, we_dt, delta[i], samples[i], glitches[i], rollovers[i], resets[i]
                )
            )
        return out


def counter_arrays(
    t_us: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    wb: WindowBounds,
    rollover: float | None = None,
    glitch_horizon: timedelta = timedelta(hours=1),
    weights: npt.NDArray[np.int64] | None = None,
) -> CounterArrays:
    """:func:`counter_windows` of one series as :class:`CounterArrays`: the same numbers,
    without a Python loop per sample when the counter never drops (the usual month of a
    healthy meter).

    A series that never decreases has no glitch, spike, rollover or reset, every sample is
    trusted, and spreading each step over its interval is linear interpolation of the counter:
    a window's use is the interpolated counter at its end minus that at its start. A series
    with any drop takes the sample-by-sample path.

    ``weights`` (``Store.counter_points``): how many samples each point stands for when the
    series is a rising counter's per-bucket first and last samples rather than all of them.
    """
    n = len(wb.bounds)
    zeros = np.zeros(n, dtype=np.int64)
    if len(values) == 0 or n == 0:
        return CounterArrays(
            np.zeros(n, dtype=bool), np.zeros(n), zeros, zeros.copy(), zeros.copy(), zeros.copy()
        )
    steps = np.diff(values)
    if len(steps) and not bool((steps >= 0).all()):
        if weights is not None:
            raise ValueError("a counter that drops must be given as every sample, unweighted")
        points = [(from_us(int(t)), float(v)) for t, v in zip(t_us, values, strict=True)]
        found = counter_windows("", points, wb.bounds, rollover, glitch_horizon)
        pos = {b[0]: i for i, b in enumerate(wb.bounds)}
        idx = np.fromiter((pos[cw.start] for cw in found), dtype=np.int64, count=len(found))
        present = np.zeros(n, dtype=bool)
        present[idx] = True
        delta = np.zeros(n)
        delta[idx] = [cw.delta for cw in found]
        cols = [zeros.copy() for _ in range(4)]
        for col, name in zip(cols, ("samples", "glitches", "rollovers", "resets"), strict=True):
            col[idx] = [getattr(cw, name) for cw in found]
        return CounterArrays(present, delta, *cols)
    times = t_us.astype(np.float64) / 1e6
    ws, we = wb.starts, wb.ends
    if wb.edges is not None:
        # Windows end to end (a report's grid): each edge is looked up once, not twice. The
        # numbers are the same: the same interpolation at the same instants.
        at = np.interp(wb.edges, times, values)
        delta = at[1:] - at[:-1]
        left = np.searchsorted(times, wb.edges, "left")
        samples = _counted(left[1:], weights) - _counted(left[:-1], weights)
        first = np.maximum(np.searchsorted(times, ws, "right") - 1, 0)
        stop = np.minimum(left[1:], len(times) - 1)
    else:
        delta = np.interp(we, times, values) - np.interp(ws, times, values)
        samples = _counted(np.searchsorted(times, we, "left"), weights) - _counted(
            np.searchsorted(times, ws, "left"), weights
        )
        first = np.searchsorted(times[1:], ws, "right")  # first step ending after the start
        stop = np.searchsorted(times[:-1], we, "left")  # steps before this begin before the end
    # Step k runs from sample k to k+1; a window is touched by a positive step overlapping it.
    rising = np.concatenate(([0], np.cumsum(steps > 0)))
    touched = (stop > first) & (rising[np.maximum(stop, first)] - rising[first] > 0)
    return CounterArrays(
        touched | (samples > 0),
        np.where(touched, delta, 0.0),
        samples.astype(np.int64),
        zeros,
        zeros.copy(),
        zeros.copy(),
    )


def _counted(
    positions: npt.NDArray[np.intp], weights: npt.NDArray[np.int64] | None
) -> npt.NDArray[np.int64]:
    """Samples before each position: the position itself, or the weights up to it."""
    if weights is None:
        return positions.astype(np.int64)
    return np.concatenate(([0], np.cumsum(weights)))[positions]


def counter_windows_arrays(
    device: str,
    t_us: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    bounds: Sequence[tuple[datetime, datetime]] | WindowBounds,
    rollover: float | None = None,
    glitch_horizon: timedelta = timedelta(hours=1),
) -> list[CounterWindow]:
    """:func:`counter_windows` on arrays (see :func:`counter_arrays`): the same result."""
    wb = bounds if isinstance(bounds, WindowBounds) else WindowBounds.of(bounds)
    if len(values) == 0 or not wb.bounds:
        return []
    return counter_arrays(t_us, values, wb, rollover, glitch_horizon).windows(device, wb.bounds)
