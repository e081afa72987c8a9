"""Water use, minimum night flow, leak episodes and unaccounted water (../shared/domain.md).

Use. Per meter and local day from ``Store.counter_delta`` of ``WaterSettings.metric`` (m3), so
read glitches, rollover and resets are handled as in every report. A building's use is the sum
of its mains (meters without a parent); unaccounted water is a main minus the sum of its
sub-meters (``rc.children``) over the period, reported only when all of them have data.

Minimum night flow (MNF). For each meter and night, the lowest rolling ``rolling`` average flow
inside the ``night`` window (02:00-04:00 local), time-weighted:

* from ``flow_metric`` samples, each holding until the next one for at most ``gap_polls`` x
  the poll interval, when they cover at least 90 % of the night window;
* otherwise from the volume counter: each step between trusted samples is an even flow over
  its interval (steps longer than the rolling window say nothing about its lowest hour and
  leave that time uncovered).

A rolling window counts when at least 90 % of it is covered; its average is over the covered
time. Flow "reaches zero" in ``no_zero_window`` when a flow sample is 0, or, from volume, when
the counter stands still for 15 minutes (a register of 1 L moves at least that often at any
flow above 0.004 m3/h, so shorter standstills at fast polling do not mean zero flow).

Nights. High: MNF > max(``threshold_m3h``, ``ratio`` x the day's mean flow, i.e. the day's
volume / its hours). No zero: not high but flow never reached zero. Clean: neither. No data:
no MNF. A leak opens after ``leak_nights`` high nights in a row, or ``no_zero_nights`` nights
in a row without zero flow (a high night without zero counts for both); it starts on the first
night of that run. It clears after ``clear_nights`` clean nights in a row and ends on the last
night before them. A night without data breaks every run and keeps an open leak open (missing
data never clears a leak). The replay starts before the period -- far enough back to find
``clear_nights`` clean nights in a row, or the meter's first data -- so a leak already open at
the period start is known.

Loss. ``(mean MNF - allowance) x 24 h x nights``, over the episode's nights inside the period
(the mean is of those nights' MNF; nights without data count as open with that mean); cost =
loss x ``price_per_m3``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from collector.profile import load_profile
from config.models import Device
from config.reporting import WaterSettings, span_text
from reports.context import ReportContext
from reports.period import Period, local_midnight
from store.base import SeriesArrays, Windows
from store.counters import clean_counter
from store.reading import from_us, to_us

NightStatus = Literal["high", "no_zero", "clean", "no_data"]
FlowSource = Literal["flow_rate", "volume"]
OpenedBy = Literal["mnf", "no_zero"]

MIN_COVERAGE = 0.9  # of a night window or rolling window, for a figure to be computed
ZERO_STILL = timedelta(minutes=15)  # counter standstill that means zero flow
ZERO_FLOW = 1e-9  # m3/h: a flow sample at or below this is zero
LOOKBACK_DAYS: tuple[int, ...] = (35, 105, 371)  # tried in turn to find the leak state

_M3 = 3  # digits: litres
_M3H = 4
_MONEY = 2
_RATE = 6


# -- output -----------------------------------------------------------------------------------
class WaterDay(BaseModel):
    day: date
    m3: float | None = Field(description="Use on this local day; null when no data")


class NightOut(BaseModel):
    night: date = Field(description="Local date of the night window (02:00-04:00 by default)")
    mnf_m3h: float | None = Field(description="Minimum night flow; null when not covered")
    limit_m3h: float = Field(description="max(threshold, ratio x the day's mean flow)")
    reached_zero: bool | None = Field(
        description="Flow reached zero in the no-zero window; null when not covered"
    )
    status: NightStatus = Field(description="high | no_zero | clean | no_data")
    source: FlowSource | None = Field(description="What the MNF was computed from")
    leak_open: bool = Field(description="A leak is open after this night")


class LeakEpisodeOut(BaseModel):
    device: str
    name: str
    building: str
    start_night: date = Field(description="First night of the run that opened the leak")
    opened_night: date = Field(description="Night the rule confirmed the leak")
    opened_by: OpenedBy = Field(
        description="mnf: high minimum night flow; no_zero: flow never reached zero"
    )
    end_night: date | None = Field(description="Last night before the clean run; null if open")
    cleared_night: date | None = Field(description="Night the clean run cleared it")
    open: bool = Field(description="Still open at the end of the report")
    nights: int = Field(description="Nights from start to end (or the last night seen)")
    nights_in_period: int = Field(description="Of those, nights inside the period")
    mean_mnf_m3h: float | None = Field(description="Mean MNF of the nights in the period")
    peak_mnf_m3h: float | None = Field(description="Highest MNF of the episode")
    allowance_m3h: float = Field(description="Legitimate night use subtracted from the MNF")
    loss_m3: float | None = Field(
        description="(mean MNF - allowance) x 24 h x nights in the period"
    )
    cost: float | None = Field(description="loss x water price")


class WaterMeterOut(BaseModel):
    device: str
    name: str
    building: str
    parent: str | None = Field(description="Upstream meter; null for a main")
    main: bool = Field(description="Counts in the building total (no parent)")
    total_m3: float | None = Field(description="Use over the period; null when no data")
    completeness: float | None = Field(
        description="Fraction of the days so far with data; null before the period starts"
    )
    days: list[WaterDay]
    nights: list[NightOut] = Field(description="Nights of the period evaluated so far")
    leak_open: bool = Field(description="A leak is open after the last night evaluated")
    history_complete: bool = Field(
        description="False when the replay could not go back far enough to know whether a "
        "leak was open at the period start"
    )


class UnaccountedOut(BaseModel):
    main: str
    sub_meters: list[str]
    main_m3: float | None
    sub_m3: float | None = Field(description="Sum of the sub-meters; null if one has no data")
    unaccounted_m3: float | None = Field(description="main - sub-meters")
    unaccounted_share: float | None = Field(description="unaccounted / main, fraction")


class WaterBuildingOut(BaseModel):
    building: str
    name: str
    total_m3: float | None = Field(description="Sum of the building's mains")
    cost: float | None = Field(description="total x water price")
    days: list[WaterDay] = Field(description="Sum of the mains per day")
    unaccounted: list[UnaccountedOut] = Field(description="Per main with sub-meters")
    unaccounted_m3: float | None
    unaccounted_share: float | None = Field(
        description="Unaccounted / use of the mains that have sub-meters, fraction"
    )
    leaks: int = Field(description="Leak episodes in the period")
    leak_loss_m3: float
    leak_cost: float


class WaterReport(BaseModel):
    period: str = Field(description="YYYY-MM, or first..last day")
    timezone: str
    start: datetime
    end: datetime = Field(description="The period end, or now while it runs")
    complete: bool = Field(description="False while the period is still running")
    building: str | None = Field(description="Only this building; null for the whole site")
    unit: str = Field(default="m3")
    currency: str
    price_per_m3: float
    night_window: str = Field(description="Local window of the minimum night flow")
    rolling_min: float = Field(description="Averaging window of the night flow, minutes")
    no_zero_window: str = Field(description="Local window in which flow must touch zero")
    threshold_m3h: float
    ratio: float
    allowance_m3h: float
    leak_nights: int
    no_zero_nights: int
    clear_nights: int
    rules: list[str] = Field(description="How nights, leaks and losses are decided")
    total_m3: float | None = Field(description="Sum of the mains of the report")
    cost: float | None
    leak_loss_m3: float
    leak_cost: float
    meters: list[WaterMeterOut]
    buildings: list[WaterBuildingOut]
    leaks: list[LeakEpisodeOut] = Field(description="Leak episodes overlapping the period")


# -- flow segments and the night figures --------------------------------------------------------
def _ts(t: datetime) -> float:
    return t.timestamp()


_US = 1e6
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Segments:
    """Flow held constant over ``[start, end)`` pieces (epoch seconds, m3/h), in time order and
    not overlapping, with running totals for integrals over any range."""

    start: F64
    end: F64
    rate: F64
    _volume: F64 = field(init=False, repr=False)
    _covered: F64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        span = self.end - self.start
        object.__setattr__(self, "_volume", np.concatenate(([0.0], np.cumsum(self.rate * span))))
        object.__setattr__(self, "_covered", np.concatenate(([0.0], np.cumsum(span))))

    @classmethod
    def empty(cls) -> Segments:
        z = np.empty(0, np.float64)
        return cls(z, z, z)

    def __len__(self) -> int:
        return len(self.start)

    def upto(self, t: F64) -> tuple[F64, F64]:
        """Volume (m3/h x s) and covered seconds from the far past up to each ``t``."""
        if not len(self):
            return np.zeros_like(t), np.zeros_like(t)
        i = np.searchsorted(self.start, t, side="right")  # pieces starting at or before t
        k = np.maximum(i - 1, 0)  # the last of them, partly before t
        has = i > 0
        part = np.where(has, np.clip(np.minimum(t, self.end[k]) - self.start[k], 0, None), 0.0)
        volume = np.where(has, self._volume[k] + self.rate[k] * part, 0.0)
        covered = np.where(has, self._covered[k] + part, 0.0)
        return volume, covered

    def coverage(self, a: float, b: float) -> float:
        if b <= a or not len(self):
            return 0.0
        _, cov = self.upto(np.array([a, b]))
        return float(cov[1] - cov[0]) / (b - a)


def flow_segments(series: SeriesArrays, tolerance: timedelta) -> Segments:
    """Each flow sample holds until the next one, for at most ``tolerance``."""
    t_us, v = series
    if len(t_us) == 0:
        return Segments.empty()
    s = t_us.astype(np.float64) / _US
    e = np.minimum(s + tolerance.total_seconds(), np.append(s[1:], np.inf))
    keep = e > s
    return Segments(s[keep], e[keep], np.maximum(v[keep], 0.0))


def volume_segments(series: SeriesArrays, max_span: timedelta, rollover: float | None) -> Segments:
    """Even flow over each interval between trusted counter samples (glitches skipped, as in
    ``store.counters``); intervals longer than ``max_span`` or ending in a reset are left out."""
    t_us, v = series
    if len(t_us) < 2:
        return Segments.empty()
    if bool((np.diff(v) >= 0).all()):
        # A counter that never drops has no glitch, rollover or reset: every sample is trusted.
        times, deltas = t_us.astype(np.float64) / _US, np.diff(v)
        a, b = times[:-1], times[1:]
        usable = np.ones(len(a), dtype=bool)
    else:
        c = clean_counter(
            [(from_us(int(t)), float(x)) for t, x in zip(t_us, v, strict=True)], rollover
        )
        step_at = {st.t1: (st.t0, st.delta) for st in c.steps}
        pairs = list(pairwise(c.trusted))
        resets = set(c.resets)
        a = np.array([x.timestamp() for x, _ in pairs], dtype=np.float64)
        b = np.array([y.timestamp() for _, y in pairs], dtype=np.float64)
        deltas = np.array(
            [step_at[y][1] if y in step_at and step_at[y][0] == x else 0.0 for x, y in pairs],
            dtype=np.float64,
        )
        usable = np.array([y not in resets for _, y in pairs], dtype=bool)
    span = b - a
    keep = usable & (span > 0) & (span <= max_span.total_seconds())
    return Segments(a[keep], b[keep], deltas[keep] / (span[keep] / 3600))


def rolling_minimum(segs: Segments, a: float, b: float, width: float) -> float | None:
    """Lowest average flow (m3/h) of a ``width``-second window sliding inside ``[a, b)``.

    The covered integral is piecewise linear in the window start, so its minimum lies where a
    window edge meets a segment edge or the range ends: only those starts are tried. A window
    counts when at least 90 % of it is covered; its average is over the covered time.
    """
    if not len(segs) or b <= a:
        return None
    width = min(width, b - a)
    last = b - width
    cand = np.concatenate(([a, last], segs.start, segs.end, segs.start - width, segs.end - width))
    cand = np.unique(cand[(cand >= a) & (cand <= last)])
    v0, c0 = segs.upto(cand)
    v1, c1 = segs.upto(cand + width)
    cov = c1 - c0
    ok = (cov >= MIN_COVERAGE * width) & (cov > 0)
    if not ok.any():
        return None
    return float(((v1 - v0)[ok] / cov[ok]).min())


def reached_zero(segs: Segments, a: float, b: float, still: timedelta) -> bool | None:
    """Zero flow for at least ``still`` (any length when zero) inside ``[a, b)``; None when
    the window is not covered enough to say no."""
    s = np.maximum(segs.start, a)
    e = np.minimum(segs.end, b)
    inside = e > s
    s, e, zero = s[inside], e[inside], segs.rate[inside] <= ZERO_FLOW
    need = still.total_seconds()
    if zero.any():
        if need <= 0:
            return True
        # Lengths of runs of zero-flow pieces that touch each other.
        run, run_end = 0.0, None
        for s0, e0, z in zip(s.tolist(), e.tolist(), zero.tolist(), strict=True):
            if not z:
                run, run_end = 0.0, None
                continue
            run = run + (e0 - s0) if run_end == s0 else e0 - s0
            run_end = e0
            if run >= need:
                return True
    return False if segs.coverage(a, b) >= MIN_COVERAGE else None


# -- nights and leaks -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NightEval:
    night: date
    mnf: float | None
    limit: float
    reached_zero: bool | None
    status: NightStatus
    source: FlowSource | None


def night_status(mnf: float | None, limit: float, zero: bool | None) -> NightStatus:
    if mnf is None:
        return "no_data"
    if mnf > limit:
        return "high"
    return "no_zero" if zero is False else "clean"


@dataclass(slots=True)
class LeakRun:
    start: date
    opened: date
    opened_by: OpenedBy
    nights: list[NightEval]
    end: date | None = None
    cleared: date | None = None


def track_leaks(nights: Sequence[NightEval], s: WaterSettings) -> tuple[list[LeakRun], list[bool]]:
    """Leak episodes over consecutive nights (one entry per calendar night, no gaps), and
    whether a leak is open after each night. Starts with no leak open."""
    runs: list[LeakRun] = []
    flags: list[bool] = []
    high = no_zero = clean = 0
    cur: LeakRun | None = None
    for i, n in enumerate(nights):
        if n.status == "no_data":
            high = no_zero = clean = 0
        elif n.status == "high":
            high += 1
            no_zero = no_zero + 1 if n.reached_zero is False else 0
            clean = 0
        elif n.status == "no_zero":
            no_zero += 1
            high = clean = 0
        else:
            high = no_zero = 0
            clean += 1
        if cur is None:
            by: OpenedBy | None = (
                "mnf"
                if high >= s.leak_nights
                else "no_zero"
                if no_zero >= s.no_zero_nights
                else None
            )
            if by is not None:
                first = i - max(high, no_zero) + 1
                cur = LeakRun(nights[first].night, n.night, by, list(nights[first : i + 1]))
                runs.append(cur)
        else:
            cur.nights.append(n)
            if clean >= s.clear_nights:
                last = i - clean  # the last night that was not clean
                cur.end = nights[last].night
                cur.cleared = n.night
                del cur.nights[len(cur.nights) - clean :]
                cur = None
        flags.append(cur is not None)
    return runs, flags


def _reset_point(nights: Sequence[NightEval], clear_nights: int) -> bool:
    """A run of clean nights after which no leak can be open, whatever came before."""
    run = 0
    for n in nights:
        run = run + 1 if n.status == "clean" else 0
        if run >= clear_nights:
            return True
    return False


# -- the report -------------------------------------------------------------------------------
def _at(d: date, minutes: int, rc: ReportContext) -> datetime:
    # Wall-clock arithmetic in the site zone, then UTC: aware datetimes sharing a ZoneInfo
    # compare by wall time, which goes wrong across a daylight-saving change.
    return (local_midnight(d, rc.tz) + timedelta(minutes=minutes)).astimezone(UTC)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _rollover(device: Device, metric: str) -> float | None:
    """The counter's wrap value from the device's profile; None when unknown."""
    try:
        src = device.source
        if src.type == "mqtt":
            return None
        return load_profile(src.profile).register(metric).rollover
    except (OSError, ValueError, KeyError):
        return None


def daily_use(
    rc: ReportContext, meters: Sequence[Device], first: date, last: date, until: datetime
) -> dict[str, dict[date, float]]:
    """m3 per meter and local day over ``[first, last]``, the day running at ``until`` up to
    then and later days not at all; days without data are absent."""
    metric = rc.config.reports.water.metric
    days: list[date] = []
    bounds: list[tuple[datetime, datetime]] = []
    for d in _days(first, last):
        d0, d1 = _at(d, 0, rc), _at(d + timedelta(days=1), 0, rc)
        if d0 >= until:
            break
        days.append(d)
        bounds.append((d0, min(d1, until)))
    if not days:
        return {}
    day_of = {b[0]: d for d, b in zip(days, bounds, strict=True)}
    # One query for the whole range when every day is 24 h long; a daylight-saving change
    # makes days of 23 or 25 h, which fixed-length windows cannot follow.
    one = timedelta(days=1)
    uniform = all(e - s == one for s, e in bounds[:-1]) and bounds[-1][1] - bounds[-1][0] <= one
    groups: dict[float | None, list[str]] = defaultdict(list)
    for m in meters:
        groups[_rollover(m, metric)].append(m.id)
    out: dict[str, dict[date, float]] = defaultdict(dict)
    for rollover, ids in groups.items():
        windows = (
            [Windows(bounds[0][0], bounds[-1][1], one)]
            if uniform
            else [Windows(s, e, e - s) for s, e in bounds]
        )
        for w in windows:
            for cw in rc.store.counter_delta(metric, w, ids, rollover=rollover):
                hit = day_of.get(cw.start)
                if hit is not None:
                    out[cw.device][hit] = cw.delta
    return out


class _MeterNights:
    """Night evaluations of one meter, computed on demand and kept."""

    def __init__(self, rc: ReportContext, meter: Device, now: datetime) -> None:
        self.rc = rc
        self.meter = meter
        self.s = rc.config.reports.water
        self.now = now
        self.rollover = _rollover(meter, self.s.metric)
        self.tolerance = meter.poll_interval * self.s.gap_polls
        self.evals: dict[date, NightEval] = {}
        self.daily: dict[date, float] = {}
        self.daily_from = date.max  # first day whose use has been read into ``daily``
        self.has_flow: bool | None = None
        self._horizon = date.min  # the last night the current nights() call goes to
        # metric -> (from, to, samples): the latest read of a week of nights
        self._read: dict[str, tuple[datetime, datetime, SeriesArrays]] = {}

    def bounds(self, d: date) -> tuple[float, float, float, float]:
        (n0, n1), (z0, z1) = self.s.night, self.s.no_zero_window
        return (
            _ts(_at(d, n0, self.rc)),
            _ts(_at(d, n1, self.rc)),
            _ts(_at(d, z0, self.rc)),
            _ts(_at(d, z1, self.rc)),
        )

    def done(self, d: date) -> bool:
        """The night and the no-zero window are over by ``now``."""
        _, n1, _, z1 = self.bounds(d)
        return max(n1, z1) <= _ts(self.now)

    def nights(self, first: date, last: date) -> list[NightEval]:
        """Evaluated nights from ``first`` on, up to ``last`` or the last night that is over."""
        out: list[NightEval] = []
        self._horizon = last
        for d in _days(first, last):
            if not self.done(d):
                break
            if d not in self.evals:
                self.evals[d] = self._evaluate(d)
            out.append(self.evals[d])
        return out

    def _points(self, metric: str, d: date, before: timedelta, after: timedelta) -> SeriesArrays:
        """Samples of ``metric`` around night ``d``'s windows (``before`` and ``after`` them).

        Read a week of nights per query and sliced here: one query per night costs a round
        trip each on a remote store. Only the latest read is kept, so memory stays at a week.
        """
        _, _, lo, hi = self._span(d)
        lo, hi = lo - before, hi + after
        got = self._read.get(metric)
        if got is None or not (got[0] <= lo and hi <= got[1]):
            last = min(d + timedelta(days=6), max(d, self._horizon))
            chunk_hi = self._span(last)[3] + after
            arrays = self.rc.store.series_arrays(metric, lo, chunk_hi, [self.meter.id])
            empty = (np.empty(0, np.int64), np.empty(0, np.float64))
            got = (lo, chunk_hi, arrays.get(self.meter.id, empty))
            self._read[metric] = got
        t, v = got[2]
        i, j = np.searchsorted(t, [to_us(lo), to_us(hi)], side="left")
        return t[i:j], v[i:j]

    def _span(self, d: date) -> tuple[float, float, datetime, datetime]:
        n0, n1, z0, z1 = self.bounds(d)
        return (
            n0,
            n1,
            datetime.fromtimestamp(min(n0, z0), UTC),
            datetime.fromtimestamp(max(n1, z1), UTC),
        )

    def _segments(self, d: date) -> tuple[Segments, FlowSource] | None:
        n0, n1, _, _ = self._span(d)
        if self.has_flow is None:
            found = self.rc.store.last_before(self.s.flow_metric, self.now, [self.meter.id])
            self.has_flow = bool(found)
        if self.has_flow:
            pts = self._points(self.s.flow_metric, d, self.tolerance, timedelta(0))
            segs = flow_segments(pts, self.tolerance)
            if segs.coverage(n0, n1) >= MIN_COVERAGE:
                return segs, "flow_rate"
        margin = max(self.s.rolling, self.tolerance)
        pts = self._points(self.s.metric, d, margin, margin)
        segs = volume_segments(pts, self.s.rolling, self.rollover)
        if segs.coverage(n0, n1) >= MIN_COVERAGE:
            return segs, "volume"
        return None

    def _limit(self, d: date) -> float:
        use = self.daily.get(d)
        limit = self.s.threshold_m3h
        if use is None:
            return limit
        start = _at(d, 0, self.rc)
        end = min(_at(d + timedelta(days=1), 0, self.rc), self.now)
        hours = (end - start).total_seconds() / 3600
        return max(limit, self.s.ratio * use / hours) if hours > 0 else limit

    def _evaluate(self, d: date) -> NightEval:
        limit = self._limit(d)
        found = self._segments(d)
        if found is None:
            return NightEval(d, None, limit, None, "no_data", None)
        segs, source = found
        n0, n1, z0, z1 = self.bounds(d)
        mnf = rolling_minimum(segs, n0, n1, self.s.rolling.total_seconds())
        still = timedelta(0) if source == "flow_rate" else ZERO_STILL
        zero = reached_zero(segs, z0, z1, still)
        return NightEval(d, mnf, limit, zero, night_status(mnf, limit, zero), source)


@dataclass(slots=True)
class _MeterResult:
    out: WaterMeterOut
    leaks: list[LeakEpisodeOut]
    days: dict[date, float]


def _leak_history(
    rc: ReportContext, mn: _MeterNights, period: Period
) -> tuple[list[NightEval], bool]:
    """Nights from far enough before the period to know the leak state, and whether that
    point was found: the meter's first data, or a clean run that no leak survives."""
    s = mn.s
    ids = [mn.meter.id]
    day_before = period.first - timedelta(days=1)
    for back in (0, *LOOKBACK_DAYS):
        first = period.first - timedelta(days=back)
        start = _at(first, 0, rc)
        earlier = rc.store.last_before(s.metric, start, ids) or rc.store.last_before(
            s.flow_metric, start, ids
        )
        if back and first < mn.daily_from:
            got = daily_use(rc, [mn.meter], first, mn.daily_from - timedelta(days=1), mn.now)
            mn.daily.update(got.get(mn.meter.id, {}))
            mn.daily_from = first
        if not earlier or (back and _reset_point(mn.nights(first, day_before), s.clear_nights)):
            return mn.nights(first, period.last), True
    return mn.nights(first, period.last), False


def _meter(
    rc: ReportContext,
    meter: Device,
    period: Period,
    as_of: datetime,
    daily: dict[date, float],
) -> _MeterResult:
    s = rc.config.reports.water
    mn = _MeterNights(rc, meter, as_of)
    mn.daily.update(daily)
    mn.daily_from = period.first
    history, complete = _leak_history(rc, mn, period)
    runs, flags = track_leaks(history, s)
    in_period = [
        (n, f)
        for n, f in zip(history, flags, strict=True)
        if period.first <= n.night <= period.last
    ]
    elapsed = [d for d, d0, _ in period.day_bounds() if d0 < as_of]
    days = [WaterDay(day=d, m3=_r(daily.get(d), _M3)) for d in period.days]
    known = [daily[d] for d in period.days if d in daily]
    leaks = [
        _episode(meter, r, period, s)
        for r in runs
        if r.start <= period.last and (r.end is None or r.end >= period.first)
    ]
    out = WaterMeterOut(
        device=meter.id,
        name=meter.name,
        building=meter.location.building,
        parent=meter.parent,
        main=meter.parent is None,
        total_m3=round(sum(known), _M3) if known else None,
        completeness=round(len(known) / len(elapsed), _RATE) if elapsed else None,
        days=days,
        nights=[
            NightOut(
                night=n.night,
                mnf_m3h=_r(n.mnf, _M3H),
                limit_m3h=round(n.limit, _M3H),
                reached_zero=n.reached_zero,
                status=n.status,
                source=n.source,
                leak_open=f,
            )
            for n, f in in_period
        ],
        leak_open=bool(flags and flags[-1]),
        history_complete=complete,
    )
    return _MeterResult(out, leaks, {d: daily[d] for d in period.days if d in daily})


def _r(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def _episode(meter: Device, r: LeakRun, period: Period, s: WaterSettings) -> LeakEpisodeOut:
    inside = [n for n in r.nights if period.first <= n.night <= period.last]
    mnfs = [n.mnf for n in inside if n.mnf is not None]
    every = [n.mnf for n in r.nights if n.mnf is not None]
    mean = sum(mnfs) / len(mnfs) if mnfs else None
    loss = None if mean is None else max(0.0, mean - s.allowance_m3h) * 24 * len(inside)
    return LeakEpisodeOut(
        device=meter.id,
        name=meter.name,
        building=meter.location.building,
        start_night=r.start,
        opened_night=r.opened,
        opened_by=r.opened_by,
        end_night=r.end,
        cleared_night=r.cleared,
        open=r.end is None,
        nights=len(r.nights),
        nights_in_period=len(inside),
        mean_mnf_m3h=_r(mean, _M3H),
        peak_mnf_m3h=_r(max(every), _M3H) if every else None,
        allowance_m3h=s.allowance_m3h,
        loss_m3=_r(loss, _M3),
        cost=_r(None if loss is None else loss * s.price_per_m3, _MONEY),
    )


def _sum(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def water_report(rc: ReportContext, period: Period, *, building: str | None = None) -> WaterReport:
    """Use, night flow, leaks and unaccounted water of the water meters over ``period``."""
    s = rc.config.reports.water
    as_of = period.clipped(rc.clock())
    meters = rc.of_kind("water_meter", building)
    listed = {m.id for m in meters}
    # Sub-meters of a listed main count against it even if they sit in another building.
    extra = [
        c
        for m in meters
        if m.parent is None
        for c in rc.children(m.id)
        if c.kind == "water_meter" and c.id not in listed
    ]
    daily = daily_use(rc, [*meters, *extra], period.first, period.last, as_of) if meters else {}
    results = {m.id: _meter(rc, m, period, as_of, daily.get(m.id, {})) for m in meters}
    totals: dict[str, float | None] = {
        d.id: _sum([daily.get(d.id, {}).get(day) for day in period.days]) for d in [*meters, *extra]
    }
    leaks = [e for r in results.values() for e in r.leaks]

    buildings: list[WaterBuildingOut] = []
    for b in rc.config.buildings:
        mains = [m for m in meters if m.location.building == b.id and m.parent is None]
        if not mains and not any(m.location.building == b.id for m in meters):
            continue
        day_rows = [
            WaterDay(day=d, m3=_r(_sum([results[m.id].days.get(d) for m in mains]), _M3))
            for d in period.days
        ]
        total = _sum([totals[m.id] for m in mains])
        unacc = [_unaccounted(rc, m, totals) for m in mains if rc.children(m.id)]
        complete = [u for u in unacc if u.unaccounted_m3 is not None]
        u_m3 = _sum([u.unaccounted_m3 for u in complete])
        u_main = _sum([u.main_m3 for u in complete])
        b_leaks = [e for e in leaks if e.building == b.id]
        buildings.append(
            WaterBuildingOut(
                building=b.id,
                name=b.name,
                total_m3=_r(total, _M3),
                cost=_r(None if total is None else total * s.price_per_m3, _MONEY),
                days=day_rows,
                unaccounted=unacc,
                unaccounted_m3=_r(u_m3, _M3),
                unaccounted_share=(
                    round(u_m3 / u_main, _RATE) if u_m3 is not None and u_main else None
                ),
                leaks=len(b_leaks),
                leak_loss_m3=round(sum(e.loss_m3 or 0.0 for e in b_leaks), _M3),
                leak_cost=round(sum(e.cost or 0.0 for e in b_leaks), _MONEY),
            )
        )
    total = _sum([b.total_m3 for b in buildings])
    minutes = s.rolling.total_seconds() / 60
    return WaterReport(
        period=period.label,
        timezone=rc.config.site.timezone,
        start=period.start.astimezone(rc.tz),
        end=as_of.astimezone(rc.tz),
        complete=as_of >= period.end,
        building=building,
        currency=rc.config.site.currency,
        price_per_m3=s.price_per_m3,
        night_window=span_text(s.night),
        rolling_min=minutes,
        no_zero_window=span_text(s.no_zero_window),
        threshold_m3h=s.threshold_m3h,
        ratio=s.ratio,
        allowance_m3h=s.allowance_m3h,
        leak_nights=s.leak_nights,
        no_zero_nights=s.no_zero_nights,
        clear_nights=s.clear_nights,
        rules=[
            f"MNF: lowest {minutes:g}-min average flow in {span_text(s.night)}, time-weighted "
            "from flow samples, or from volume steps when flow covers less than 90% of it",
            f"high night: MNF > max({s.threshold_m3h:g} m3/h, {s.ratio:g} x the day's mean "
            f"flow); clean: not high and flow reached zero in {span_text(s.no_zero_window)}",
            f"a leak opens after {s.leak_nights} high nights in a row or {s.no_zero_nights} "
            f"nights without zero flow, and clears after {s.clear_nights} clean nights; a night "
            "without data breaks every run and keeps a leak open",
            "loss = (mean MNF of the episode's nights in the period - allowance) x 24 h x those "
            "nights; cost = loss x water price",
            "unaccounted = main meter - sum of its sub-meters over the period",
        ],
        total_m3=_r(total, _M3),
        cost=_r(None if total is None else total * s.price_per_m3, _MONEY),
        leak_loss_m3=round(sum(e.loss_m3 or 0.0 for e in leaks), _M3),
        leak_cost=round(sum(e.cost or 0.0 for e in leaks), _MONEY),
        meters=[r.out for r in results.values()],
        buildings=buildings,
        leaks=leaks,
    )


def _unaccounted(
    rc: ReportContext, main: Device, totals: dict[str, float | None]
) -> UnaccountedOut:
    subs = [c.id for c in rc.children(main.id) if c.kind == "water_meter"]
    main_m3 = totals.get(main.id)
    parts = [totals.get(c) for c in subs]
    sub_m3 = None if any(p is None for p in parts) else sum(p or 0.0 for p in parts)
    un = None if main_m3 is None or sub_m3 is None else main_m3 - sub_m3
    return UnaccountedOut(
        main=main.id,
        sub_meters=subs,
        main_m3=_r(main_m3, _M3),
        sub_m3=_r(sub_m3, _M3),
        unaccounted_m3=_r(un, _M3),
        unaccounted_share=round(un / main_m3, _RATE) if un is not None and main_m3 else None,
    )
