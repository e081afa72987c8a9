"""Repair KPIs from the ticket database: volume, timeliness, response, repair time, backlog
and repeat repairs (../shared/alerting-semantics.md T1-T7, D4).

A ticket's history is replayed from its events, so a past month is reported as it stood at
the end of that month, not as the tickets stand today. The unit counted for timeliness and
repair time is a *repair*: from the ticket's creation, or from a reopening (a repeat repair is
a new job with its own deadline, D4), to the next "resolved" event.

Definitions:

* opened: tickets created in the period, by fault class and (current) priority;
* on time (T6): a repair resolved in the period with ``resolved <= due``; rate = on time /
  resolved, per fault class and overall, against ``MaintenanceSettings.on_time_target``.
  The net figure subtracts the repair's ON_HOLD time first (T3);
* MTTA: tickets created in the period, from creation to the first acknowledgement by a person:
  an ``alert_acknowledged`` or ``accepted`` event, or any later step (arrived, started, on
  hold, resolved, cancelled), which shows the ticket was seen ("assigned" is a dispatcher's
  step, not the responder's). Tickets nobody acknowledged before the period end are counted
  as unacknowledged, not averaged;
* MTTR (T7): repairs resolved in the period, mean of ``resolved - start`` (gross) and of that
  minus the repair's ON_HOLD time (net, T3);
* backlog: tickets open at the period end, by age of the current repair and by priority;
  overdue = the end is past the repair's due time;
* repeat repairs (D4): "reopened" events in the period; rate = those / repairs resolved.

A period that is still running ends at ``rc.clock()``; events from then on are ignored.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from alerts.preventive import is_preventive
from alerts.tickets import (
    OPEN_STATUSES,
    SLA_BY_PRIORITY,
    SYSTEM_ACTOR,
    TICKET_MOVES,
    Priority,
    TicketDetail,
    TicketRecord,
    TicketStatus,
)
from reports.context import ReportContext
from reports.period import Period

PRIORITIES: tuple[str, ...] = tuple(SLA_BY_PRIORITY)
_H = 3  # digits of hours: a second is 0.0003 h
_RATE = 4  # digits of a rate: 0.01 %
MAX_LISTED = 20  # overdue tickets listed by name in the backlog; the count covers all

# Event kind -> the status the ticket is in afterwards: the moves people make (TICKET_MOVES;
# "arrived" changes no status), status changes facmon writes as the status in lower case (an
# auto-resolve writes "resolved"), and creation and reopening.
STATUS_OF_EVENT: dict[str, TicketStatus] = {
    **{s.value.lower(): s for s in TicketStatus},
    **{kind: to for kind, (to, _) in TICKET_MOVES.items() if to is not None},
    "created": TicketStatus.NEW,
    "reopened": TicketStatus.REOPENED,
}
# Events by a person that show the ticket was seen (MTTA). Later work steps count too: a
# technician who starts or finishes a job without pressing "accept" has still responded.
ACK_KINDS: frozenset[str] = frozenset(
    {
        "alert_acknowledged",
        "acknowledged",
        "accepted",
        "arrived",
        "started",
        "on_hold",
        "resumed",
        "resolved",
        "cancelled",
    }
)

# (label, lower bound, upper bound or None) of the backlog's age buckets, [lower, upper).
AGE_BUCKETS: tuple[tuple[str, timedelta, timedelta | None], ...] = (
    ("<1 d", timedelta(0), timedelta(days=1)),
    ("1-3 d", timedelta(days=1), timedelta(days=3)),
    ("3-7 d", timedelta(days=3), timedelta(days=7)),
    ("7-30 d", timedelta(days=7), timedelta(days=30)),
    (">30 d", timedelta(days=30), None),
)


# -- output -----------------------------------------------------------------------------------
class OpenedOut(BaseModel):
    total: int = Field(description="Tickets created in the period")
    by_priority: dict[str, int] = Field(description="Of those, per priority (P1..P3)")


class TimelinessOut(BaseModel):
    resolved: int = Field(description="Repairs resolved in the period")
    on_time: int = Field(description="Of those, resolved no later than due (T6)")
    on_time_rate: float | None = Field(description="on_time / resolved; null when none resolved")
    on_time_net: int = Field(
        description="Resolved no later than due once ON_HOLD time is taken off"
    )
    on_time_net_rate: float | None = Field(description="on_time_net / resolved (T3)")
    target: float = Field(description="Target on-time rate (零修/急修 及时率)")
    meets_target: bool | None = Field(description="on_time_rate >= target; null when none resolved")


class CategoryOut(TimelinessOut):
    fault_class: str
    opened: int = Field(description="Tickets of this class created in the period")
    opened_by_priority: dict[str, int]
    open_at_end: int = Field(description="Tickets of this class open at the period end")
    mttr_gross_h: float | None = Field(description="Mean resolved - start of the resolved repairs")
    mttr_net_h: float | None = Field(description="The same net of ON_HOLD time")


class ResponseOut(BaseModel):
    acknowledged: int = Field(description="Tickets created in the period and acknowledged")
    unacknowledged: int = Field(description="Tickets created in the period nobody acknowledged yet")
    mtta_h: float | None = Field(description="Mean hours from creation to first acknowledgement")


class RepairTimeOut(BaseModel):
    repairs: int = Field(description="Repairs resolved in the period")
    mttr_gross_h: float | None = Field(description="Mean hours from start to resolved (T7)")
    mttr_net_h: float | None = Field(description="Mean hours net of ON_HOLD time (T3)")
    on_hold_h: float = Field(description="ON_HOLD hours of those repairs, in total")
    auto_resolved: int = Field(description="Of those, resolved by facmon itself (T4)")


class AgeBucketOut(BaseModel):
    label: str = Field(description="<1 d, 1-3 d, 3-7 d, 7-30 d, >30 d")
    min_days: float
    max_days: float | None = Field(description="Exclusive; null for the last bucket")
    count: int


class BacklogTicketOut(BaseModel):
    number: str
    title: str
    device: str
    building: str
    fault_class: str
    priority: str
    status: TicketStatus = Field(description="Status at the period end")
    created_at: datetime
    due_at: datetime = Field(description="Due time of the current repair")
    age_h: float = Field(description="Hours since the current repair started")
    overdue_h: float = Field(description="Hours past due at the period end")


class BacklogOut(BaseModel):
    as_of: datetime = Field(description="The period end (now, for a period still running)")
    open: int = Field(description="Tickets open at that moment")
    overdue: int = Field(description="Of those, past their due time")
    by_priority: dict[str, int]
    by_age: list[AgeBucketOut]
    overdue_tickets: list[BacklogTicketOut] = Field(
        description=f"The most overdue tickets, at most {MAX_LISTED}"
    )


class RepeatOut(BaseModel):
    reopen_window_h: float = Field(description="A new episode this soon after resolution reopens")
    repeat_repairs: int = Field(description="Reopenings in the period (D4)")
    tickets: list[str] = Field(description="Numbers of the reopened tickets")
    rate: float | None = Field(description="repeat_repairs / repairs resolved in the period")


class MaintenanceReport(BaseModel):
    period: str = Field(description="YYYY-MM, or first..last day")
    timezone: str
    start: datetime
    end: datetime
    as_of: datetime = Field(description="Figures as of this moment: the end, or now if earlier")
    complete: bool = Field(description="False while the period is still running")
    building: str | None = Field(description="Only this building; null for the whole site")
    opened: OpenedOut
    timeliness: TimelinessOut
    response: ResponseOut
    repair_time: RepairTimeOut
    categories: list[CategoryOut] = Field(description="Per fault class, by name")
    backlog: BacklogOut
    repeats: RepeatOut


# -- replaying a ticket -----------------------------------------------------------------------
@dataclass(slots=True)
class _Repair:
    """One job on a ticket: from creation or a reopening to the next resolution."""

    ticket: TicketRecord
    start: datetime
    due: datetime
    resolved: datetime | None = None
    resolved_by: str | None = None
    hold: timedelta = timedelta(0)


@dataclass(slots=True)
class _History:
    ticket: TicketRecord
    repairs: list[_Repair] = field(default_factory=list)
    status: TicketStatus | None = None  # at the end of the replay; None: not yet created
    acked: datetime | None = None
    reopened: list[datetime] = field(default_factory=list)


_Due = Callable[[datetime, Priority, str], datetime]


def _replay(detail: TicketDetail, until: datetime, sla_due: _Due) -> _History:
    """The ticket as it stood just before ``until``, replayed from its events."""
    t = detail.ticket
    h = _History(t)
    starts = [t.created_at] + [e.at for e in detail.events if e.kind == "reopened"]
    last_start = max(starts)
    hold_since: datetime | None = None

    def begin(at: datetime) -> None:
        # The newest repair's deadline is the stored one (priority raises included); earlier
        # repairs get the SLA of the ticket's priority from their own start.
        due = t.due_at if at == last_start else sla_due(at, t.priority, t.fault_class)
        h.repairs.append(_Repair(t, at, due))

    if t.created_at < until:
        h.status = TicketStatus.NEW
        begin(t.created_at)
    for e in detail.events:
        if e.at >= until or h.status is None:
            break
        if (
            h.acked is None
            and e.kind in ACK_KINDS
            and e.who != SYSTEM_ACTOR
            and h.repairs[0].resolved is None
        ):
            h.acked = e.at
        to = STATUS_OF_EVENT.get(e.kind)
        if to is None or e.kind == "created":
            continue
        if hold_since is not None:
            h.repairs[-1].hold += e.at - hold_since
            hold_since = None
        if to is TicketStatus.ON_HOLD:
            hold_since = e.at
        elif to is TicketStatus.RESOLVED and h.repairs[-1].resolved is None:
            h.repairs[-1].resolved = e.at
            h.repairs[-1].resolved_by = e.who
        elif to is TicketStatus.REOPENED:
            h.reopened.append(e.at)
            begin(e.at)
        h.status = to
    if hold_since is not None:
        h.repairs[-1].hold += until - hold_since
    return h


# -- figures ----------------------------------------------------------------------------------
def _hours(d: timedelta) -> float:
    return round(d.total_seconds() / 3600, _H)


def _mean_h(ds: Sequence[timedelta]) -> float | None:
    return _hours(sum(ds, timedelta(0)) / len(ds)) if ds else None


def _rate(n: int, d: int) -> float | None:
    return round(n / d, _RATE) if d else None


def _by_priority(priorities: Iterable[str]) -> dict[str, int]:
    c = Counter(priorities)
    return {p: c.get(p, 0) for p in PRIORITIES}


def _timeliness(repairs: Sequence[_Repair], target: float) -> dict[str, object]:
    on_time = sum(1 for r in repairs if r.resolved is not None and r.resolved <= r.due)
    on_time_net = sum(1 for r in repairs if r.resolved is not None and r.resolved - r.hold <= r.due)
    rate = _rate(on_time, len(repairs))
    return {
        "resolved": len(repairs),
        "on_time": on_time,
        "on_time_rate": rate,
        "on_time_net": on_time_net,
        "on_time_net_rate": _rate(on_time_net, len(repairs)),
        "target": target,
        "meets_target": None if rate is None else on_time / len(repairs) >= target,
    }


def _gross(r: _Repair) -> timedelta:
    assert r.resolved is not None
    return r.resolved - r.start


def _local(t: datetime, tz: ZoneInfo) -> datetime:
    return t.astimezone(tz)


def maintenance_report(
    rc: ReportContext, period: Period, *, building: str | None = None
) -> MaintenanceReport:
    """Repair KPIs for ``period`` (optionally one building) from the ticket database."""
    if building is not None and building not in rc.buildings:
        raise ValueError(f"unknown building {building!r}")
    target = rc.config.reports.maintenance.on_time_target
    t0 = period.start
    as_of = period.clipped(rc.clock())
    tz = rc.tz

    def inside(t: datetime | None) -> bool:
        return t is not None and t0 <= t < as_of

    histories = [
        _replay(d, as_of, rc.tickets.due)
        for d in rc.tickets.tickets_touching(t0, as_of, building=building)
    ]

    opened = [h for h in histories if inside(h.ticket.created_at)]
    resolved = [r for h in histories for r in h.repairs if inside(r.resolved)]
    # T6/T7 measure repairs: planned preventive jobs keep their own category rows only.
    corrective = [r for r in resolved if not is_preventive(r.ticket.fault_class)]
    acked = [h.acked - h.ticket.created_at for h in opened if h.acked is not None]
    backlog = [h for h in histories if h.status in OPEN_STATUSES]
    reopenings = [(h.ticket, at) for h in histories for at in h.reopened if inside(at)]

    by_class_opened: dict[str, list[_History]] = defaultdict(list)
    for h in opened:
        by_class_opened[h.ticket.fault_class].append(h)
    by_class_resolved: dict[str, list[_Repair]] = defaultdict(list)
    for r in resolved:
        by_class_resolved[r.ticket.fault_class].append(r)
    open_by_class = Counter(h.ticket.fault_class for h in backlog)

    categories: list[CategoryOut] = []
    for fc in sorted(set(by_class_opened) | set(by_class_resolved) | set(open_by_class)):
        rs = by_class_resolved.get(fc, [])
        os_ = by_class_opened.get(fc, [])
        categories.append(
            CategoryOut.model_validate(
                {
                    "fault_class": fc,
                    "opened": len(os_),
                    "opened_by_priority": _by_priority(h.ticket.priority for h in os_),
                    "open_at_end": open_by_class.get(fc, 0),
                    "mttr_gross_h": _mean_h([_gross(r) for r in rs]),
                    "mttr_net_h": _mean_h([_gross(r) - r.hold for r in rs]),
                    **_timeliness(rs, target),
                }
            )
        )

    ages: list[tuple[_History, timedelta]] = [(h, as_of - h.repairs[-1].start) for h in backlog]
    overdue = sorted(
        (h for h in backlog if as_of > h.repairs[-1].due), key=lambda h: h.repairs[-1].due
    )
    buckets = [
        AgeBucketOut(
            label=label,
            min_days=lo / timedelta(days=1),
            max_days=None if hi is None else hi / timedelta(days=1),
            count=sum(1 for _, age in ages if lo <= age and (hi is None or age < hi)),
        )
        for label, lo, hi in AGE_BUCKETS
    ]
    overdue_out = [
        BacklogTicketOut(
            number=h.ticket.number,
            title=h.ticket.title,
            device=h.ticket.device,
            building=h.ticket.building,
            fault_class=h.ticket.fault_class,
            priority=h.ticket.priority,
            status=h.status or TicketStatus.NEW,
            created_at=_local(h.ticket.created_at, tz),
            due_at=_local(h.repairs[-1].due, tz),
            age_h=_hours(as_of - h.repairs[-1].start),
            overdue_h=_hours(as_of - h.repairs[-1].due),
        )
        for h in overdue[:MAX_LISTED]
    ]

    return MaintenanceReport(
        period=period.label,
        timezone=rc.config.site.timezone,
        start=_local(t0, tz),
        end=_local(period.end, tz),
        as_of=_local(as_of, tz),
        complete=as_of >= period.end,
        building=building,
        opened=OpenedOut(
            total=len(opened), by_priority=_by_priority(h.ticket.priority for h in opened)
        ),
        timeliness=TimelinessOut.model_validate(_timeliness(corrective, target)),
        response=ResponseOut(
            acknowledged=len(acked),
            unacknowledged=len(opened) - len(acked),
            mtta_h=_mean_h(acked),
        ),
        repair_time=RepairTimeOut(
            repairs=len(corrective),
            mttr_gross_h=_mean_h([_gross(r) for r in corrective]),
            mttr_net_h=_mean_h([_gross(r) - r.hold for r in corrective]),
            on_hold_h=_hours(sum((r.hold for r in corrective), timedelta(0))),
            auto_resolved=sum(1 for r in corrective if r.resolved_by == SYSTEM_ACTOR),
        ),
        categories=categories,
        backlog=BacklogOut(
            as_of=_local(as_of, tz),
            open=len(backlog),
            overdue=len(overdue),
            by_priority=_by_priority(h.ticket.priority for h in backlog),
            by_age=buckets,
            overdue_tickets=overdue_out,
        ),
        repeats=RepeatOut(
            reopen_window_h=_hours(rc.tickets.reopen_window),
            repeat_repairs=len(reopenings),
            tickets=sorted({t.number for t, _ in reopenings}),
            rate=_rate(len(reopenings), len(resolved)),
        ),
    )
