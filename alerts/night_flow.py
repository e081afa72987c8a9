"""Water leaks by minimum night flow, decided on the live stream once a night.

The rules are those of ../shared/domain.md, "Water leaks (minimum night flow)":

* For each meter and night: MNF = lowest rolling 60-min average flow in 02:00-04:00
  (configurable).
* Flag a leak when MNF exceeds max(absolute threshold, ratio x average daily flow) for 3
  consecutive nights, or when flow never reaches zero between 00:00 and 06:00 on 2 nights.
* Clear after 2 clean nights.

The arithmetic is the water report's (reports.water, whose functions this module calls, so the
alert and the report cannot disagree about a night): each flow sample holds until the next
for at most ``gap_polls`` x the poll interval; a night has an MNF only when its window is at
least 90 % covered, and a rolling window counts when it is at least 90 % covered; flow reaches
zero when a sample is 0. A night is high (MNF above the limit), no-zero (not high, but the
flow never reached zero), clean, or without data; runs are counted as ``track_leaks`` counts
them: a high night without zero counts for both runs, a night without data breaks every run
and keeps an open leak open (missing data never clears, A8).

Where a live rule must differ from a report that looks back:

* the ratio level uses the mean flow of the previous local day (the report uses the night's
  own day, which ends 20 hours after the decision); without 90 % of that day covered the
  absolute threshold alone applies;
* only the flow metric is read (the report falls back to the volume counter);
* a night is decided at the end of the later of its two windows (06:00 by default): by the
  first sample at or after that time, or by :meth:`NightFlowCondition.due` (the engine's
  tick) once a sample's hold has passed in silence;
* runs live in memory: after a restart they count again from zero (an open leak alert stays
  open and needs ``clear_nights`` clean nights from then on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import numpy as np

from alerts.verdict import Judgement, Verdict
from config.models import NightFlowRule
from config.reporting import WaterSettings, span_text

_T = TypeVar("_T")

# Local days whose flow integrals are kept for the ratio level (the previous day's is used).
_KEEP_DAYS = 3


@dataclass(frozen=True, slots=True)
class NightSettings:
    """A night_flow rule with the site's ``reports.water`` filled in for what it leaves out."""

    night: tuple[int, int]  # local minutes since midnight, [start, end)
    rolling: timedelta
    above: float
    ratio: float
    leak_nights: int
    no_zero_window: tuple[int, int]
    no_zero_nights: int
    clear_nights: int
    tolerance: timedelta  # how long one sample holds

    @classmethod
    def of(cls, rule: NightFlowRule, water: WaterSettings, poll: timedelta) -> NightSettings:
        return cls(
            night=pick(rule.night, water.night),
            rolling=pick(rule.rolling, water.rolling),
            above=pick(rule.above, water.threshold_m3h),
            ratio=pick(rule.ratio, water.ratio),
            leak_nights=pick(rule.leak_nights, water.leak_nights),
            no_zero_window=pick(rule.no_zero_window, water.no_zero_window),
            no_zero_nights=pick(rule.no_zero_nights, water.no_zero_nights),
            clear_nights=pick(rule.clear_nights, water.clear_nights),
            tolerance=poll * pick(rule.gap_polls, water.gap_polls),
        )


def pick(mine: _T | None, site: _T) -> _T:
    """The rule's own setting, else the site's."""
    return site if mine is None else mine


@dataclass(frozen=True, slots=True)
class NightResult:
    """One decided night, as the report would show it."""

    night: date
    mnf: float | None  # m3/h
    limit: float  # m3/h
    reached_zero: bool | None
    status: str  # high | no_zero | clean | no_data


@dataclass(slots=True)
class _Day:
    integral: float = 0.0  # m3/h x s
    covered: float = 0.0  # s


@dataclass(slots=True)
class NightFlowCondition:
    """The night_flow condition of one meter (see the module docstring)."""

    metric: str
    s: NightSettings
    tz: ZoneInfo
    nights: list[NightResult] = field(default_factory=list)  # decided, newest last (a week)
    _night: date | None = None  # the next night to decide
    _t: list[float] = field(default_factory=list)  # the samples that night needs, epoch s
    _v: list[float] = field(default_factory=list)
    _prev: tuple[float, float] | None = None  # the newest sample, for the day integrals
    _days: dict[date, _Day] = field(default_factory=dict)
    _high: int = 0
    _no_zero: int = 0
    _clean: int = 0

    @classmethod
    def of(
        cls, rule: NightFlowRule, water: WaterSettings, tz: ZoneInfo, poll: timedelta
    ) -> NightFlowCondition:
        return cls(rule.metric, NightSettings.of(rule, water, poll), tz)

    # -- the Condition protocol ---------------------------------------------------------------
    def judge(self, value: float, t: datetime) -> Judgement | None:
        ts = t.timestamp()
        if self._night is None:
            d = t.astimezone(self.tz).date()
            self._night = d if ts < self._decided_at(d) else d + timedelta(days=1)
        out = self._decide(ts)
        self._add(ts, value)
        return out

    def due(self, now: datetime) -> Judgement | None:
        # Samples reach the engine a little after their time: wait one sample's hold before a
        # night is decided without the sample that would have decided it.
        return self._decide(now.timestamp() - self.s.tolerance.total_seconds())

    def text(self, value: float) -> str:
        last = self.nights[-1] if self.nights else None
        limit = f"limit {last.limit:g} m3/h" if last is not None else "no night decided yet"
        runs = (
            f"{self.s.leak_nights} high nights or {self.s.no_zero_nights} without zero flow "
            f"({span_text(self.s.no_zero_window)}) trip, {self.s.clear_nights} clean clear"
        )
        return (
            f"{self.metric} minimum night flow = {value:g} m3/h "
            f"({span_text(self.s.night)}, {limit}; {runs})"
        )

    # -- internals ----------------------------------------------------------------------------
    def _at(self, d: date, minutes: int) -> float:
        # Wall-clock arithmetic in the site zone, as the report does (daylight saving).
        return (
            datetime.combine(d, time(0), tzinfo=self.tz) + timedelta(minutes=minutes)
        ).timestamp()

    def _bounds(self, d: date) -> tuple[float, float, float, float]:
        (n0, n1), (z0, z1) = self.s.night, self.s.no_zero_window
        return self._at(d, n0), self._at(d, n1), self._at(d, z0), self._at(d, z1)

    def _decided_at(self, d: date) -> float:
        _, n1, _, z1 = self._bounds(d)
        return max(n1, z1)

    def _needed_from(self, d: date) -> float:
        n0, _, z0, _ = self._bounds(d)
        return min(n0, z0) - self.s.tolerance.total_seconds()

    def _decide(self, ts: float) -> Judgement | None:
        """Decide every night whose windows ended by ``ts``. After a long silence several
        nights end at once: each updates the runs, the last with data gives the verdict."""
        out: Judgement | None = None
        while self._night is not None and ts >= self._decided_at(self._night):
            j = self._finish(self._night)
            out = j if j is not None else out
            self._night += timedelta(days=1)
            keep = self._needed_from(self._night)
            i = next((k for k, x in enumerate(self._t) if x >= keep), len(self._t))
            del self._t[:i], self._v[:i]
        return out

    def _add(self, ts: float, v: float) -> None:
        v = max(v, 0.0)  # as the report: a negative flow reading is no flow
        prev = self._prev
        if prev is not None and ts > prev[0]:
            dt = min(ts - prev[0], self.s.tolerance.total_seconds())
            day = self._days.setdefault(datetime.fromtimestamp(prev[0], self.tz).date(), _Day())
            day.integral += prev[1] * dt
            day.covered += dt
        self._prev = (ts, v)
        assert self._night is not None
        if ts >= self._needed_from(self._night):
            self._t.append(ts)
            self._v.append(v)
        oldest = self._night - timedelta(days=_KEEP_DAYS)
        for d in [d for d in self._days if d < oldest]:
            del self._days[d]

    def _limit(self, d: date) -> float:
        day = self._days.get(d - timedelta(days=1))
        length = self._at(d, 0) - self._at(d - timedelta(days=1), 0)
        if day is None or day.covered < 0.9 * length or day.covered <= 0:
            return self.s.above
        return max(self.s.above, self.s.ratio * day.integral / day.covered)

    def _finish(self, d: date) -> Judgement | None:
        # reports.water depends on alerts.tickets (its context holds the ticket store), so it
        # is imported when first needed rather than when alerts is.
        from reports.water import (
            MIN_COVERAGE,
            flow_segments,
            night_status,
            reached_zero,
            rolling_minimum,
        )

        n0, n1, z0, z1 = self._bounds(d)
        t_us = (np.asarray(self._t, dtype=np.float64) * 1e6).round().astype(np.int64)
        segs = flow_segments((t_us, np.asarray(self._v, dtype=np.float64)), self.s.tolerance)
        mnf = None
        if segs.coverage(n0, n1) >= MIN_COVERAGE:
            mnf = rolling_minimum(segs, n0, n1, self.s.rolling.total_seconds())
        zero = reached_zero(segs, z0, z1, timedelta(0))
        limit = self._limit(d)
        status = night_status(mnf, limit, zero)
        self.nights = [*self.nights[-6:], NightResult(d, mnf, limit, zero, status)]
        # Runs as reports.water.track_leaks counts them.
        if status == "no_data":
            self._high = self._no_zero = self._clean = 0
            return None
        if status == "high":
            self._high += 1
            self._no_zero = self._no_zero + 1 if zero is False else 0
            self._clean = 0
        elif status == "no_zero":
            self._no_zero += 1
            self._high = self._clean = 0
        else:
            self._high = self._no_zero = 0
            self._clean += 1
        assert mnf is not None
        if self._high >= self.s.leak_nights or self._no_zero >= self.s.no_zero_nights:
            return Judgement(Verdict.TRIP, mnf)
        if self._clean >= self.s.clear_nights:
            return Judgement(Verdict.CLEAR, mnf)
        return Judgement(Verdict.HOLD, mnf)
