"""Who is on call, resolved when a page is sent (E6 of ../shared/alerting-semantics.md).

Overrides beat rotations; when neither covers a moment the site's fallback is paged, and when
there is no fallback nobody is. Pure functions of the config and the time passed in.

Rotations hand off at local wall-clock times: 09:00 stays 09:00 across a DST change, so the
shift that spans the change is an hour shorter or longer. Everything is computed on UTC
instants (Python compares and subtracts datetimes of one zone by wall clock, which is wrong
across a change) and converted to the site's zone only in the results. A handoff at a local
time the clock skips happens as zoneinfo reads it (fold=0): 02:30 on the spring-forward night
is 03:30 summer time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from config.models import OnCall, Person
from config.oncall import WEEKDAYS, Override, Rotation

__all__ = [
    "HORIZON",
    "Gap",
    "OnCallAnswer",
    "Shift",
    "Source",
    "coverage_gaps",
    "person",
    "shifts",
    "who_is_on_call",
]

Source = Literal["override", "rotation", "fallback", "nobody"]
# How far around the asked time who_is_on_call looks for where the answer starts and ends.
HORIZON = timedelta(days=35)


@dataclass(frozen=True)
class Shift:
    """One stretch of the schedule with one answer; ``start``/``end`` in the site's zone."""

    start: datetime
    end: datetime
    person: Person | None
    source: Source
    rotation: str | None
    reason: str | None = None

    @property
    def duration(self) -> timedelta:
        """Elapsed time (a 09:00-09:00 shift over a DST change is 23 or 25 hours)."""
        return self.end.astimezone(UTC) - self.start.astimezone(UTC)

    @property
    def covered(self) -> bool:
        """An override or a rotation has someone on call (not the fallback, not nobody)."""
        return self.source in ("override", "rotation")


@dataclass(frozen=True)
class OnCallAnswer:
    """Who is on call at one moment, from which source, and since/until when.

    ``start``/``end`` are None when the answer holds beyond ``HORIZON`` from the asked time.
    """

    person: Person | None
    source: Source
    rotation: str | None
    start: datetime | None
    end: datetime | None
    reason: str | None = None


@dataclass(frozen=True)
class Gap:
    """A stretch no override or rotation covers; the fallback (if any) is paged then."""

    start: datetime
    end: datetime
    rotation: str | None
    fallback: Person | None

    @property
    def duration(self) -> timedelta:
        """Elapsed time, whatever the clock changes in between."""
        return self.end.astimezone(UTC) - self.start.astimezone(UTC)

    @property
    def covered_by_fallback(self) -> bool:
        return self.fallback is not None


def person(oncall: OnCall, person_id: str | None) -> Person | None:
    """The declared person with this id (the loader reports ids nobody declared)."""
    return next((p for p in oncall.people if p.id == person_id), None)


def who_is_on_call(
    oncall: OnCall, tz: ZoneInfo, at: datetime, rotation: str | None = None
) -> OnCallAnswer:
    """Who is paged at ``at`` (aware): for ``rotation``, or for the site when None (an
    override of any rotation first, then the rotations in config order)."""
    _aware(at)
    span = shifts(oncall, tz, at - HORIZON, at + HORIZON, rotation)
    instant = at.astimezone(UTC)
    found = next(s for s in span if s.start <= instant < s.end)
    return OnCallAnswer(
        person=found.person,
        source=found.source,
        rotation=found.rotation,
        start=None if found is span[0] else found.start,
        end=None if found is span[-1] else found.end,
        reason=found.reason,
    )


def shifts(
    oncall: OnCall,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    rotation: str | None = None,
) -> list[Shift]:
    """The schedule of [start, end): consecutive shifts that together cover every instant,
    including the stretches of the fallback and of nobody. Shifts are cut at ``start`` and
    ``end``; a person's back-to-back shifts from one source are joined."""
    _aware(start)
    _aware(end)
    lo, hi = start.astimezone(UTC), end.astimezone(UTC)
    if hi <= lo:
        return []
    covers = list(_covers(oncall, tz, lo, hi, rotation))
    points = sorted({lo, hi, *(c.start for c in covers), *(c.end for c in covers)})
    points = [p for p in points if lo <= p <= hi]
    fallback = person(oncall, oncall.fallback)
    out: list[Shift] = []
    for a, b in pairwise(points):
        here = [c for c in covers if c.start <= a < c.end]
        best = min(here, key=lambda c: c.rank) if here else None
        if best is not None:
            who = person(oncall, best.person)
            shift = Shift(a, b, who, best.source, best.rotation, best.reason)
        else:
            source: Source = "fallback" if fallback is not None else "nobody"
            shift = Shift(a, b, fallback, source, rotation)
        prev = out[-1] if out else None
        if prev is not None and _same(prev, shift):
            out[-1] = replace(prev, end=b.astimezone(tz))
        else:
            out.append(replace(shift, start=a.astimezone(tz), end=b.astimezone(tz)))
    return out


def coverage_gaps(
    oncall: OnCall,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    rotation: str | None = None,
) -> list[Gap]:
    """Stretches of [start, end) that no override or rotation covers, for warning in advance;
    each says whether the fallback takes it."""
    return [
        Gap(s.start, s.end, rotation, s.person)
        for s in shifts(oncall, tz, start, end, rotation)
        if not s.covered
    ]


# -- internals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cover:
    """Someone on call over [start, end) (UTC); the lowest rank wins where covers overlap."""

    start: datetime
    end: datetime
    person: str
    source: Literal["override", "rotation"]
    rotation: str | None
    reason: str | None
    rank: int


def _same(a: Shift, b: Shift) -> bool:
    return (a.person, a.source, a.rotation, a.reason) == (b.person, b.source, b.rotation, b.reason)


def _aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t!r} has no time zone; pass an aware datetime")


def _covers(
    oncall: OnCall, tz: ZoneInfo, lo: datetime, hi: datetime, rotation: str | None
) -> Iterator[_Cover]:
    scope = [r for r in oncall.rotations if rotation is None or r.id == rotation]
    ids = {r.id for r in scope}
    for i, ov in enumerate(oncall.overrides):
        if ov.rotation is not None and ov.rotation not in ids:
            continue
        yield from _clip(_override_cover(ov, tz, i, rotation), lo, hi)
    # Rotations rank after every override: overrides beat rotations (E6).
    rank = len(oncall.overrides)
    for r in scope:
        for c in _rotation_covers(r, tz, lo, hi, rank):
            yield from _clip(c, lo, hi)
        rank += 1


def _override_cover(ov: Override, tz: ZoneInfo, rank: int, asked: str | None) -> _Cover:
    start, end = ov.interval(tz)
    return _Cover(start, end, ov.person, "override", ov.rotation or asked, ov.reason, rank)


def _clip(c: _Cover, lo: datetime, hi: datetime) -> Iterator[_Cover]:
    start, end = max(c.start, lo), min(c.end, hi)
    if start < end:
        yield _Cover(start, end, c.person, c.source, c.rotation, c.reason, c.rank)


def _at(d: date, t: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, t, tzinfo=tz).astimezone(UTC)


def _handoffs(rot: Rotation, first: date, last: date) -> list[tuple[date, int]]:
    """Handoff dates in [first, last] with the index of the shift each begins (0 = the
    rotation's start)."""
    out: list[tuple[date, int]] = []
    if rot.handoff == "daily":
        d = max(first, rot.start)
        while d <= last:
            out.append((d, (d - rot.start).days))
            d += timedelta(days=1)
        return out
    if first <= rot.start <= last:
        out.append((rot.start, 0))
    wd = WEEKDAYS.index(rot.handoff_weekday)
    # The first weekly handoff after the start; a start on the handoff day runs a full week.
    weekly = rot.start + timedelta(days=(wd - rot.start.weekday()) % 7 or 7)
    skip = max(0, -(-(first - weekly).days // 7))
    d = weekly + timedelta(weeks=skip)
    n = skip + 1
    while d <= last:
        out.append((d, n))
        d += timedelta(weeks=1)
        n += 1
    return out


def _rotation_covers(
    rot: Rotation, tz: ZoneInfo, lo: datetime, hi: datetime, rank: int
) -> Iterator[_Cover]:
    # Eight days either side catch the weekly shift under way at `lo` and the handoff after `hi`.
    first = lo.astimezone(tz).date() - timedelta(days=8)
    last = hi.astimezone(tz).date() + timedelta(days=8)
    marks = _handoffs(rot, first, last)
    n = len(rot.members)
    for (d0, k), (d1, _) in pairwise(marks):
        start, end = _at(d0, rot.handoff_time, tz), _at(d1, rot.handoff_time, tz)
        if end <= lo or start >= hi:
            continue
        member = rot.members[k % n]
        for a, b in _active(rot, tz, start, end):
            yield _Cover(a, b, member, "rotation", rot.id, None, rank)


def _active(
    rot: Rotation, tz: ZoneInfo, start: datetime, end: datetime
) -> Iterable[tuple[datetime, datetime]]:
    """The parts of [start, end) inside the rotation's active window."""
    if rot.active is None:
        return [(start, end)]
    s_min, e_min = rot.active.spans()
    out: list[tuple[datetime, datetime]] = []
    d = start.astimezone(tz).date() - timedelta(days=1)  # an overnight window of the day before
    last = end.astimezone(tz).date()
    while d <= last:
        if WEEKDAYS[d.weekday()] in rot.active.days:
            a = _at(d + timedelta(days=s_min // 1440), _minutes(s_min % 1440), tz)
            b = _at(d + timedelta(days=e_min // 1440), _minutes(e_min % 1440), tz)
            a, b = max(a, start), min(b, end)
            if a < b:
                out.append((a, b))
        d += timedelta(days=1)
    return out


def _minutes(m: int) -> time:
    return time(m // 60, m % 60)
