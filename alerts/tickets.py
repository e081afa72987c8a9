"""Alert instances and maintenance tickets (work orders) in one SQL database.

SQLite (a file next to the data, the default) or PostgreSQL, through the SQLAlchemy 2.0 ORM.
The rules that must hold even with several writers are enforced by the database itself, not by
a check-then-insert in Python (../shared/alerting-semantics.md):

* D2: at most one unresolved alert per fingerprint -- a partial unique index on
  ``alerts(fingerprint) WHERE resolved_at IS NULL``;
* D4: at most one open ticket per (device, fault class) -- a partial unique index on
  ``tickets(device, fault_class) WHERE status NOT IN (closed statuses)``.

A writer that loses a race gets an ``IntegrityError``; the methods here turn that into
:class:`AlertConflict` (carrying what the winner wrote) or retry the transaction so that the
second ticket request becomes an occurrence on the first ticket.

Every time is a timezone-aware UTC ``datetime`` going in and coming out, on both databases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import (
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

T = TypeVar("T")

Priority = Literal["P1", "P2", "P3"]

# Ticket priority and service-level targets (T1), in one place. Severities not listed map to
# DEFAULT_PRIORITY. The SLA is the time from creation to "resolved" that counts as on time.
PRIORITY_BY_SEVERITY: Mapping[str, Priority] = {"critical": "P1", "major": "P2"}
DEFAULT_PRIORITY: Priority = "P3"
SLA_BY_PRIORITY: Mapping[Priority, timedelta] = {
    "P1": timedelta(hours=4),
    "P2": timedelta(hours=24),
    "P3": timedelta(hours=72),
}
TICKET_NUMBER_PREFIX = "WO-"
SYSTEM_ACTOR = "facmon"  # ``who`` of the events facmon itself writes
MAX_PAGE = 500  # largest page list_tickets returns

# A transaction that lost a race is retried this many times in all.
_ATTEMPTS = 3


def _utc(t: datetime) -> datetime:
    # Records built from the values passed in (not re-read) must be UTC too.
    if t.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware time")
    return t.astimezone(UTC)


def priority_for(severity: str) -> Priority:
    """Ticket priority of an alert severity (critical -> P1, major -> P2, others -> P3)."""
    return PRIORITY_BY_SEVERITY.get(severity, DEFAULT_PRIORITY)


def due_time(created_at: datetime, priority: Priority) -> datetime:
    """When a ticket of ``priority`` created at ``created_at`` is due (T1)."""
    return created_at + SLA_BY_PRIORITY[priority]


class AlertState(StrEnum):
    """States of an alert instance. INACTIVE is never stored: it is the absence of a row.

    RECOVERING and NODATA (A5, A8) come with the full engine.
    """

    INACTIVE = "INACTIVE"
    PENDING = "PENDING"
    FIRING = "FIRING"
    RESOLVED = "RESOLVED"


class TicketStatus(StrEnum):
    NEW = "NEW"
    ASSIGNED = "ASSIGNED"
    ACCEPTED = "ACCEPTED"
    IN_PROGRESS = "IN_PROGRESS"
    ON_HOLD = "ON_HOLD"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"
    REOPENED = "REOPENED"


# A ticket in one of these no longer takes occurrences: a new episode opens a new ticket.
DONE_STATUSES: frozenset[TicketStatus] = frozenset(
    {TicketStatus.RESOLVED, TicketStatus.CLOSED, TicketStatus.CANCELLED}
)
OPEN_STATUSES: frozenset[TicketStatus] = frozenset(TicketStatus) - DONE_STATUSES

_DONE_SQL = ", ".join(f"'{s.value}'" for s in sorted(DONE_STATUSES))


# -- column type ------------------------------------------------------------------------------
class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    PostgreSQL stores ``timestamptz`` and returns it in the session's zone; SQLite has no zone
    at all and returns naive values. Both come back as aware UTC, and naive input is refused
    rather than silently taken as local time.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _utc(value)
        # Naive UTC text in SQLite keeps comparisons and ORDER BY correct as plain strings.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- schema -----------------------------------------------------------------------------------
# Tables are created with metadata.create_all for now; Alembic migrations replace that in the
# follow-up issue, before the schema is changed for the first time on a deployed site.
class _Base(DeclarativeBase):
    pass


class _AlertRow(_Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64))
    building: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)  # start of the episode (PENDING)
    fired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_value: Mapped[float | None] = mapped_column(Float)  # value at the last transition
    # Not a foreign key: tickets.source_alert_id already points the other way, and a cycle of
    # foreign keys needs ALTER TABLE ADD CONSTRAINT, which SQLite does not have.
    ticket_id: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index(
            "uq_alerts_unresolved_fingerprint",
            "fingerprint",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index("ix_alerts_device", "device"),
    )


class _TicketRow(_Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Derived from id inside the creating transaction; nullable only for that moment.
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    device: Mapped[str] = mapped_column(String(64))
    building: Mapped[str] = mapped_column(String(64))
    fault_class: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source_alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    occurrences: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        Index(
            "uq_tickets_open_device_fault",
            "device",
            "fault_class",
            unique=True,
            sqlite_where=text(f"status NOT IN ({_DONE_SQL})"),
            postgresql_where=text(f"status NOT IN ({_DONE_SQL})"),
        ),
        Index("ix_tickets_created", "created_at"),
        Index("ix_tickets_building", "building"),
    )


class _TicketEventRow(_Base):
    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    who: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))


# -- records handed out (plain values: no session, no lazy loading) ---------------------------
@dataclass(frozen=True, slots=True)
class NewAlert:
    """Identity and labels of an alert instance about to be written."""

    fingerprint: str
    rule_id: str
    site: str
    building: str
    device: str
    metric: str
    severity: str


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: int
    fingerprint: str
    rule_id: str
    site: str
    building: str
    device: str
    metric: str
    state: AlertState
    severity: str
    started_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    last_value: float | None
    ticket_id: int | None


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """What an alert asks of the ticket system when it fires (T1)."""

    title: str
    device: str
    building: str
    fault_class: str
    severity: str
    note: str = ""

    @property
    def priority(self) -> Priority:
        return priority_for(self.severity)


@dataclass(frozen=True, slots=True)
class TicketRecord:
    id: int
    number: str
    title: str
    device: str
    building: str
    fault_class: str
    priority: Priority
    status: TicketStatus
    created_at: datetime
    due_at: datetime
    updated_at: datetime
    source_alert_id: int | None
    occurrences: int

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class TicketEventRecord:
    at: datetime
    who: str
    kind: str
    note: str
    alert_id: int | None


@dataclass(frozen=True, slots=True)
class TicketDetail:
    ticket: TicketRecord
    events: tuple[TicketEventRecord, ...]


@dataclass(frozen=True, slots=True)
class TicketPage:
    items: tuple[TicketRecord, ...]
    total: int
    limit: int
    offset: int


class AlertConflict(Exception):
    """Another writer changed this alert first; ``current`` is what the database holds now
    (None when the fingerprint has no unresolved alert any more)."""

    def __init__(self, fingerprint: str, current: AlertRecord | None) -> None:
        super().__init__(f"alert {fingerprint[:12]} was changed by another writer")
        self.fingerprint = fingerprint
        self.current = current


def _alert(row: _AlertRow) -> AlertRecord:
    return AlertRecord(
        id=row.id,
        fingerprint=row.fingerprint,
        rule_id=row.rule_id,
        site=row.site,
        building=row.building,
        device=row.device,
        metric=row.metric,
        state=AlertState(row.state),
        severity=row.severity,
        started_at=row.started_at,
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
        last_value=row.last_value,
        ticket_id=row.ticket_id,
    )


def _ticket(row: _TicketRow) -> TicketRecord:
    return TicketRecord(
        id=row.id,
        number=row.number or "",
        title=row.title,
        device=row.device,
        building=row.building,
        fault_class=row.fault_class,
        priority=cast(Priority, row.priority),  # only ever written from SLA_BY_PRIORITY keys
        status=TicketStatus(row.status),
        created_at=row.created_at,
        due_at=row.due_at,
        updated_at=row.updated_at,
        source_alert_id=row.source_alert_id,
        occurrences=row.occurrences,
    )


def _event(row: _TicketEventRow) -> TicketEventRecord:
    return TicketEventRecord(
        at=row.at, who=row.who, kind=row.kind, note=row.note, alert_id=row.alert_id
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        # WAL lets the API read while the engine writes; ignored for in-memory databases.
        cur.execute("PRAGMA journal_mode=WAL")
    finally:
        cur.close()


# -- the store --------------------------------------------------------------------------------
class TicketStore:
    """Alert state and tickets in the database at ``url`` (any SQLAlchemy URL; tested with
    ``sqlite:///path`` and ``postgresql+psycopg://...``). Tables are created if missing."""

    def __init__(self, url: str) -> None:
        u = make_url(url)
        kwargs: dict[str, Any] = {}
        if u.get_backend_name() == "sqlite":
            # Writers wait for each other instead of failing at once with "database is locked".
            connect_args: dict[str, Any] = {"timeout": 30}
            if u.database in (None, "", ":memory:"):
                # One shared connection: every new connection to :memory: is an empty database.
                connect_args["check_same_thread"] = False
                kwargs["poolclass"] = StaticPool
            elif not u.database.startswith("file:"):
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = connect_args
        self._engine = create_engine(u, **kwargs)
        if u.get_backend_name() == "sqlite":
            event.listen(self._engine, "connect", _sqlite_pragmas)
        _Base.metadata.create_all(self._engine)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def close(self) -> None:
        self._engine.dispose()

    # -- alerts -------------------------------------------------------------------------------
    def unresolved_alerts(self) -> list[AlertRecord]:
        """Every alert that is PENDING or FIRING: the engine's state after a restart (A13)."""
        with self._sessions() as s:
            rows = s.scalars(
                select(_AlertRow).where(_AlertRow.resolved_at.is_(None)).order_by(_AlertRow.id)
            )
            return [_alert(r) for r in rows]

    def unresolved_alert(self, fingerprint: str) -> AlertRecord | None:
        with self._sessions() as s:
            row = s.scalars(
                select(_AlertRow).where(
                    _AlertRow.fingerprint == fingerprint, _AlertRow.resolved_at.is_(None)
                )
            ).first()
            return _alert(row) if row is not None else None

    def start_alert(
        self,
        new: NewAlert,
        state: Literal[AlertState.PENDING, AlertState.FIRING],
        at: datetime,
        value: float,
        ticket: TicketRequest | None = None,
    ) -> tuple[AlertRecord, TicketRecord | None]:
        """Write a new episode of ``new.fingerprint``; a FIRING one also opens ``ticket``.

        Raises :class:`AlertConflict` when the fingerprint already has an unresolved alert:
        the unique index decides, so two engines racing on one breach write one alert.
        """
        if state is AlertState.PENDING and ticket is not None:
            raise ValueError("a PENDING alert never opens a ticket (A2)")
        at = _utc(at)
        for attempt in range(_ATTEMPTS):
            try:
                with self._sessions.begin() as s:
                    row = _AlertRow(
                        fingerprint=new.fingerprint,
                        rule_id=new.rule_id,
                        site=new.site,
                        building=new.building,
                        device=new.device,
                        metric=new.metric,
                        state=state.value,
                        severity=new.severity,
                        started_at=at,
                        fired_at=at if state is AlertState.FIRING else None,
                        resolved_at=None,
                        last_value=value,
                    )
                    s.add(row)
                    s.flush()
                    t = None
                    if ticket is not None:
                        t = self._open_or_add(s, ticket, at, row.id)
                        row.ticket_id = t.id
                    return _alert(row), (_ticket(t) if t is not None else None)
            except IntegrityError:
                current = self.unresolved_alert(new.fingerprint)
                if current is not None:
                    raise AlertConflict(new.fingerprint, current) from None
                # Lost a race on the ticket index instead: retry, and the ticket now exists.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def fire_alert(
        self, alert: AlertRecord, at: datetime, value: float, ticket: TicketRequest
    ) -> tuple[AlertRecord, TicketRecord]:
        """PENDING -> FIRING, opening ``ticket`` (or adding an occurrence) in the same
        transaction. Raises :class:`AlertConflict` if the alert is no longer PENDING."""
        at = _utc(at)

        def txn(s: Session) -> tuple[AlertRecord, TicketRecord]:
            self._transition(
                s,
                alert,
                AlertState.PENDING,
                state=AlertState.FIRING.value,
                fired_at=at,
                last_value=value,
            )
            t = self._open_or_add(s, ticket, at, alert.id)
            s.execute(update(_AlertRow).where(_AlertRow.id == alert.id).values(ticket_id=t.id))
            row = s.get(_AlertRow, alert.id, populate_existing=True)
            assert row is not None
            return _alert(row), _ticket(t)

        return self._write(alert, txn)

    def resolve_alert(
        self, alert: AlertRecord, at: datetime, value: float, note: str = ""
    ) -> AlertRecord:
        """FIRING -> RESOLVED. Its ticket is only noted "condition cleared": an alert
        resolving never closes a ticket (T4). Raises :class:`AlertConflict` if not FIRING."""
        at = _utc(at)

        def txn(s: Session) -> AlertRecord:
            self._transition(
                s,
                alert,
                AlertState.FIRING,
                state=AlertState.RESOLVED.value,
                resolved_at=at,
                last_value=value,
            )
            if alert.ticket_id is not None:
                self._add_event(
                    s,
                    alert.ticket_id,
                    at,
                    "condition_cleared",
                    note or "condition cleared",
                    alert.id,
                )
            row = s.get(_AlertRow, alert.id, populate_existing=True)
            assert row is not None
            return _alert(row)

        return self._write(alert, txn)

    def cancel_pending(self, alert: AlertRecord) -> None:
        """PENDING -> INACTIVE (A2): the condition did not hold for ``for``. The row goes: a
        pending that never fired is not an episode. Raises :class:`AlertConflict`."""

        def txn(s: Session) -> None:
            res = s.execute(
                delete(_AlertRow).where(
                    _AlertRow.id == alert.id,
                    _AlertRow.state == AlertState.PENDING.value,
                    _AlertRow.resolved_at.is_(None),
                )
            )
            if _rowcount(res) != 1:
                raise _Stale

        self._write(alert, txn)

    def _transition(
        self, s: Session, alert: AlertRecord, expected: AlertState, **values: Any
    ) -> None:
        # Compare-and-set: the update only applies if nobody moved the alert meanwhile.
        res = s.execute(
            update(_AlertRow)
            .where(
                _AlertRow.id == alert.id,
                _AlertRow.state == expected.value,
                _AlertRow.resolved_at.is_(None),
            )
            .values(**values)
        )
        if _rowcount(res) != 1:
            raise _Stale

    def _write(self, alert: AlertRecord, txn: Callable[[Session], T]) -> T:
        for attempt in range(_ATTEMPTS):
            try:
                with self._sessions.begin() as s:
                    return txn(s)
            except _Stale:
                current = self.unresolved_alert(alert.fingerprint)
                raise AlertConflict(alert.fingerprint, current) from None
            except IntegrityError:
                # Only the ticket index can collide here (another rule racing for the same
                # device and fault class); the retry finds that ticket and adds an occurrence.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    # -- tickets ------------------------------------------------------------------------------
    def open_or_add_occurrence(
        self, request: TicketRequest, now: datetime, alert_id: int | None = None
    ) -> TicketRecord:
        """Open a ticket for ``request``, or add an occurrence to the open ticket of the same
        device and fault class (D4)."""
        now = _utc(now)
        for attempt in range(_ATTEMPTS):
            try:
                with self._sessions.begin() as s:
                    return _ticket(self._open_or_add(s, request, now, alert_id))
            except IntegrityError:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def note_condition_cleared(
        self, ticket_id: int, now: datetime, note: str = "", alert_id: int | None = None
    ) -> None:
        """Record on the ticket that its condition cleared; the status is left alone (T4)."""
        now = _utc(now)
        with self._sessions.begin() as s:
            self._add_event(
                s, ticket_id, now, "condition_cleared", note or "condition cleared", alert_id
            )

    def list_tickets(
        self,
        *,
        status: Collection[TicketStatus] | None = None,
        device: str | None = None,
        building: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> TicketPage:
        """Tickets newest first, filtered, one page of them and the total that match."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        if offset < 0:
            raise ValueError("offset must not be negative")
        where: list[ColumnElement[bool]] = []
        if status is not None:
            where.append(_TicketRow.status.in_(sorted(s.value for s in status)))
        if device is not None:
            where.append(_TicketRow.device == device)
        if building is not None:
            where.append(_TicketRow.building == building)
        with self._sessions() as s:
            total = s.scalar(select(func.count()).select_from(_TicketRow).where(*where)) or 0
            rows = s.scalars(
                select(_TicketRow)
                .where(*where)
                .order_by(_TicketRow.created_at.desc(), _TicketRow.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return TicketPage(tuple(_ticket(r) for r in rows), total, limit, offset)

    def get_ticket(self, ticket_id: int) -> TicketDetail | None:
        """One ticket with its events in the order they happened."""
        with self._sessions() as s:
            row = s.get(_TicketRow, ticket_id)
            if row is None:
                return None
            events = s.scalars(
                select(_TicketEventRow)
                .where(_TicketEventRow.ticket_id == ticket_id)
                .order_by(_TicketEventRow.at, _TicketEventRow.id)
            )
            return TicketDetail(_ticket(row), tuple(_event(e) for e in events))

    def _open_or_add(
        self, s: Session, req: TicketRequest, now: datetime, alert_id: int | None
    ) -> _TicketRow:
        row = s.scalars(
            select(_TicketRow).where(
                _TicketRow.device == req.device,
                _TicketRow.fault_class == req.fault_class,
                _TicketRow.status.not_in([st.value for st in DONE_STATUSES]),
            )
        ).first()
        priority = req.priority
        if row is None:
            row = _TicketRow(
                title=req.title,
                device=req.device,
                building=req.building,
                fault_class=req.fault_class,
                priority=priority,
                status=TicketStatus.NEW.value,
                created_at=now,
                due_at=due_time(now, priority),
                updated_at=now,
                source_alert_id=alert_id,
                occurrences=1,
            )
            s.add(row)
            s.flush()
            row.number = f"{TICKET_NUMBER_PREFIX}{row.id:06d}"
            self._add_event(s, row.id, now, "created", req.note or req.title, alert_id)
            s.flush()
            log.debug(
                "ticket %s opened: %s (%s, due %s)",
                row.number,
                row.title,
                priority,
                row.due_at.isoformat(),
            )
            return row
        note = req.note or "new occurrence"
        # In SQL, not read-modify-write, so concurrent occurrences all count; updated_at moves
        # with the event below.
        values: dict[str, Any] = {"occurrences": _TicketRow.occurrences + 1}
        if priority < row.priority:  # "P1" < "P2": a more severe episode raises the priority
            values["priority"] = priority
            values["due_at"] = min(row.due_at, due_time(row.created_at, priority))
            note += f"; priority raised {row.priority} -> {priority}"
        s.execute(update(_TicketRow).where(_TicketRow.id == row.id).values(**values))
        self._add_event(s, row.id, now, "occurrence", note, alert_id)
        s.flush()
        s.refresh(row)
        log.debug("ticket %s: occurrence %d", row.number, row.occurrences)
        return row

    def _add_event(
        self,
        s: Session,
        ticket_id: int,
        at: datetime,
        kind: str,
        note: str,
        alert_id: int | None,
    ) -> None:
        s.add(
            _TicketEventRow(
                ticket_id=ticket_id,
                at=at,
                who=SYSTEM_ACTOR,
                kind=kind,
                note=note,
                alert_id=alert_id,
            )
        )
        s.execute(
            update(_TicketRow)
            .where(_TicketRow.id == ticket_id, _TicketRow.updated_at < at)
            .values(updated_at=at)
        )


class _Stale(Exception):
    """A compare-and-set update matched no row."""


def _rowcount(res: Any) -> int:
    assert isinstance(res, CursorResult)
    return int(res.rowcount)
