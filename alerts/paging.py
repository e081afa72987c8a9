"""Paging: escalation chains run as timer rows, and an outbox of messages delivered with
retries (E1-E8 and D3 of ../shared/alerting-semantics.md).

Two tables share the ticket database:

* ``escalations``: one row per running chain (``kind`` = ``chain``) or acknowledgement watch
  (``ack_watch``, E3) with the step it is at and when that step is due (E5). A restart loses
  nothing: the rows are read again and overdue steps run at once.
* ``notifications``: the outbox. One row per message to one recipient on one channel, with a
  unique idempotency key (D3), delivered at least once by :meth:`Pager.deliver`.

The ticket's own events drive the rows, in the transaction that writes the event
(:func:`record_ticket_event`, called by :func:`alerts.tickets.add_ticket_event`): a ticket that
opens or reopens starts a chain; an acknowledgement, arrival, resolution or cancellation stops
it (E2); a resolution queues a "resolved" message to everyone who was paged, so a crash between
the change and the message never loses the message. What a chain does is decided when its step
runs (:meth:`Pager.escalate`): the chain is picked from the config by priority and fault class,
whoever is on call *then* is paged (E6), and silences and shelving are honoured then too.

Every step leaves an event on the ticket (paged, escalated, delivered, reminded, ...), so the
ticket's timeline shows the whole chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from alerts.oncall import Gap, coverage_gaps, who_is_on_call
from alerts.preventive import is_preventive
from alerts.silences import silence_for_ticket
from alerts.tickets import (
    DONE_STATUSES,
    SYSTEM_ACTOR,
    TicketStatus,
    TicketStore,
    UtcDateTime,
    _alert,
    _AlertRow,
    _Base,
    _TicketEventRow,
    _TicketRow,
    add_ticket_event,
    is_shelved,
)
from config.escalation import (
    Chain,
    NotifyStep,
    NotifyTarget,
    OnlyBetweenStep,
    RepeatStep,
    WaitStep,
    WebhookStep,
)
from config.models import Person, SiteConfig

log = logging.getLogger(__name__)

CHAIN = "chain"
ACK_WATCH = "ack_watch"
ACTIVE = "active"
STOPPED = "stopped"
DONE = "done"

PENDING = "pending"
SENT = "sent"
FAILED = "failed"

# A claimed message is someone else's to retry after this long (a deliverer that died).
LEASE = timedelta(seconds=60)
# Retry backoff: 5 s, 10 s, 20 s ... capped.
_BACKOFF_FIRST = timedelta(seconds=5)
_BACKOFF_MAX = timedelta(minutes=10)
_CLAIM_BATCH = 50
_DUE_BATCH = 200

# E6: coverage gaps are looked for this far ahead, this often.
GAP_HORIZON = timedelta(days=7)
GAP_CHECK_EVERY = timedelta(hours=1)

# Ticket events that start, stop or end paging.
_STARTS = frozenset({"created", "reopened", "unacknowledged"})
_ACKS = frozenset({"accepted", "alert_acknowledged"})
_ON_SITE = frozenset({"arrived", "started"})
_ENDS = frozenset({"resolved", "closed", "cancelled"})
# Message kinds that reach a person about an open ticket (a "resolved" goes to all of them).
_PAGE_KINDS = ("page", "escalation", "reminder")


class _EscalationRow(_Base):
    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # CHAIN or ACK_WATCH
    state: Mapped[str] = mapped_column(String(16))  # ACTIVE, STOPPED or DONE
    chain_id: Mapped[str | None] = mapped_column(String(64))  # picked when the first step runs
    step: Mapped[int] = mapped_column(Integer, default=0)  # next step to run
    rounds: Mapped[int] = mapped_column(Integer, default=0)  # repeats done
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        # One running chain and one watch per ticket, even with several writers.
        Index(
            "uq_escalations_active",
            "ticket_id",
            "kind",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
        Index("ix_escalations_due", "state", "due_at"),
    )


class _NotificationRow(_Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # idempotency key (D3)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    escalation_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(64))  # person id, or channel id for a group
    channel: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # the Notice as JSON
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_notifications_pending", "status", "next_attempt_at"),)


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One queued or delivered message, for the API, the status page and tests."""

    id: int
    key: str
    ticket_id: int | None
    kind: str
    recipient: str
    channel: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


def _key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


# -- reacting to ticket events, inside their transaction --------------------------------------
def _stop(s: Session, ticket_id: int, kinds: Sequence[str], at: datetime, why: str) -> int:
    res = s.execute(
        update(_EscalationRow)
        .where(
            _EscalationRow.ticket_id == ticket_id,
            _EscalationRow.kind.in_(kinds),
            _EscalationRow.state == ACTIVE,
        )
        .values(state=STOPPED, updated_at=at, note=why)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(res, "rowcount", 0) or 0)


def _active(s: Session, ticket_id: int, kind: str) -> bool:
    return bool(
        s.scalar(
            select(
                exists().where(
                    _EscalationRow.ticket_id == ticket_id,
                    _EscalationRow.kind == kind,
                    _EscalationRow.state == ACTIVE,
                )
            )
        )
    )


def _start(s: Session, ticket_id: int, kind: str, at: datetime) -> None:
    s.add(
        _EscalationRow(
            ticket_id=ticket_id,
            kind=kind,
            state=ACTIVE,
            step=0,
            rounds=0,
            due_at=at,
            started_at=at,
            updated_at=at,
            note="",
        )
    )
    s.flush()


def record_ticket_event(s: Session, ticket_id: int, kind: str, at: datetime, who: str) -> None:
    """Start, stop or close paging for ``kind``, an event just written on the ticket (E2, E3).

    Called in the event's transaction, so the change and its paging commit together."""
    if kind in _STARTS:
        _stop(s, ticket_id, (CHAIN, ACK_WATCH), at, f"restarted by {kind}")
        _start(s, ticket_id, CHAIN, at)
    elif kind == "priority_raised":
        # A9: a severity rise notifies again; a running chain already covers it.
        if not _active(s, ticket_id, CHAIN):
            _start(s, ticket_id, CHAIN, at)
    elif kind in _ACKS:
        _stop(s, ticket_id, (CHAIN,), at, f"{kind} by {who}")
        if not _active(s, ticket_id, ACK_WATCH):
            _start(s, ticket_id, ACK_WATCH, at)
    elif kind in _ON_SITE:
        _stop(s, ticket_id, (CHAIN, ACK_WATCH), at, f"{kind} by {who}")
    elif kind in _ENDS:
        _stop(s, ticket_id, (CHAIN, ACK_WATCH), at, f"{kind} by {who}")
        if kind != "closed":  # a close follows a resolve, which already told them
            _queue_resolved(s, ticket_id, kind, at, who)


def retire(tickets: TicketStore, before: datetime, note: str) -> int:
    """Stop, without paging, every chain and watch that started before ``before``: for
    tickets of a history that was replayed rather than lived (the demo's back-fill), whose
    steps would otherwise all be overdue at start-up (E5) and page at once."""
    with tickets.sessions.begin() as s:
        res = s.execute(
            update(_EscalationRow)
            .where(_EscalationRow.state == ACTIVE, _EscalationRow.started_at < before)
            .values(state=STOPPED, updated_at=before, note=note)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(res, "rowcount", 0) or 0)


def _queue_resolved(s: Session, ticket_id: int, kind: str, at: datetime, who: str) -> None:
    """A "resolved" (or "cancelled") message to everyone paged about the ticket, once per
    recipient and channel; a restart between the change and the send loses nothing."""
    ticket = s.get(_TicketRow, ticket_id)
    if ticket is None:
        return
    latest: dict[tuple[str, str], _NotificationRow] = {}
    for n in s.scalars(
        select(_NotificationRow)
        .where(_NotificationRow.ticket_id == ticket_id, _NotificationRow.kind.in_(_PAGE_KINDS))
        .order_by(_NotificationRow.id)
    ):
        latest[(n.recipient, n.channel)] = n
    for (recipient, channel), n in latest.items():
        key = _key(ticket_id, "resolved", ticket.reopen_count, kind, recipient, channel)
        if s.scalar(select(exists().where(_NotificationRow.key == key))):
            continue
        payload = json.loads(n.payload)
        payload.update(
            key=key,
            kind="resolved",
            status=ticket.status,
            at=at.isoformat(),
            note=f"{kind} by {who}",
            step="",
        )
        s.add(_notification(payload, ticket_id, n.escalation_id, recipient, channel, at))


def _notification(
    payload: dict[str, Any],
    ticket_id: int | None,
    escalation_id: int | None,
    recipient: str,
    channel: str,
    at: datetime,
) -> _NotificationRow:
    return _NotificationRow(
        key=payload["key"],
        ticket_id=ticket_id,
        escalation_id=escalation_id,
        kind=payload["kind"],
        recipient=recipient,
        channel=channel,
        payload=json.dumps(payload, ensure_ascii=False),
        status=PENDING,
        attempts=0,
        next_attempt_at=at,
        lease_until=None,
        last_error=None,
        created_at=at,
        sent_at=None,
    )


# -- local time windows -----------------------------------------------------------------------
def in_window(local: datetime, window: tuple[time, time]) -> bool:
    start, end = window
    t = local.time().replace(tzinfo=None)
    if start < end:
        return start <= t < end
    return t >= start or t < end  # wraps past midnight (end 00:00 included)


def next_opening(now: datetime, tz: ZoneInfo, window: tuple[time, time]) -> datetime:
    """The next moment at or after ``now`` inside ``window`` (local wall-clock times)."""
    local = now.astimezone(tz)
    if in_window(local, window):
        return now
    day: date = local.date()
    for offset in range(2):
        opening = datetime.combine(day + timedelta(days=offset), window[0], tzinfo=tz)
        if opening >= local:
            return opening.astimezone(UTC)
    raise AssertionError("a window opens within a day")


class _Lost(Exception):
    """Another pager moved the escalation row first."""


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    key: str
    ticket_id: int | None
    kind: str
    recipient: str
    channel: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Outcome:
    claimed: _Claimed
    error: str | None = None
    retryable: bool = False
    grouped: int = 1  # messages sent as one (D5)


class Pager:
    """Runs the escalation steps that are due and delivers the outbox.

    Several pagers may share one database: a step is taken by compare-and-set on its row and a
    message is leased before it is sent, so nothing runs twice except a message whose sender
    died mid-send (at-least-once; receivers de-duplicate by the idempotency key, D3).
    """

    def __init__(
        self,
        config: SiteConfig,
        tickets: TicketStore,
        *,
        env: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._tickets = tickets
        self._sessions = tickets.sessions
        self._env = env
        self._client = client
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failing = False
        self._gaps_checked: datetime | None = None
        self._gaps_warned: set[tuple[str | None, datetime]] = set()
        self.sent = 0
        self.failed = 0
        self.gaps: list[Gap] = []  # coverage gaps ahead, as of the last check (E6)
        self.reconfigure(config)

    def reconfigure(self, config: SiteConfig) -> None:
        """Use ``config`` from the next step on (a reloaded site config): running chains go
        on with the steps of the chain of the same id."""
        self._config = config
        self._tz = ZoneInfo(config.site.timezone)
        self._people = {p.id: p for p in config.oncall.people}
        self._channels = {c.id: c for c in config.channels}
        self._devices = {d.id: d for d in config.devices}
        base = config.api.public_url or f"http://{config.api.host}:{config.api.port}"
        self._link_base = base.rstrip("/")
        self._gaps_checked = None

    def check_coverage(self, now: datetime) -> list[Gap]:
        """E6: warn, once per gap, about stretches of the next :data:`GAP_HORIZON` that no
        rotation paged by a chain covers; a gap the fallback takes is only noted."""
        if self._gaps_checked is not None and now - self._gaps_checked < GAP_CHECK_EVERY:
            return self.gaps
        self._gaps_checked = now
        rotations = sorted(
            {
                st.notify.rotation
                for chain in self._config.escalation.chains
                for st in chain.steps
                if isinstance(st, NotifyStep) and st.notify.rotation is not None
            }
        )
        gaps: list[Gap] = []
        for rot in rotations:
            gaps += coverage_gaps(self._config.oncall, self._tz, now, now + GAP_HORIZON, rot)
        for g in gaps:
            if (g.rotation, g.start) in self._gaps_warned:
                continue
            self._gaps_warned.add((g.rotation, g.start))
            start, end = g.start.astimezone(self._tz), g.end.astimezone(self._tz)
            if g.fallback is not None:
                log.info(
                    "on-call gap in %s %s..%s: the fallback %s is paged",
                    g.rotation,
                    f"{start:%Y-%m-%d %H:%M}",
                    f"{end:%Y-%m-%d %H:%M}",
                    g.fallback.name,
                )
            else:
                log.warning(
                    "on-call gap in %s %s..%s and no fallback: pages then reach nobody",
                    g.rotation,
                    f"{start:%Y-%m-%d %H:%M}",
                    f"{end:%Y-%m-%d %H:%M}",
                )
        self.gaps = gaps
        return gaps

    # -- escalation ---------------------------------------------------------------------------
    def escalate(self, now: datetime) -> int:
        """Run every escalation step due at ``now``; returns how many rows moved."""
        moved = 0
        for _ in range(10):  # a step may make the next one due at once (no wait between)
            with self._sessions() as s:
                ids = list(
                    s.scalars(
                        select(_EscalationRow.id)
                        .where(_EscalationRow.state == ACTIVE, _EscalationRow.due_at <= now)
                        .order_by(_EscalationRow.due_at, _EscalationRow.id)
                        .limit(_DUE_BATCH)
                    )
                )
            if not ids:
                break
            for esc_id in ids:
                try:
                    with self._sessions.begin() as s:
                        if self._advance(s, esc_id, now):
                            moved += 1
                except _Lost:
                    continue
        return moved

    def _advance(self, s: Session, esc_id: int, now: datetime) -> bool:
        row = s.get(_EscalationRow, esc_id)
        if row is None or row.state != ACTIVE or row.due_at > now:
            return False
        ticket = s.get(_TicketRow, row.ticket_id)
        if ticket is None or TicketStatus(ticket.status) in DONE_STATUSES:
            self._cas(s, row, now, state=DONE, note="ticket finished")
            return True
        if row.kind == ACK_WATCH:
            self._watch(s, row, ticket, now)
        else:
            self._chain(s, row, ticket, now)
        return True

    def _cas(self, s: Session, row: _EscalationRow, now: datetime, **values: Any) -> None:
        res = s.execute(
            update(_EscalationRow)
            .where(
                _EscalationRow.id == row.id,
                _EscalationRow.state == ACTIVE,
                _EscalationRow.step == row.step,
                _EscalationRow.rounds == row.rounds,
                _EscalationRow.due_at == row.due_at,
            )
            .values(updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if int(getattr(res, "rowcount", 0) or 0) != 1:
            raise _Lost

    def _chain(self, s: Session, row: _EscalationRow, ticket: _TicketRow, now: datetime) -> None:
        esc = self._config.escalation
        chain: Chain | None
        if row.chain_id is None:
            chain = esc.chain_for(ticket.priority, ticket.fault_class)
            if (
                chain is not None
                and is_preventive(ticket.fault_class)
                and ticket.fault_class not in chain.match.fault_classes
            ):
                # Planned work is nobody's emergency: only a chain naming its class pages.
                self._cas(s, row, now, state=DONE, note="preventive work")
                self._event(
                    s, ticket.id, now, "paging_skipped", "planned preventive work: nobody is paged"
                )
                return
            if chain is None:
                self._cas(s, row, now, state=DONE, note="no chain matches")
                self._event(
                    s,
                    ticket.id,
                    now,
                    "paging_skipped",
                    f"no escalation chain matches {ticket.priority} {ticket.fault_class}: "
                    "nobody is paged",
                )
                return
        else:
            chain = next((c for c in esc.chains if c.id == row.chain_id), None)
            if chain is None:
                self._cas(s, row, now, state=DONE, note=f"chain {row.chain_id} was removed")
                self._event(
                    s,
                    ticket.id,
                    now,
                    "paging_skipped",
                    f"chain {row.chain_id} is no longer configured; paging ends",
                )
                return
        # E2: a silence or a shelve stops the chain, at its start or at any later step.
        why = self._suppressed(s, ticket, now)
        if why is not None:
            self._cas(s, row, now, state=STOPPED, note=why)
            self._event(s, ticket.id, now, "paging_suppressed", why)
            return
        step, rounds = row.step, row.rounds
        actions: list[tuple[int, int, NotifyStep | WebhookStep]] = []
        due, state = now, ACTIVE
        for _ in range(4 * len(chain.steps) + 4):  # validated chains never loop without a wait
            if step >= len(chain.steps):
                state = DONE
                break
            st = chain.steps[step]
            if isinstance(st, NotifyStep | WebhookStep):
                actions.append((step, rounds, st))
                step += 1
            elif isinstance(st, WaitStep):
                due, step = now + st.wait, step + 1
                break
            elif isinstance(st, OnlyBetweenStep):
                step += 1
                opening = next_opening(now, self._tz, st.window)
                if opening > now:
                    due = opening
                    break
            elif isinstance(st, RepeatStep):
                times = st.repeat.times
                if times == "until_ack" or rounds < times:
                    rounds, step = rounds + 1, st.repeat.from_step
                else:
                    step += 1
        self._cas(s, row, now, step=step, rounds=rounds, due_at=due, state=state, chain_id=chain.id)
        for i, r, st in actions:
            self._page(s, row.id, ticket, chain, i, r, st, now)
        if state == DONE:
            self._event(
                s,
                ticket.id,
                now,
                "paging_finished",
                f"chain {chain.id} has run all its steps without an acknowledgement",
            )

    def _suppressed(self, s: Session, ticket: _TicketRow, now: datetime) -> str | None:
        """Why a chain must not start (E2): the source alert is shelved or a silence covers
        the ticket; None when paging may go ahead."""
        alert = s.get(_AlertRow, ticket.source_alert_id) if ticket.source_alert_id else None
        if alert is not None and alert.resolved_at is None and is_shelved(_alert(alert), now):
            assert alert.shelved_until is not None
            until = alert.shelved_until.astimezone(self._tz)
            return (
                f"alert shelved by {alert.shelved_by} until {until:%Y-%m-%d %H:%M}: "
                f"{alert.shelved_reason}"
            )
        return silence_for_ticket(s, self._config, ticket, now)

    def _page(
        self,
        s: Session,
        esc_id: int,
        ticket: _TicketRow,
        chain: Chain,
        index: int,
        rounds: int,
        st: NotifyStep | WebhookStep,
        now: datetime,
    ) -> None:
        first_notify = next(
            i for i, x in enumerate(chain.steps) if isinstance(x, NotifyStep | WebhookStep)
        )
        kind = "page" if index == first_notify else "escalation"
        event = "repaged" if rounds > 0 else ("paged" if kind == "page" else "escalated")
        where = f"step {index + 1} of {len(chain.steps)} in chain {chain.id}"
        if isinstance(st, WebhookStep):
            ch = st.webhook
            payload = self._payload(
                s, ticket, kind, _key(ticket.id, esc_id, index, rounds, ch), None, now, where
            )
            payload.update(recipient_id=ch, recipient_name=ch)
            s.add(_notification(payload, ticket.id, esc_id, ch, ch, now))
            self._event(s, ticket.id, now, event, f"posted to {ch} ({where})")
            return
        people, how = self._targets(st.notify, now)
        if not people:
            self._event(s, ticket.id, now, "paging_failed", f"{how}: nobody to page ({where})")
            log.warning("ticket %s: %s, nobody paged", ticket.number, how)
            return
        lines = []
        for person in people:
            channels = self._reach(person, st.notify.channels)
            for ch in channels:
                key = _key(ticket.id, esc_id, index, rounds, person.id, ch)
                payload = self._payload(s, ticket, kind, key, person, now, where)
                s.add(_notification(payload, ticket.id, esc_id, person.id, ch, now))
            via = ", ".join(channels) if channels else "no channel"
            lines.append(f"{person.name} via {via}")
        self._event(s, ticket.id, now, event, f"{'; '.join(lines)} — {how} ({where})")

    def _targets(self, target: NotifyTarget, now: datetime) -> tuple[list[Person], str]:
        if target.person is not None:
            p = self._people.get(target.person)
            return ([p] if p else []), f"person {target.person}"
        if target.team:
            team = [self._people[t] for t in target.team if t in self._people]
            return team, f"team {', '.join(target.team)}"
        assert target.rotation is not None
        ans = who_is_on_call(self._config.oncall, self._tz, now, target.rotation)
        if ans.person is None:
            return [], f"nobody on call in {target.rotation} and no fallback"
        return [ans.person], f"on call ({ans.source}) in {target.rotation}"

    def _reach(self, person: Person, only: Sequence[str]) -> list[str]:
        out = []
        for c in person.contacts:
            if only and c not in only:
                continue
            ch = self._channels.get(c)
            if ch is None or (ch.type == "email" and not person.email):
                continue
            out.append(c)
        return out

    def _payload(
        self,
        s: Session,
        ticket: _TicketRow,
        kind: str,
        key: str,
        person: Person | None,
        now: datetime,
        step: str,
        note: str = "",
    ) -> dict[str, Any]:
        site = self._config.site
        alert = s.get(_AlertRow, ticket.source_alert_id) if ticket.source_alert_id else None
        device = self._devices.get(ticket.device)
        return {
            "key": key,
            "kind": kind,
            "language": (person.language if person else None) or site.language,
            "site": site.id,
            "ticket_id": ticket.id,
            "ticket_number": ticket.number or "",
            "title": ticket.title,
            "priority": ticket.priority,
            "severity": alert.severity if alert is not None else "",
            "status": ticket.status,
            "device": ticket.device,
            "device_name": device.name if device is not None else ticket.device,
            "building": ticket.building,
            "fault_class": ticket.fault_class,
            "at": now.isoformat(),
            "link": f"{self._link_base}/console/tickets/{ticket.id}",
            "note": note,
            "recipient_id": person.id if person else "",
            "recipient_name": person.name if person else "",
            "recipient_phone": person.phone if person else None,
            "recipient_email": person.email if person else None,
            "step": step,
        }

    def _watch(self, s: Session, row: _EscalationRow, ticket: _TicketRow, now: datetime) -> None:
        """E3: an acknowledged ticket nobody arrives at gets a reminder, then loses its
        acknowledgement and paging restarts."""
        if is_preventive(ticket.fault_class):
            self._cas(s, row, now, state=DONE, note="preventive work")
            return
        timeout = self._config.escalation.ack_timeout_for(ticket.fault_class)
        on_site = s.scalar(
            select(
                exists().where(
                    _TicketEventRow.ticket_id == ticket.id,
                    _TicketEventRow.kind.in_(_ON_SITE),
                    _TicketEventRow.at >= row.started_at,
                )
            )
        )
        if on_site or ticket.status != TicketStatus.ACCEPTED.value:
            self._cas(s, row, now, state=DONE, note="confirmed or moved on")
            return
        if row.step == 0:
            self._cas(s, row, now, step=1, due_at=row.started_at + timeout)
            return
        acceptor = s.scalar(
            select(_TicketEventRow.who)
            .where(_TicketEventRow.ticket_id == ticket.id, _TicketEventRow.kind == "accepted")
            .order_by(_TicketEventRow.at.desc(), _TicketEventRow.id.desc())
            .limit(1)
        )
        if row.step == 1:
            self._cas(s, row, now, step=2, due_at=now + timeout)
            people = self._acceptors(s, ticket.id, acceptor)
            where = f"accepted by {acceptor or 'someone'}, nobody on site after {timeout}"
            for person in people:
                for ch in self._reach(person, ()):
                    key = _key(ticket.id, row.id, "reminder", person.id, ch)
                    payload = self._payload(s, ticket, "reminder", key, person, now, where)
                    s.add(_notification(payload, ticket.id, row.id, person.id, ch, now))
            names = ", ".join(p.name for p in people) or "nobody reachable"
            self._event(s, ticket.id, now, "ack_reminder", f"{where}: reminder to {names}")
            return
        self._cas(s, row, now, state=DONE, note="acknowledgement withdrawn")
        s.execute(
            update(_TicketRow)
            .where(_TicketRow.id == ticket.id, _TicketRow.status == TicketStatus.ACCEPTED.value)
            .values(status=TicketStatus.NEW.value)
            .execution_options(synchronize_session=False)
        )
        self._event(
            s,
            ticket.id,
            now,
            "unacknowledged",
            f"accepted by {acceptor or 'someone'} but nobody on site within {2 * timeout}: "
            "the acknowledgement is withdrawn and paging restarts",
        )

    def _acceptors(self, s: Session, ticket_id: int, who: str | None) -> list[Person]:
        """Who gets the reminder: the person who accepted, when they are a known person;
        otherwise everyone already paged about the ticket."""
        for p in self._people.values():
            if who is not None and who in (p.id, p.name):
                return [p]
        ids = s.scalars(
            select(_NotificationRow.recipient)
            .where(_NotificationRow.ticket_id == ticket_id, _NotificationRow.kind.in_(_PAGE_KINDS))
            .distinct()
        )
        return [self._people[i] for i in ids if i in self._people]

    @staticmethod
    def _event(s: Session, ticket_id: int, at: datetime, kind: str, note: str) -> None:
        add_ticket_event(s, ticket_id, at, kind, note, None, SYSTEM_ACTOR)

    # -- delivery -----------------------------------------------------------------------------
    async def deliver(self, now: datetime) -> int:
        """Send every message due at ``now`` once (with retries left for later); returns how
        many were sent."""
        claimed = await asyncio.to_thread(self._claim, now)
        if not claimed:
            return 0
        batches = await asyncio.gather(*(self._send(g, now) for g in self._group(claimed)))
        outcomes = [o for batch in batches for o in batch]
        await asyncio.to_thread(self._record, outcomes, now)
        return sum(1 for o in outcomes if o.error is None)

    def _group(self, claimed: Sequence[_Claimed]) -> list[list[_Claimed]]:
        """D5: messages of one kind to one recipient on one channel, about tickets of one
        building and priority, that fall due together go as one message; each ticket keeps
        its own row, events and retries."""
        if not self._config.escalation.group_messages:
            return [[c] for c in claimed]
        groups: dict[tuple[Any, ...], list[_Claimed]] = {}
        for c in claimed:
            p = c.payload
            key = (c.recipient, c.channel, c.kind, p.get("building"), p.get("priority"))
            groups.setdefault(key if c.ticket_id is not None else (c.id,), []).append(c)
        return list(groups.values())

    def _claim(self, now: datetime) -> list[_Claimed]:
        out: list[_Claimed] = []
        with self._sessions.begin() as s:
            rows = s.scalars(
                select(_NotificationRow)
                .where(
                    _NotificationRow.status == PENDING,
                    _NotificationRow.next_attempt_at <= now,
                    (_NotificationRow.lease_until.is_(None))
                    | (_NotificationRow.lease_until <= now),
                )
                .order_by(_NotificationRow.next_attempt_at, _NotificationRow.id)
                .limit(_CLAIM_BATCH)
            ).all()
            for r in rows:
                res = s.execute(
                    update(_NotificationRow)
                    .where(
                        _NotificationRow.id == r.id,
                        _NotificationRow.status == PENDING,
                        (_NotificationRow.lease_until.is_(None))
                        | (_NotificationRow.lease_until <= now),
                    )
                    .values(lease_until=now + LEASE)
                    .execution_options(synchronize_session=False)
                )
                if int(getattr(res, "rowcount", 0) or 0) == 1:
                    out.append(
                        _Claimed(
                            r.id,
                            r.key,
                            r.ticket_id,
                            r.kind,
                            r.recipient,
                            r.channel,
                            json.loads(r.payload),
                            r.attempts,
                            r.created_at,
                        )
                    )
        return out

    def _combined(self, group: Sequence[_Claimed]) -> dict[str, Any]:
        """One message standing for several (D5): the tickets listed in its note."""
        first = dict(group[0].payload)
        tickets = sorted(group, key=lambda c: c.payload.get("ticket_number") or "")
        lines = [
            f"{c.payload.get('ticket_number')} {c.payload.get('title')}"
            + (f" ({c.payload['step']})" if c.payload.get("step") else "")
            for c in tickets
        ]
        n = len(group)
        first.update(
            key=_key("group", *sorted(c.key for c in group)),
            ticket_id=None,
            ticket_number=", ".join(str(c.payload.get("ticket_number")) for c in tickets),
            title=f"{n} tickets / {n} 张工单: {tickets[0].payload.get('title')} ...",
            device=None,
            device_name=None,
            fault_class=None,
            link=f"{self._link_base}/console/tickets",
            note="\n".join(lines),
            step="",
        )
        return first

    async def _send(self, group: Sequence[_Claimed], now: datetime) -> list[_Outcome]:
        from alerts.channels import DeliveryError, deliver
        from alerts.messages import Notice

        c = group[0]
        channel = self._channels.get(c.channel)
        if channel is None:
            why = f"channel {c.channel!r} is no longer configured"
            return [_Outcome(m, why, False) for m in group]
        p = dict(c.payload) if len(group) == 1 else self._combined(group)
        p["at"] = datetime.fromisoformat(p["at"])
        try:
            notice = Notice(**p)
            await deliver(channel, notice, env=self._env, client=self._client, now=now, tz=self._tz)
        except DeliveryError as e:
            return [_Outcome(m, str(e), e.retryable, len(group)) for m in group]
        except Exception as e:  # a bug in one channel must not stop the others
            log.exception("delivering %s via %s failed unexpectedly", c.kind, c.channel)
            return [_Outcome(m, f"{type(e).__name__}: {e}", True, len(group)) for m in group]
        return [_Outcome(m, grouped=len(group)) for m in group]

    def _record(self, outcomes: Iterable[_Outcome], now: datetime) -> None:
        retry_for = self._config.escalation.retry_for
        with self._sessions.begin() as s:
            for o in outcomes:
                c = o.claimed
                who = c.payload.get("recipient_name") or c.recipient
                if o.error is None:
                    values: dict[str, Any] = {"status": SENT, "sent_at": now}
                    self.sent += 1
                    if c.ticket_id is not None:
                        also = f" (one message for {o.grouped} tickets)" if o.grouped > 1 else ""
                        self._event(
                            s,
                            c.ticket_id,
                            now,
                            "delivered",
                            f"{c.kind} to {who} via {c.channel}{also}",
                        )
                elif o.retryable and now - c.created_at < retry_for:
                    backoff = min(_BACKOFF_FIRST * 2**c.attempts, _BACKOFF_MAX)
                    values = {"next_attempt_at": now + backoff, "last_error": o.error}
                    if c.attempts == 0:
                        log.warning(
                            "%s to %s via %s failed, retrying: %s", c.kind, who, c.channel, o.error
                        )
                else:
                    values = {"status": FAILED, "last_error": o.error}
                    self.failed += 1
                    log.error("%s to %s via %s given up: %s", c.kind, who, c.channel, o.error)
                    if c.ticket_id is not None:
                        self._event(
                            s,
                            c.ticket_id,
                            now,
                            "delivery_failed",
                            f"{c.kind} to {who} via {c.channel} not delivered: {o.error}",
                        )
                s.execute(
                    update(_NotificationRow)
                    .where(_NotificationRow.id == c.id)
                    .values(attempts=_NotificationRow.attempts + 1, lease_until=None, **values)
                    .execution_options(synchronize_session=False)
                )

    # -- running ------------------------------------------------------------------------------
    def kick(self) -> None:
        """Wake :meth:`run` now (thread-safe): a ticket just opened or changed."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def run(self, interval: float = 1.0) -> None:
        """Escalate and deliver every ``interval`` seconds, or at once when kicked, until
        cancelled. A failing database is logged when it starts and when it ends."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            now = datetime.now(UTC)
            try:
                self.check_coverage(now)
                await asyncio.to_thread(self.escalate, now)
                await self.deliver(now)
            except Exception:
                if not self._failing:
                    log.exception("paging failed; retried every %.0fs", interval)
                    self._failing = True
            else:
                if self._failing:
                    log.info("paging works again")
                    self._failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()

    @property
    def failing(self) -> bool:
        """Whether the last round of escalation and delivery failed (the database is down)."""
        return self._failing

    # -- reading ------------------------------------------------------------------------------
    def notifications(self, ticket_id: int | None = None) -> list[NotificationRecord]:
        return list_notifications(self._tickets, ticket_id)

    def outbox_depth(self) -> int:
        with self._sessions() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(_NotificationRow)
                    .where(_NotificationRow.status == PENDING)
                )
                or 0
            )


def list_notifications(
    tickets: TicketStore, ticket_id: int | None = None
) -> list[NotificationRecord]:
    """The messages queued or sent (about ``ticket_id``, or all), oldest first."""
    with tickets.sessions() as s:
        q = select(_NotificationRow).order_by(_NotificationRow.id)
        if ticket_id is not None:
            q = q.where(_NotificationRow.ticket_id == ticket_id)
        return [
            NotificationRecord(
                r.id,
                r.key,
                r.ticket_id,
                r.kind,
                r.recipient,
                r.channel,
                r.status,
                r.attempts,
                r.created_at,
                r.sent_at,
                r.last_error,
            )
            for r in s.scalars(q)
        ]


__all__ = ["NotificationRecord", "Pager", "list_notifications", "record_ticket_event", "retire"]
