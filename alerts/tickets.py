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
The schema is created and upgraded by the Alembic migrations in ``alerts/migrations`` when a
store is opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Boolean,
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
    exists,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from config.models import SiteConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
_R = TypeVar("_R", bound="_Base")

Priority = Literal["P1", "P2", "P3"]
PRIORITIES: tuple[Priority, ...] = ("P1", "P2", "P3")
# Where a ticket came from: an alert firing, a technician by hand (nothing sees the fault), a
# tenant's repair request (报修, by phone or at the front desk), a maintenance plan.
TicketSource = Literal["alert", "manual", "tenant", "preventive"]
TICKET_SOURCES: tuple[TicketSource, ...] = ("alert", "manual", "tenant", "preventive")
REQUESTER_MAX = 200  # characters of tickets.requester

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
# D4: a new episode this soon after its ticket was resolved or closed reopens that ticket.
DEFAULT_REOPEN_WINDOW = timedelta(hours=24)
# T4: fault classes whose ticket facmon itself resolves when the alert resolves (a device that
# answers again needs no repair); every other class only gets a "condition cleared" note.
AUTO_RESOLVE_CLASSES: frozenset[str] = frozenset({"communication_loss", "gateway_offline"})
_MIGRATIONS = Path(__file__).parent / "migrations"
# Serialises concurrent schema upgrades of one PostgreSQL database (any constant works).
_PG_MIGRATION_LOCK = 0x66AC_0005

# A transaction that lost a race is retried this many times in all.
_ATTEMPTS = 3


def _utc(t: datetime) -> datetime:
    # Records built from the values passed in (not re-read) must be UTC too.
    if t.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware time")
    return t.astimezone(UTC)


def check_page(limit: int, offset: int) -> None:
    """Raise ValueError unless ``limit`` and ``offset`` ask for a page the list methods serve."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    if offset < 0:
        raise ValueError("offset must not be negative")


def newest_page(
    s: Session,
    row: type[_R],
    where: Sequence[ColumnElement[bool]],
    newest_first: tuple[UnaryExpression[Any], ...],
    convert: Callable[[_R], T],
    limit: int,
    offset: int,
) -> Page[T]:
    """One page of the ``row`` rows matching every condition of ``where``, in the order
    ``newest_first`` (which ends with the id, so pages never overlap), converted, and the total
    that match. The caller has checked the page (:func:`check_page`)."""
    total = s.scalar(select(func.count()).select_from(row).where(*where)) or 0
    rows = s.scalars(select(row).where(*where).order_by(*newest_first).limit(limit).offset(offset))
    return Page(tuple(convert(r) for r in rows), total, limit, offset)


def _ticket_to_change(s: Session, ticket_id: int) -> _TicketRow:
    """The ticket's row, locked for the transaction; raises TicketTransitionError (missing)
    for an unknown ticket."""
    # FOR UPDATE (ignored by SQLite, which serialises writers anyway) keeps two people from
    # moving one ticket past each other.
    row = s.scalars(select(_TicketRow).where(_TicketRow.id == ticket_id).with_for_update()).first()
    if row is None:
        raise TicketTransitionError(f"no ticket {ticket_id}", missing=True)
    return row


def priority_for(severity: str) -> Priority:
    """Ticket priority of an alert severity (critical -> P1, major -> P2, others -> P3)."""
    return PRIORITY_BY_SEVERITY.get(severity, DEFAULT_PRIORITY)


def due_time(created_at: datetime, priority: Priority) -> datetime:
    """When a ticket of ``priority`` created at ``created_at`` is due (T1) under the default
    service levels; a site's own come from :class:`SlaPolicy`."""
    return created_at + SLA_BY_PRIORITY[priority]


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """How long a ticket has from creation to "resolved" (T1), per priority, with per fault
    class exceptions (e.g. an entrapment P1 within 1 h instead of 4 h)."""

    by_priority: Mapping[Priority, timedelta] = field(default_factory=lambda: SLA_BY_PRIORITY)
    by_class: Mapping[str, Mapping[Priority, timedelta]] = field(default_factory=dict)

    def within(self, priority: Priority, fault_class: str) -> timedelta:
        special = self.by_class.get(fault_class, {})
        return special.get(priority) or self.by_priority.get(priority) or SLA_BY_PRIORITY[priority]

    def due(self, created_at: datetime, priority: Priority, fault_class: str) -> datetime:
        return created_at + self.within(priority, fault_class)


class AlertState(StrEnum):
    """States of an alert instance. INACTIVE is never stored: it is the absence of a row.

    RECOVERING: the clear level was reached and ``keep_firing_for`` (or the chatter hold) runs;
    NODATA: the episode continues but no sample arrived for ``stale_after`` (A8).
    """

    INACTIVE = "INACTIVE"
    PENDING = "PENDING"
    FIRING = "FIRING"
    RECOVERING = "RECOVERING"
    NODATA = "NODATA"
    RESOLVED = "RESOLVED"


class TicketTransitionError(ValueError):
    """A ticket status change that the lifecycle does not allow, or an unknown ticket.

    ``current`` is the ticket's status when the lifecycle refused the change (None for other
    refusals), ``number`` its work-order number, and ``missing`` tells an unknown ticket apart:
    callers turn these into messages for the person who tried.
    """

    def __init__(
        self,
        message: str,
        *,
        number: str | None = None,
        current: TicketStatus | None = None,
        missing: bool = False,
    ) -> None:
        super().__init__(message)
        self.number = number
        self.current = current
        self.missing = missing


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
# The models below and alerts/migrations must agree; a test compares the migrated schema with
# them, so a column added here without a revision fails the suite.
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
    # Start of the current RECOVERING spell (A5, A6); None in every other state.
    recovering_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Fire/clear cycles within this episode; more than one means the condition chattered (A12).
    cycles: Mapped[int] = mapped_column(Integer, default=0)
    # Held open because it chattered (A12): resolves only after a quiet chatter window.
    chattering: Mapped[bool] = mapped_column(Boolean, default=False)
    # The latest acknowledgement (A10); it changes no state.
    acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acked_by: Mapped[str | None] = mapped_column(String(64))
    # Not a foreign key: tickets.source_alert_id already points the other way, and a cycle of
    # foreign keys needs ALTER TABLE ADD CONSTRAINT, which SQLite does not have.
    ticket_id: Mapped[int | None] = mapped_column(Integer)
    # The latest shelve (A11): only a flag for notifications, evaluation goes on. An unshelve
    # ends it early by moving shelved_until to that moment; who and why stay for the record.
    shelved_by: Mapped[str | None] = mapped_column(String(64))
    shelved_reason: Mapped[str | None] = mapped_column(Text)
    shelved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    shelved_until: Mapped[datetime | None] = mapped_column(UtcDateTime)

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
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Times the ticket came back within the reopen window: repeat repairs (D4).
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # One of TICKET_SOURCES; a tenant ticket needs a follow-up call before it closes (T5).
    source: Mapped[str] = mapped_column(String(16), server_default="alert")
    # Who asked, for a tenant's request: name, unit and phone as the service desk wrote them.
    requester: Mapped[str | None] = mapped_column(String(200))

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


# The schema the migrations must produce (alerts/migrations/env.py compares against it).
metadata = _Base.metadata


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
    recovering_since: datetime | None = None
    cycles: int = 0
    chattering: bool = False
    acked_at: datetime | None = None
    acked_by: str | None = None
    shelved_by: str | None = None
    shelved_reason: str | None = None
    shelved_at: datetime | None = None
    shelved_until: datetime | None = None


def is_shelved(alert: AlertRecord, now: datetime) -> bool:
    """Whether ``alert`` is shelved at ``now`` (A11): notifications and escalation stay quiet
    for it, while the engine goes on evaluating and recording it."""
    return (
        alert.shelved_at is not None
        and alert.shelved_until is not None
        and alert.shelved_at <= now < alert.shelved_until
    )


# No slots: with them, calling an alias such as TicketPage(...) fails in typing (it sets
# __orig_class__ on the instance).
@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list (alerts, tickets, silences) and the total that match its filters."""

    items: tuple[T, ...]
    total: int
    limit: int
    offset: int


AlertPage = Page[AlertRecord]


class ActionRefused(ValueError):
    """A person's action that cannot be done: ``missing`` for an unknown record, ``parameter``
    names the input at fault, neither when the record's state refuses it."""

    def __init__(
        self, message: str, *, missing: bool = False, parameter: str | None = None
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.parameter = parameter


class AlertActionError(ActionRefused):
    """A person's action on an alert (shelve, unshelve) that cannot be done: ``missing`` for an
    unknown alert, ``parameter`` names the input at fault, neither when the alert's state
    refuses it (e.g. already resolved)."""


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """What an alert asks of the ticket system when it fires (T1), or what a person reports
    by hand (``source`` "manual" or "tenant"). Raises ValueError when the fields disagree."""

    title: str
    device: str
    building: str
    fault_class: str
    severity: str
    note: str = ""
    # A fixed deadline instead of created + SLA: a preventive job is due on its scheduled date.
    due_at: datetime | None = None
    # False: never reopen a recently finished ticket (D4); each preventive job is a new one.
    reopens: bool = True
    source: TicketSource = "alert"
    # A tenant's name, unit and phone as one line; required for source "tenant".
    requester: str | None = None
    # ``who`` of the "created" (or occurrence) event: the person who reported it by hand.
    created_by: str = SYSTEM_ACTOR
    # People reporting by hand choose P1..P3 directly; None: from the severity (T1).
    priority: Priority | None = None

    def __post_init__(self) -> None:
        if self.source not in TICKET_SOURCES:
            raise ValueError(f"unknown ticket source {self.source!r}")
        if self.priority is not None and self.priority not in PRIORITIES:
            raise ValueError(f"unknown priority {self.priority!r}")
        if self.source == "tenant" and not (self.requester or "").strip():
            raise ValueError("a tenant's repair request needs the requester (T5 follow-up)")
        if self.requester is not None and len(self.requester) > REQUESTER_MAX:
            raise ValueError(f"requester is longer than {REQUESTER_MAX} characters")
        if not self.created_by.strip():
            raise ValueError("a ticket needs who created it (T2)")

    @property
    def effective_priority(self) -> Priority:
        """The ticket's priority: the one chosen, else the severity's (T1)."""
        return self.priority if self.priority is not None else priority_for(self.severity)


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
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    reopen_count: int = 0
    source: TicketSource = "alert"
    requester: str | None = None

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


TicketPage = Page[TicketRecord]


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
        recovering_since=row.recovering_since,
        cycles=row.cycles or 0,
        chattering=bool(row.chattering),
        acked_at=row.acked_at,
        acked_by=row.acked_by,
        shelved_by=row.shelved_by,
        shelved_reason=row.shelved_reason,
        shelved_at=row.shelved_at,
        shelved_until=row.shelved_until,
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
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        reopen_count=row.reopen_count or 0,
        source=cast(TicketSource, row.source or "alert"),  # only ever written from TICKET_SOURCES
        requester=row.requester,
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
def upgrade_schema(engine: Any) -> None:
    """Bring the database at ``engine`` to the newest schema (Alembic ``upgrade head``)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes starting together must not both create the tables.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        tables = set(inspect(conn).get_table_names())
        if "alerts" in tables and "alembic_version" not in tables:
            # Made by create_all before the migrations existed: refuse rather than guess.
            raise RuntimeError(
                "the ticket database predates its migrations (tables but no alembic_version); "
                "move it away so facmon can create a new one"
            )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class TicketStore:
    """Alert state and tickets in the database at ``url`` (any SQLAlchemy URL; tested with
    ``sqlite:///path`` and ``postgresql+psycopg://...``). The schema is migrated to the newest
    revision on open. ``reopen_window``: see D4 and :data:`DEFAULT_REOPEN_WINDOW`; ``sla``:
    due times (T1), the defaults of :data:`SLA_BY_PRIORITY` when None. A site's store comes
    from :meth:`for_site`."""

    @classmethod
    def for_site(cls, config: SiteConfig) -> TicketStore:
        """The ticket database of ``config`` with its reopen window and service levels."""
        t = config.tickets
        sla = SlaPolicy(
            by_priority={**SLA_BY_PRIORITY, **t.sla},
            by_class={k: dict(v) for k, v in t.sla_by_class.items()},
        )
        return cls(config.tickets_url, reopen_window=t.reopen_window, sla=sla)

    def due(self, created_at: datetime, priority: Priority, fault_class: str) -> datetime:
        """When a ticket of ``priority`` and ``fault_class`` created then is due (T1)."""
        return self._sla.due(created_at, priority, fault_class)

    def __init__(
        self,
        url: str,
        *,
        reopen_window: timedelta = DEFAULT_REOPEN_WINDOW,
        sla: SlaPolicy | None = None,
    ) -> None:
        if reopen_window < timedelta(0):
            raise ValueError("reopen_window must not be negative")
        self._reopen_window = reopen_window
        self._sla = sla or SlaPolicy()
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
        try:
            upgrade_schema(self._engine)
        except BaseException:
            self._engine.dispose()
            raise
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def close(self) -> None:
        self._engine.dispose()

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Transactions on this database, for the modules that share its schema (paging)."""
        return self._sessions

    # -- alerts -------------------------------------------------------------------------------
    def unresolved_alerts(self) -> list[AlertRecord]:
        """Every alert not yet resolved (PENDING, FIRING, RECOVERING, NODATA): the engine's
        state after a restart (A13)."""
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
        """End the episode (FIRING, RECOVERING or NODATA -> RESOLVED). An alert resolving never
        closes its ticket: it notes "condition cleared", and resolves the ticket only for the
        fault classes in :data:`AUTO_RESOLVE_CLASSES` (T4). Raises :class:`AlertConflict` if
        the alert is no longer in ``alert.state``."""
        at = _utc(at)

        def txn(s: Session) -> AlertRecord:
            self._transition(
                s,
                alert,
                alert.state,
                state=AlertState.RESOLVED.value,
                resolved_at=at,
                recovering_since=None,
                last_value=value,
            )
            if alert.ticket_id is not None:
                note_ = note or "condition cleared"
                self._add_event(s, alert.ticket_id, at, "condition_cleared", note_, alert.id)
                ticket = s.get(_TicketRow, alert.ticket_id)
                if (
                    ticket is not None
                    and ticket.fault_class in AUTO_RESOLVE_CLASSES
                    and TicketStatus(ticket.status) in OPEN_STATUSES
                ):
                    self._set_status(
                        s, ticket, TicketStatus.RESOLVED, at, SYSTEM_ACTOR, note_, alert.id
                    )
            row = s.get(_AlertRow, alert.id, populate_existing=True)
            assert row is not None
            return _alert(row)

        return self._write(alert, txn)

    def move_alert(
        self,
        alert: AlertRecord,
        at: datetime,
        state: AlertState,
        *,
        value: float | None = None,
        recovering_since: datetime | None = None,
        cycles: int | None = None,
        chattering: bool | None = None,
        severity: str | None = None,
    ) -> AlertRecord:
        """Change an unresolved alert's state or fields within its episode (FIRING <->
        RECOVERING, NODATA, a severity rise). No ticket is opened: the episode has one already.
        A higher ``severity`` raises the ticket's priority (A9). Raises :class:`AlertConflict`
        if the alert is no longer in ``alert.state``."""
        if state in (AlertState.INACTIVE, AlertState.PENDING, AlertState.RESOLVED):
            raise ValueError(f"move_alert cannot enter {state.value}")
        at = _utc(at)
        values: dict[str, Any] = {
            "state": state.value,
            "recovering_since": _utc(recovering_since) if recovering_since else None,
        }
        if value is not None:
            values["last_value"] = value
        if cycles is not None:
            values["cycles"] = cycles
        if chattering is not None:
            values["chattering"] = chattering
        if severity is not None:
            values["severity"] = severity

        def txn(s: Session) -> AlertRecord:
            self._transition(s, alert, alert.state, **values)
            if severity is not None and alert.ticket_id is not None:
                ticket = s.get(_TicketRow, alert.ticket_id)
                priority = priority_for(severity)
                if (
                    ticket is not None
                    and TicketStatus(ticket.status) in OPEN_STATUSES
                    and priority < ticket.priority
                ):
                    note = f"severity {severity}: priority {ticket.priority} -> {priority}"
                    due = min(
                        ticket.due_at, self.due(ticket.created_at, priority, ticket.fault_class)
                    )
                    s.execute(
                        update(_TicketRow)
                        .where(_TicketRow.id == ticket.id)
                        .values(priority=priority, due_at=due)
                    )
                    self._add_event(s, ticket.id, at, "priority_raised", note, alert.id)
            row = s.get(_AlertRow, alert.id, populate_existing=True)
            assert row is not None
            return _alert(row)

        return self._write(alert, txn)

    def acknowledge_alert(
        self, alert: AlertRecord, who: str, at: datetime, note: str = ""
    ) -> AlertRecord:
        """Record that ``who`` saw the alert (A10): no state changes; its ticket gets an
        ``alert_acknowledged`` event. Raises :class:`AlertConflict` if the alert moved."""
        if not who.strip():
            raise ValueError("an acknowledgement needs who gave it")
        at = _utc(at)

        def txn(s: Session) -> AlertRecord:
            self._transition(s, alert, alert.state, acked_at=at, acked_by=who)
            if alert.ticket_id is not None:
                text_ = note or f"alert {alert.rule_id} acknowledged ({alert.state.value})"
                self._add_event(
                    s, alert.ticket_id, at, "alert_acknowledged", text_, alert.id, who=who
                )
            row = s.get(_AlertRow, alert.id, populate_existing=True)
            assert row is not None
            return _alert(row)

        return self._write(alert, txn)

    # -- alerts as people see them: list, shelve (A11) ----------------------------------------
    def get_alert(self, alert_id: int) -> AlertRecord | None:
        with self._sessions() as s:
            row = s.get(_AlertRow, alert_id)
            return _alert(row) if row is not None else None

    def list_alerts(
        self,
        *,
        states: Collection[AlertState] | None = None,
        severities: Collection[str] | None = None,
        building: str | None = None,
        device: str | None = None,
        rule_id: str | None = None,
        shelved: bool | None = None,
        acknowledged: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        now: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> AlertPage:
        """Alerts, the newest episode first, filtered; one page of them and the total that match.

        ``since`` / ``until``: episodes that overlap ``[since, until)`` (started before
        ``until``, not resolved before ``since``). ``shelved`` is judged at ``now``, which it
        needs. ``acknowledged``: someone acknowledged the episode at least once.
        """
        check_page(limit, offset)
        a = _AlertRow
        where: list[ColumnElement[bool]] = []
        if states is not None:
            where.append(a.state.in_(sorted(s.value for s in states)))
        if severities is not None:
            where.append(a.severity.in_(sorted(severities)))
        if building is not None:
            where.append(a.building == building)
        if device is not None:
            where.append(a.device == device)
        if rule_id is not None:
            where.append(a.rule_id == rule_id)
        if acknowledged is not None:
            where.append(a.acked_at.is_not(None) if acknowledged else a.acked_at.is_(None))
        if since is not None:
            where.append(a.resolved_at.is_(None) | (a.resolved_at >= _utc(since)))
        if until is not None:
            where.append(a.started_at < _utc(until))
        if shelved is not None:
            if now is None:
                raise ValueError("the shelved filter needs now")
            now = _utc(now)
            # Same test as is_shelved, in SQL: a NULL in either column means "not shelved".
            on = a.shelved_at.is_not(None) & (a.shelved_at <= now) & (a.shelved_until > now)
            where.append(on if shelved else ~on | a.shelved_at.is_(None))
        order = (a.started_at.desc(), a.id.desc())
        with self._sessions() as s:
            return newest_page(s, a, where, order, _alert, limit, offset)

    def shelve_alert(
        self,
        alert_id: int,
        who: str,
        reason: str,
        until: datetime,
        now: datetime,
        *,
        max_shelve: timedelta,
    ) -> AlertRecord:
        """``who`` shelves the unresolved alert ``alert_id`` until ``until`` because of
        ``reason`` (A11); all three are required and ``until`` is at most ``max_shelve`` away.
        Shelving again replaces the earlier shelve. Only a flag: the engine goes on evaluating
        and recording the alert. Audit: the alert row keeps who, why, when and until; the
        alert's ticket, if it has one, gets an ``alert_shelved`` event. Raises
        :class:`AlertActionError`."""
        who, reason = who.strip(), reason.strip()
        if not who:
            raise AlertActionError("shelving an alert needs who does it", parameter="who")
        if not reason:
            raise AlertActionError("shelving an alert needs a reason", parameter="reason")
        now, until = _utc(now), _utc(until)
        if until <= now:
            raise AlertActionError("a shelve must end in the future", parameter="until")
        if until - now > max_shelve:
            raise AlertActionError(
                f"an alert can be shelved for at most {max_shelve}", parameter="until"
            )
        note = f"shelved until {until.isoformat()}: {reason}"
        values = {
            "shelved_by": who,
            "shelved_reason": reason,
            "shelved_at": now,
            "shelved_until": until,
        }
        return self._shelve_write(alert_id, now, who, values, "alert_shelved", note, True)

    def unshelve_alert(self, alert_id: int, who: str, now: datetime, note: str = "") -> AlertRecord:
        """End the shelve of ``alert_id`` now, as ``who``; its ticket, if any, gets an
        ``alert_unshelved`` event. Raises :class:`AlertActionError` if it is not shelved."""
        who = who.strip()
        if not who:
            raise AlertActionError("unshelving an alert needs who does it", parameter="who")
        now = _utc(now)
        text_ = "unshelved" + (f": {note.strip()}" if note.strip() else "")
        values = {"shelved_until": now}
        return self._shelve_write(alert_id, now, who, values, "alert_unshelved", text_, False)

    def _shelve_write(
        self,
        alert_id: int,
        now: datetime,
        who: str,
        values: Mapping[str, Any],
        kind: str,
        note: str,
        shelving: bool,
    ) -> AlertRecord:
        with self._sessions.begin() as s:
            row = s.scalars(select(_AlertRow).where(_AlertRow.id == alert_id)).first()
            if row is None:
                raise AlertActionError(f"no alert {alert_id}", missing=True)
            if shelving and row.resolved_at is not None:
                raise AlertActionError(
                    f"alert {alert_id} is resolved; only an unresolved alert can be shelved"
                )
            if not shelving and not is_shelved(_alert(row), now):
                raise AlertActionError(f"alert {alert_id} is not shelved")
            where = [_AlertRow.id == alert_id]
            if shelving:
                # The engine may resolve it meanwhile (it never touches these columns).
                where.append(_AlertRow.resolved_at.is_(None))
            if _rowcount(s.execute(update(_AlertRow).where(*where).values(**values))) != 1:
                raise AlertActionError(f"alert {alert_id} was resolved meanwhile")
            if row.ticket_id is not None:
                text_ = f"alert {row.rule_id} {note}"
                self._add_event(s, row.ticket_id, now, kind, text_, row.id, who=who)
            log.info("%s: alert %d (%s on %s) by %s", kind, row.id, row.rule_id, row.device, who)
            fresh = s.get(_AlertRow, alert_id, populate_existing=True)
            assert fresh is not None
            return _alert(fresh)

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

    def resolve_ticket(
        self, ticket_id: int, now: datetime, who: str, note: str = ""
    ) -> TicketRecord:
        """Mark the repair done (any open status -> RESOLVED), as ``who`` (T2)."""
        return self._change_status(ticket_id, TicketStatus.RESOLVED, now, who, note)

    def close_ticket(self, ticket_id: int, now: datetime, who: str, note: str) -> TicketRecord:
        """RESOLVED -> CLOSED after verification; the verification note is required, and a
        tenant's ticket also needs a follow-up since its last resolution (T5)."""
        if not note.strip():
            raise TicketTransitionError("closing a ticket needs a verification note (T5)")
        return self._change_status(ticket_id, TicketStatus.CLOSED, now, who, note)

    def record_follow_up(self, ticket_id: int, now: datetime, who: str, note: str) -> TicketRecord:
        """A ``follow_up`` event on a RESOLVED or CLOSED ticket: ``who`` called the requester
        back after the repair (回访) and ``note`` (required) says what they said (T2, T5). The
        status stays; a tenant's ticket may be closed after it."""
        if not note.strip():
            raise TicketTransitionError("a follow-up needs a note: what the requester said (T5)")
        return self._change_status(ticket_id, None, now, who, note.strip(), kind="follow_up")

    def assign_ticket(
        self, ticket_id: int, now: datetime, who: str, assignee: str, note: str = ""
    ) -> TicketRecord:
        """NEW, REOPENED, ASSIGNED or ACCEPTED -> ASSIGNED to ``assignee`` (T2). Reassigning an
        accepted ticket hands it to someone who has not accepted it yet."""
        if not assignee.strip():
            raise TicketTransitionError("assigning a ticket needs whom it goes to")
        text_ = f"assigned to {assignee.strip()}" + (f": {note.strip()}" if note.strip() else "")
        return self._change_status(ticket_id, TicketStatus.ASSIGNED, now, who, text_)

    def accept_ticket(
        self, ticket_id: int, now: datetime, who: str, note: str = ""
    ) -> TicketRecord:
        """NEW, REOPENED or ASSIGNED -> ACCEPTED: ``who`` acknowledges and takes the job (T2)."""
        return self._change_status(ticket_id, TicketStatus.ACCEPTED, now, who, note)

    def record_arrival(
        self, ticket_id: int, now: datetime, who: str, note: str = ""
    ) -> TicketRecord:
        """An ``arrived`` event on an ACCEPTED, IN_PROGRESS or ON_HOLD ticket: ``who`` is on
        site (T2). The status stays: arriving is not yet working."""
        return self._change_status(ticket_id, None, now, who, note, kind="arrived")

    def start_work(self, ticket_id: int, now: datetime, who: str, note: str = "") -> TicketRecord:
        """ACCEPTED -> IN_PROGRESS (T2 "work started")."""
        return self._change_status(
            ticket_id, TicketStatus.IN_PROGRESS, now, who, note, kind="started"
        )

    def hold_ticket(
        self, ticket_id: int, now: datetime, who: str, reason: str, resume_at: datetime
    ) -> TicketRecord:
        """IN_PROGRESS -> ON_HOLD with a reason and the expected resume time (T3), both in the
        event's note; ``resume_at`` keeps the offset it is given (site-local reads best)."""
        if not reason.strip():
            raise TicketTransitionError("putting a ticket on hold needs a reason (T3)")
        if resume_at.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware time")
        text_ = f"{reason.strip()} (expected resume {resume_at.isoformat(timespec='minutes')})"
        return self._change_status(ticket_id, TicketStatus.ON_HOLD, now, who, text_)

    def resume_work(self, ticket_id: int, now: datetime, who: str, note: str = "") -> TicketRecord:
        """ON_HOLD -> IN_PROGRESS; the ``on_hold`` .. ``resumed`` events bound the hold (T3)."""
        return self._change_status(
            ticket_id, TicketStatus.IN_PROGRESS, now, who, note, kind="resumed"
        )

    def cancel_ticket(self, ticket_id: int, now: datetime, who: str, reason: str) -> TicketRecord:
        """NEW, REOPENED, ASSIGNED or ACCEPTED -> CANCELLED, with a reason: work never started."""
        if not reason.strip():
            raise TicketTransitionError("cancelling a ticket needs a reason")
        return self._change_status(ticket_id, TicketStatus.CANCELLED, now, who, reason.strip())

    def reopen_ticket(self, ticket_id: int, now: datetime, who: str, note: str) -> TicketRecord:
        """RESOLVED or CLOSED -> REOPENED by hand: the repair did not hold. Like a reopening by
        a new episode (D4) it counts as a repeat repair (a ``reopened`` event, reopen_count + 1)
        with a new due time; unlike it, it adds no occurrence. ``note`` (why) is required.
        Refused while another ticket of the same device and fault class is open (D4)."""
        note, who = note.strip(), who.strip()
        if not note:
            raise TicketTransitionError("reopening a ticket needs a note saying why")
        if not who:
            raise TicketTransitionError("a ticket change needs who made it (T2)")
        now = _utc(now)
        found: tuple[str, str, str | None] | None = None  # device, fault class, number
        try:
            with self._sessions.begin() as s:
                row = _ticket_to_change(s, ticket_id)
                current = TicketStatus(row.status)
                if current not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
                    raise TicketTransitionError(
                        f"ticket {row.number} is {current.value}; cannot become REOPENED",
                        number=row.number,
                        current=current,
                    )
                found = (row.device, row.fault_class, row.number)
                res = s.execute(
                    update(_TicketRow)
                    .where(_TicketRow.id == row.id, _TicketRow.status == current.value)
                    .values(
                        status=TicketStatus.REOPENED.value,
                        reopen_count=_TicketRow.reopen_count + 1,
                        due_at=self.due(now, cast(Priority, row.priority), row.fault_class),
                        resolved_at=None,
                        closed_at=None,
                    )
                )
                if _rowcount(res) != 1:
                    raise TicketTransitionError(
                        f"ticket {row.number} changed meanwhile; try again", number=row.number
                    )
                text_ = f"reopened by hand after {current.value.lower()} (repeat repair): {note}"
                self._add_event(s, row.id, now, "reopened", text_, None, who=who)
                s.flush()
                fresh = s.get(_TicketRow, row.id, populate_existing=True)
                assert fresh is not None
                return _ticket(fresh)
        except IntegrityError:
            # D4's unique index: the device has another open ticket for this fault class.
            assert found is not None
            device, fault, number = found
            with self._sessions() as s:
                other = s.scalars(
                    select(_TicketRow.number).where(
                        _TicketRow.device == device,
                        _TicketRow.fault_class == fault,
                        _TicketRow.status.not_in([st.value for st in DONE_STATUSES]),
                    )
                ).first()
            raise TicketTransitionError(
                f"ticket {number} cannot be reopened: {other or 'another ticket'} is already "
                f"open for {device} ({fault})",
                number=number,
            ) from None

    def _change_status(
        self,
        ticket_id: int,
        to: TicketStatus | None,
        now: datetime,
        who: str,
        note: str,
        *,
        kind: str | None = None,
    ) -> TicketRecord:
        # ``kind`` names the move (and its event) where the target status alone does not: two
        # moves lead to IN_PROGRESS, and arriving on site changes no status at all.
        if kind is None:
            assert to is not None
            kind = to.value.lower()
        if not who.strip():
            raise TicketTransitionError("a ticket change needs who made it (T2)")
        now = _utc(now)
        with self._sessions.begin() as s:
            row = _ticket_to_change(s, ticket_id)
            current = TicketStatus(row.status)
            if current not in TICKET_MOVES[kind][1]:
                target = f"become {to.value}" if to is not None else f"record {kind!r}"
                raise TicketTransitionError(
                    f"ticket {row.number} is {current.value}; cannot {target}",
                    number=row.number,
                    current=current,
                )
            if kind == "closed" and row.source == "tenant" and not _followed_up(s, row.id):
                raise TicketTransitionError(
                    f"ticket {row.number} is a tenant's repair request: record the follow-up "
                    "call with the tenant (回访) before closing it (T5)",
                    number=row.number,
                )
            if to is None:
                self._add_event(s, row.id, now, kind, note, None, who=who)
            else:
                self._set_status(s, row, to, now, who, note, None, kind=kind)
            s.flush()
            s.refresh(row)
            return _ticket(row)

    def _set_status(
        self,
        s: Session,
        row: _TicketRow,
        to: TicketStatus,
        at: datetime,
        who: str,
        note: str,
        alert_id: int | None,
        kind: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": to.value}
        if to is TicketStatus.RESOLVED:
            values["resolved_at"] = at
        elif to is TicketStatus.CLOSED:
            values["closed_at"] = at
        s.execute(update(_TicketRow).where(_TicketRow.id == row.id).values(**values))
        self._add_event(s, row.id, at, kind or to.value.lower(), note, alert_id, who=who)

    def list_tickets(
        self,
        *,
        status: Collection[TicketStatus] | None = None,
        device: str | None = None,
        building: str | None = None,
        source: Collection[TicketSource] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> TicketPage:
        """Tickets newest first, filtered, one page of them and the total that match."""
        check_page(limit, offset)
        where: list[ColumnElement[bool]] = []
        if status is not None:
            where.append(_TicketRow.status.in_(sorted(s.value for s in status)))
        if device is not None:
            where.append(_TicketRow.device == device)
        if building is not None:
            where.append(_TicketRow.building == building)
        if source is not None:
            where.append(_TicketRow.source.in_(sorted(source)))
        t = _TicketRow
        order = (t.created_at.desc(), t.id.desc())
        with self._sessions() as s:
            return newest_page(s, t, where, order, _ticket, limit, offset)

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
        priority = req.effective_priority
        if row is None:
            reopened = self._reopen(s, req, now, alert_id) if req.reopens else None
            if reopened is not None:
                return reopened
            row = _TicketRow(
                source=req.source,
                requester=req.requester,
                title=req.title,
                device=req.device,
                building=req.building,
                fault_class=req.fault_class,
                priority=priority,
                status=TicketStatus.NEW.value,
                created_at=now,
                due_at=(
                    _utc(req.due_at)
                    if req.due_at is not None
                    else self.due(now, priority, req.fault_class)
                ),
                updated_at=now,
                source_alert_id=alert_id,
                occurrences=1,
            )
            s.add(row)
            s.flush()
            row.number = f"{TICKET_NUMBER_PREFIX}{row.id:06d}"
            self._add_event(
                s, row.id, now, "created", req.note or req.title, alert_id, who=req.created_by
            )
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
        values.update(_tenant_values(row, req))
        if req.source == "tenant":
            note += f"; reported by {req.requester}"
        if priority < row.priority:  # "P1" < "P2": a more severe episode raises the priority
            values["priority"] = priority
            values["due_at"] = min(row.due_at, self.due(row.created_at, priority, row.fault_class))
            note += f"; priority raised {row.priority} -> {priority}"
        s.execute(update(_TicketRow).where(_TicketRow.id == row.id).values(**values))
        self._add_event(s, row.id, now, "occurrence", note, alert_id, who=req.created_by)
        s.flush()
        s.refresh(row)
        log.debug("ticket %s: occurrence %d", row.number, row.occurrences)
        return row

    def _reopen(
        self, s: Session, req: TicketRequest, now: datetime, alert_id: int | None
    ) -> _TicketRow | None:
        """D4: the newest resolved/closed ticket of this device and fault class comes back if
        it was finished less than the reopen window ago; it counts as a repeat repair."""
        prev = s.scalars(
            select(_TicketRow)
            .where(
                _TicketRow.device == req.device,
                _TicketRow.fault_class == req.fault_class,
                _TicketRow.status.in_([TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value]),
            )
            .order_by(_TicketRow.id.desc())
        ).first()
        if prev is None:
            return None
        finished = prev.closed_at or prev.resolved_at
        if finished is None or now - finished > self._reopen_window:
            return None
        priority = min(prev.priority, req.effective_priority)
        # Read before the update: the session synchronises prev to the new status.
        was = prev.status.lower()
        res = s.execute(
            update(_TicketRow)
            .where(_TicketRow.id == prev.id, _TicketRow.status == prev.status)
            .values(
                status=TicketStatus.REOPENED.value,
                occurrences=_TicketRow.occurrences + 1,
                reopen_count=_TicketRow.reopen_count + 1,
                priority=priority,
                # The repeat repair is a new job with its own deadline.
                due_at=self.due(now, cast(Priority, priority), req.fault_class),
                resolved_at=None,
                closed_at=None,
                **_tenant_values(prev, req),
            )
        )
        if _rowcount(res) != 1:
            # Another writer reopened it first: the caller's retry finds it open.
            raise IntegrityError("ticket reopened concurrently", None, Exception("race"))
        note = f"reopened within {self._reopen_window} of {was} (repeat repair)"
        if req.note:
            note += f": {req.note}"
        if req.source == "tenant":
            note += f"; reported by {req.requester}"
        self._add_event(s, prev.id, now, "reopened", note, alert_id, who=req.created_by)
        s.flush()
        s.refresh(prev)
        log.debug("ticket %s reopened", prev.number)
        return prev

    def _add_event(
        self,
        s: Session,
        ticket_id: int,
        at: datetime,
        kind: str,
        note: str,
        alert_id: int | None,
        who: str = SYSTEM_ACTOR,
    ) -> None:
        add_ticket_event(s, ticket_id, at, kind, note, alert_id, who)

    # -- read-only queries for reports and /metrics -------------------------------------------
    @property
    def reopen_window(self) -> timedelta:
        """D4: a new episode this soon after resolution reopens the ticket (a repeat repair)."""
        return self._reopen_window

    def tickets_touching(
        self, start: datetime, end: datetime, *, building: str | None = None
    ) -> list[TicketDetail]:
        """Every ticket that may have been open or changed during ``[start, end)``, each with
        all its events oldest first, in one query (for reports that replay ticket histories).

        That is: created before ``end`` and either open now or updated at or after ``start``
        (every event moves ``updated_at``, so a ticket finished before ``start`` is left out).
        Oldest ticket first. Events outside the range are included: callers clip.
        """
        start, end = _utc(start), _utc(end)
        where: list[ColumnElement[bool]] = [
            _TicketRow.created_at < end,
            _TicketRow.status.in_(sorted(st.value for st in OPEN_STATUSES))
            | (_TicketRow.updated_at >= start),
        ]
        if building is not None:
            where.append(_TicketRow.building == building)
        with self._sessions() as s:
            rows = s.execute(
                select(_TicketRow, _TicketEventRow)
                .outerjoin(_TicketEventRow, _TicketEventRow.ticket_id == _TicketRow.id)
                .where(*where)
                .order_by(_TicketRow.id, _TicketEventRow.at, _TicketEventRow.id)
            ).all()
        out: list[TicketDetail] = []
        current: _TicketRow | None = None
        events: list[TicketEventRecord] = []
        for ticket_row, event_row in rows:
            if current is None or ticket_row.id != current.id:
                if current is not None:
                    out.append(TicketDetail(_ticket(current), tuple(events)))
                current, events = ticket_row, []
            if event_row is not None:
                events.append(_event(event_row))
        if current is not None:
            out.append(TicketDetail(_ticket(current), tuple(events)))
        return out

    def open_ticket_counts(self, now: datetime) -> dict[str, tuple[int, int]]:
        """Open tickets per priority as ``priority -> (open, overdue at now)``; priorities
        without an open ticket are absent."""
        now = _utc(now)
        with self._sessions() as s:
            rows = s.execute(
                select(
                    _TicketRow.priority,
                    func.count(),
                    func.count().filter(_TicketRow.due_at < now),
                )
                .where(_TicketRow.status.in_(sorted(st.value for st in OPEN_STATUSES)))
                .group_by(_TicketRow.priority)
            ).all()
        return {str(p): (int(n), int(late)) for p, n, late in rows}

    def unresolved_alert_counts(self) -> dict[tuple[str, str], int]:
        """Unresolved alerts as ``(severity, state) -> count``."""
        with self._sessions() as s:
            rows = s.execute(
                select(_AlertRow.severity, _AlertRow.state, func.count())
                .where(_AlertRow.resolved_at.is_(None))
                .group_by(_AlertRow.severity, _AlertRow.state)
            ).all()
        return {(str(sev), str(state)): int(n) for sev, state, n in rows}


# Before work starts: a ticket can still be (re)assigned, accepted or cancelled.
_UNSTARTED: frozenset[TicketStatus] = frozenset(
    {TicketStatus.NEW, TicketStatus.REOPENED, TicketStatus.ASSIGNED, TicketStatus.ACCEPTED}
)
# The moves people make (assign_ticket .. close_ticket), by the kind of event each writes (T2):
# kind -> (status it leads to, None when the status stays; statuses it may start from).
TICKET_MOVES: Mapping[str, tuple[TicketStatus | None, frozenset[TicketStatus]]] = {
    "assigned": (TicketStatus.ASSIGNED, _UNSTARTED),
    "accepted": (TicketStatus.ACCEPTED, _UNSTARTED - {TicketStatus.ACCEPTED}),
    "arrived": (
        None,
        frozenset({TicketStatus.ACCEPTED, TicketStatus.IN_PROGRESS, TicketStatus.ON_HOLD}),
    ),
    "started": (TicketStatus.IN_PROGRESS, frozenset({TicketStatus.ACCEPTED})),
    "on_hold": (TicketStatus.ON_HOLD, frozenset({TicketStatus.IN_PROGRESS})),
    "resumed": (TicketStatus.IN_PROGRESS, frozenset({TicketStatus.ON_HOLD})),
    "resolved": (TicketStatus.RESOLVED, OPEN_STATUSES),
    "closed": (TicketStatus.CLOSED, frozenset({TicketStatus.RESOLVED})),
    "cancelled": (TicketStatus.CANCELLED, _UNSTARTED),
    # The call-back after the repair (T5); a closed ticket may still get it written down late.
    "follow_up": (None, frozenset({TicketStatus.RESOLVED, TicketStatus.CLOSED})),
}


def _tenant_values(row: _TicketRow, req: TicketRequest) -> dict[str, Any]:
    """A tenant's request that lands on an existing ticket (D4) makes it a tenant ticket: the
    tenant still gets the call-back before it closes (T5). The first requester stays."""
    if req.source != "tenant":
        return {}
    values: dict[str, Any] = {"source": "tenant"}
    if row.requester is None:
        values["requester"] = req.requester
    return values


def _followed_up(s: Session, ticket_id: int) -> bool:
    """Whether a ``follow_up`` event came after the ticket's last resolution. Event ids, not
    times: they keep the order things were written even when two share a timestamp."""
    ev = _TicketEventRow
    resolved = s.scalar(
        select(func.max(ev.id)).where(ev.ticket_id == ticket_id, ev.kind == "resolved")
    )
    return bool(
        s.scalar(
            select(
                exists().where(
                    ev.ticket_id == ticket_id, ev.kind == "follow_up", ev.id > (resolved or 0)
                )
            )
        )
    )


def add_ticket_event(
    s: Session,
    ticket_id: int,
    at: datetime,
    kind: str,
    note: str,
    alert_id: int | None = None,
    who: str = SYSTEM_ACTOR,
) -> None:
    """Append an event to a ticket's timeline inside the caller's transaction, and let paging
    react to it in that same transaction (the outbox rule of the semantics file): a ticket
    that opens always has its escalation row, an acknowledgement always stops it."""
    # Imported here: alerts.paging builds on this module's schema.
    from alerts.paging import record_ticket_event

    s.add(
        _TicketEventRow(
            ticket_id=ticket_id,
            at=at,
            who=who,
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
    record_ticket_event(s, ticket_id, kind, at, who)


class _Stale(Exception):
    """A compare-and-set update matched no row."""


def _rowcount(res: Any) -> int:
    assert isinstance(res, CursorResult)
    return int(res.rowcount)
