"""Preventive maintenance tickets from the site's schedules (T8 of
../shared/alerting-semantics.md; the schedules are ``config.maintenance``).

Every (schedule, device) pair the schedule selects is one recurring job. Its tickets have the
fault class ``preventive:<schedule id>``, so reports and paging can tell planned work from
repairs (:func:`is_preventive`), and the D4 index of the ticket database already keeps one
open ticket per pair. A job's ticket opens ``lead`` days before its due day and is due at the
end of that day (site-local); it never reopens a finished one (each job is new work).

When the next job is due depends on the schedule's anchor:

* ``schedule``: jobs are due on ``first_due`` and every period after it. The job whose
  opening time passed most recently gets a ticket unless a ticket was created since that
  opening; jobs missed meanwhile (facmon stopped, the previous ticket still open) are not
  caught up one by one: the newest one stands for them;
* ``completion``: the next job is due one period after the day the previous ticket was
  resolved (a cancelled one counts from its cancellation); the first on ``first_due``.

No new ticket while the previous one is open. Everything is derived from the ticket database
at the time passed in (``now=``), never from memory, so a restart neither repeats nor skips a
job. :func:`plan` decides, :func:`open_due` acts on it, :func:`run_preventive` does so
periodically in the running process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import select

from alerts.tickets import (
    OPEN_STATUSES,
    Priority,
    TicketRecord,
    TicketRequest,
    TicketStore,
    _ticket,
    _TicketRow,
)
from config.maintenance import FAULT_CLASS_PREFIX, MONTHS, MaintenanceSchedule
from config.models import Device, SiteConfig

log = logging.getLogger(__name__)

# The severity whose priority (alerts.tickets.priority_for) is the schedule's priority.
_SEVERITY_OF: Mapping[Priority, str] = {"P1": "critical", "P2": "major", "P3": "minor"}


def is_preventive(fault_class: str) -> bool:
    """Whether tickets of ``fault_class`` are planned preventive work rather than repairs."""
    return fault_class.startswith(FAULT_CLASS_PREFIX)


class JobState(StrEnum):
    UPCOMING = "upcoming"  # its ticket opens later
    DUE_NOW = "due_now"  # its ticket should be open and is not: open_due opens it
    OPEN = "open"  # the ticket is open and not yet late
    OVERDUE = "overdue"  # the ticket is open past the end of the due day


@dataclass(frozen=True, slots=True)
class PastJobs:
    """What the ticket database knows of one (device, schedule) pair."""

    latest: TicketRecord | None = None  # the newest ticket, in any status
    open: TicketRecord | None = None  # the open one, if any (D4: at most one)


@dataclass(frozen=True, slots=True)
class Job:
    """The current or next job of one schedule on one device."""

    schedule: MaintenanceSchedule
    device: Device
    due: date  # site-local due day
    deadline: datetime  # UTC: the end of the due day; the ticket's due time
    opens_at: datetime  # UTC: when its ticket opens (the start of the day ``lead`` before)
    state: JobState
    ticket: TicketRecord | None = None  # the open ticket of OPEN and OVERDUE jobs


def deadline_of(due: date, tz: ZoneInfo) -> datetime:
    """The end of the local day ``due``, in UTC."""
    return datetime.combine(due + timedelta(days=1), time(0), tz).astimezone(UTC)


def opening_of(schedule: MaintenanceSchedule, due: date, tz: ZoneInfo) -> datetime:
    """When the ticket of a job due on ``due`` opens: the start of the day ``lead`` before."""
    return datetime.combine(due - schedule.lead, time(0), tz).astimezone(UTC)


def _latest_started(schedule: MaintenanceSchedule, now: datetime, tz: ZoneInfo) -> int | None:
    """Index of the newest job of the fixed series whose ticket opening time has come."""
    # opening <= now  <=>  due - lead <= today (local): the opening is a local midnight.
    limit = now.astimezone(tz).date() + schedule.lead
    first = schedule.first_due
    if limit < first:
        return None
    if isinstance(schedule.every, timedelta):
        return (limit - first).days // schedule.every.days
    months = (limit.year - first.year) * 12 + limit.month - first.month
    k = max(0, months // MONTHS[schedule.every])  # at most one off: month ends are clamped
    while schedule.nth_due(k + 1) <= limit:
        k += 1
    while k > 0 and schedule.nth_due(k) > limit:
        k -= 1
    return k


def next_job(
    schedule: MaintenanceSchedule, device: Device, past: PastJobs, now: datetime, tz: ZoneInfo
) -> Job:
    """The job of ``schedule`` on ``device`` that matters at ``now``: the open one, else the
    one whose ticket should open now, else the next one."""
    if past.open is not None:
        t = past.open
        state = JobState.OVERDUE if now > t.due_at else JobState.OPEN
        due = (t.due_at - timedelta(microseconds=1)).astimezone(tz).date()
        return Job(schedule, device, due, t.due_at, t.created_at, state, t)
    latest = past.latest
    if schedule.anchor == "completion":
        if latest is None:
            due = schedule.first_due
        else:
            done = latest.resolved_at or latest.closed_at or latest.updated_at
            due = schedule.after(done.astimezone(tz).date())
    else:
        k = _latest_started(schedule, now, tz)
        if k is None:
            due = schedule.first_due
        else:
            due = schedule.nth_due(k)
            if latest is not None and latest.created_at >= opening_of(schedule, due, tz):
                due = schedule.nth_due(k + 1)  # this one has its ticket already
    opens = opening_of(schedule, due, tz)
    state = JobState.DUE_NOW if opens <= now else JobState.UPCOMING
    return Job(schedule, device, due, deadline_of(due, tz), opens, state)


def plan(
    config: SiteConfig, history: Mapping[tuple[str, str], PastJobs], now: datetime
) -> list[Job]:
    """Every (schedule, device) job at ``now``, in schedule then device order. ``history``:
    :func:`load_history`, by (device, fault class)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = ZoneInfo(config.site.timezone)
    jobs = []
    for schedule in config.maintenance.schedules:
        for device in config.devices:
            if schedule.select.matches(device):
                past = history.get((device.id, schedule.fault_class), PastJobs())
                jobs.append(next_job(schedule, device, past, now, tz))
    return jobs


def load_history(tickets: TicketStore) -> dict[tuple[str, str], PastJobs]:
    """The newest and the open preventive ticket of every (device, fault class)."""
    latest: dict[tuple[str, str], TicketRecord] = {}
    open_: dict[tuple[str, str], TicketRecord] = {}
    with tickets.sessions() as s:
        rows = s.scalars(
            select(_TicketRow)
            .where(_TicketRow.fault_class.startswith(FAULT_CLASS_PREFIX, autoescape=True))
            .order_by(_TicketRow.created_at, _TicketRow.id)
        )
        for row in rows:
            t = _ticket(row)
            key = (t.device, t.fault_class)
            latest[key] = t
            if t.status in OPEN_STATUSES:
                open_[key] = t
    return {k: PastJobs(latest=v, open=open_.get(k)) for k, v in latest.items()}


def ticket_request(job: Job, language: str) -> TicketRequest:
    """The ticket of ``job``: its deadline is the end of the due day, and it never reopens a
    finished job's ticket."""
    s, d = job.schedule, job.device
    anchor = "scheduled dates" if s.anchor == "schedule" else "the last completion"
    note = (
        f"preventive maintenance {s.id}, due {job.due.isoformat()} (every {s.every_text}, "
        f"counted from {anchor})"
    )
    if s.note:
        note += f": {s.note}"
    return TicketRequest(
        title=f"{d.name}: {s.title(language)}",
        device=d.id,
        building=d.location.building,
        fault_class=s.fault_class,
        severity=_SEVERITY_OF[s.priority],
        note=note,
        due_at=job.deadline,
        reopens=False,
        source="preventive",
    )


def open_due(config: SiteConfig, tickets: TicketStore, now: datetime) -> list[TicketRecord]:
    """Open the ticket of every job due at ``now`` that has none; returns them. Running it
    again (or after a restart) opens nothing new until the next job comes due."""
    opened = []
    for job in plan(config, load_history(tickets), now):
        if job.state is not JobState.DUE_NOW:
            continue
        ticket = tickets.open_or_add_occurrence(ticket_request(job, config.site.language), now)
        log.info(
            "preventive ticket %s opened: %s on %s, due %s",
            ticket.number,
            job.schedule.id,
            job.device.id,
            job.due.isoformat(),
        )
        opened.append(ticket)
    return opened


async def run_preventive(
    config: Callable[[], SiteConfig],
    tickets: TicketStore,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    opened: Callable[[Sequence[TicketRecord]], None] | None = None,
) -> None:
    """Open due preventive tickets every ``maintenance.check_every`` until cancelled.
    ``config`` is asked each round, so a reloaded config applies at once. A failure is logged
    when it starts and when it ends; it never stops the loop."""
    failing = False
    while True:
        cfg = config()
        try:
            if cfg.maintenance.schedules:
                made = await asyncio.to_thread(open_due, cfg, tickets, clock())
                if made and opened is not None:
                    opened(made)
        except Exception:
            if not failing:
                log.exception("preventive maintenance check failed; retried every round")
                failing = True
        else:
            if failing:
                log.info("preventive maintenance check works again")
                failing = False
        await asyncio.sleep(cfg.maintenance.check_every.total_seconds())
