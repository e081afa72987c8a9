"""Silences and maintenance windows: who asked for quiet, about what, why and until when.

A silence selects alerts by labels: device kinds, buildings, devices, device tags, rule ids and
fault classes. Within a matcher an alert must match one of its values (tags: every pair); an
empty matcher matches anything, and at least one matcher must be given, so nobody silences a
whole site by forgetting a field. A maintenance window is a silence with the purpose
``maintenance`` (planned work on the selected equipment); its comment says what the work is.

A silence only ever quiets people: alerts are still evaluated and recorded and tickets still
opened. Escalation asks :func:`silenced` whether a ticket's chain starts or must stop (E2).

Silences live in the ticket database (table ``silences``, migration 0002) and are never
deleted: cancelling one ends it early and records who did it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Index, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from alerts.tickets import (
    ActionRefused,
    Page,
    TicketStore,
    UtcDateTime,
    _AlertRow,
    _Base,
    _rowcount,
    _TicketRow,
    _utc,
    check_page,
    newest_page,
)
from config.models import SiteConfig

SilencePurpose = Literal["silence", "maintenance"]
PURPOSES: tuple[SilencePurpose, ...] = ("silence", "maintenance")
MATCHER_FIELDS = ("kinds", "buildings", "devices", "tags", "rule_ids", "fault_classes")


class SilenceState(StrEnum):
    """Where a silence is at a given time; PENDING: it starts later."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class SilenceError(ActionRefused):
    """A silence that cannot be created or cancelled: ``missing`` for an unknown silence,
    ``parameter`` names the input at fault, neither when its state refuses it."""


class _SilenceRow(_Base):
    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    # {"kinds": [...], "buildings": [...], "devices": [...], "tags": {...}, "rule_ids": [...],
    # "fault_classes": [...]}: a document, because nothing queries inside it in SQL.
    matchers: Mapped[dict[str, Any]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_silences_ends_at", "ends_at"),)


@dataclass(frozen=True, slots=True)
class Matchers:
    """What a silence selects; an empty field matches anything."""

    kinds: tuple[str, ...] = ()
    buildings: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    rule_ids: tuple[str, ...] = ()
    fault_classes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f) for f in MATCHER_FIELDS)

    def matches(
        self,
        *,
        device: str,
        building: str,
        kind: str,
        tags: Mapping[str, str],
        rule_id: str,
        fault_class: str,
    ) -> bool:
        return (
            (not self.kinds or kind in self.kinds)
            and (not self.buildings or building in self.buildings)
            and (not self.devices or device in self.devices)
            and all(tags.get(k) == v for k, v in self.tags.items())
            and (not self.rule_ids or rule_id in self.rule_ids)
            and (not self.fault_classes or fault_class in self.fault_classes)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kinds": list(self.kinds),
            "buildings": list(self.buildings),
            "devices": list(self.devices),
            "tags": dict(self.tags),
            "rule_ids": list(self.rule_ids),
            "fault_classes": list(self.fault_classes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Matchers:
        def strings(name: str) -> tuple[str, ...]:
            return tuple(str(v) for v in data.get(name) or ())

        tags = data.get("tags") or {}
        return cls(
            kinds=strings("kinds"),
            buildings=strings("buildings"),
            devices=strings("devices"),
            tags={str(k): str(v) for k, v in tags.items()},
            rule_ids=strings("rule_ids"),
            fault_classes=strings("fault_classes"),
        )


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    purpose: SilencePurpose
    matchers: Matchers
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None

    @property
    def effective_end(self) -> datetime:
        """When it stops (or stopped) silencing: its end, or its cancellation if earlier."""
        if self.cancelled_at is not None and self.cancelled_at < self.ends_at:
            return self.cancelled_at
        return self.ends_at

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.effective_end

    def state(self, now: datetime) -> SilenceState:
        if self.cancelled_at is not None and self.cancelled_at <= now:
            return SilenceState.CANCELLED
        if now < self.starts_at:
            return SilenceState.PENDING
        return SilenceState.ACTIVE if now < self.ends_at else SilenceState.EXPIRED


SilencePage = Page[Silence]


def silenced(
    silences: Iterable[Silence],
    *,
    device: str,
    building: str,
    kind: str,
    tags: Mapping[str, str],
    rule_id: str,
    fault_class: str,
    now: datetime,
) -> Silence | None:
    """The silence that quiets an alert or ticket with these labels at ``now``, or None.

    ``kind`` and ``tags`` are the device's. When several match, the one that lasts longest
    wins (lowest id on a tie), so "silenced until" is the truth."""
    best: Silence | None = None
    for s in silences:
        if not s.active(now):
            continue
        if not s.matchers.matches(
            device=device,
            building=building,
            kind=kind,
            tags=tags,
            rule_id=rule_id,
            fault_class=fault_class,
        ):
            continue
        if (
            best is None
            or s.effective_end > best.effective_end
            or (s.effective_end == best.effective_end and s.id < best.id)
        ):
            best = s
    return best


def silence_for_ticket(
    s: Session, config: SiteConfig, ticket: _TicketRow, now: datetime
) -> str | None:
    """Why ``ticket`` must not page anyone at ``now`` because a silence or maintenance window
    covers it (E2), in words for its timeline; None when none does. Reads in the caller's
    session so escalation decides on what its own transaction sees."""
    now = _utc(now)
    rows = s.scalars(
        select(_SilenceRow).where(*SilenceStore._state_sql(SilenceState.ACTIVE, now))
    ).all()
    if not rows:
        return None
    alert = s.get(_AlertRow, ticket.source_alert_id) if ticket.source_alert_id else None
    device = next((d for d in config.devices if d.id == ticket.device), None)
    hit = silenced(
        [_silence(r) for r in rows],
        device=ticket.device,
        building=ticket.building,
        kind=device.kind if device is not None else "",
        tags=device.tags if device is not None else {},
        # A ticket opened by hand has no rule: only silences without rule_ids cover it.
        rule_id=alert.rule_id if alert is not None else "",
        fault_class=ticket.fault_class,
        now=now,
    )
    if hit is None:
        return None
    what = "maintenance window" if hit.purpose == "maintenance" else "silence"
    until = hit.effective_end.astimezone(ZoneInfo(config.site.timezone))
    return f"{what} {hit.id} by {hit.created_by} until {until:%Y-%m-%d %H:%M}: {hit.comment}"


def _silence(row: _SilenceRow) -> Silence:
    purpose: SilencePurpose = "maintenance" if row.purpose == "maintenance" else "silence"
    return Silence(
        id=row.id,
        purpose=purpose,
        matchers=Matchers.from_json(row.matchers or {}),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        created_at=row.created_at,
        cancelled_at=row.cancelled_at,
        cancelled_by=row.cancelled_by,
    )


class SilenceStore:
    """Silences in the ticket database of ``tickets`` (same connection pool, same migrations)."""

    def __init__(self, tickets: TicketStore) -> None:
        self._sessions: sessionmaker[Session] = tickets.sessions

    def create(
        self,
        matchers: Matchers,
        *,
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
        now: datetime,
        purpose: SilencePurpose = "silence",
        max_duration: timedelta | None = None,
    ) -> Silence:
        """A new silence (or maintenance window) over ``[starts_at, ends_at)``; it may start
        in the past but must end after ``now``, last at most ``max_duration`` and say who
        made it and why. Raises :class:`SilenceError` naming the field at fault."""
        created_by, comment = created_by.strip(), comment.strip()
        if matchers.empty:
            raise SilenceError(
                "give at least one matcher (kinds, buildings, devices, tags, rule_ids, "
                "fault_classes); a silence of everything is refused",
                parameter="matchers",
            )
        if not created_by:
            raise SilenceError("a silence needs who made it", parameter="created_by")
        if not comment:
            raise SilenceError("a silence needs a comment saying why", parameter="comment")
        if purpose not in PURPOSES:
            raise SilenceError(f"unknown purpose {purpose!r}", parameter="purpose")
        now, starts_at, ends_at = _utc(now), _utc(starts_at), _utc(ends_at)
        if ends_at <= starts_at:
            raise SilenceError("must be after starts_at", parameter="ends_at")
        if ends_at <= now:
            raise SilenceError("must be in the future", parameter="ends_at")
        if max_duration is not None and ends_at - starts_at > max_duration:
            raise SilenceError(f"a silence lasts at most {max_duration}", parameter="ends_at")
        with self._sessions.begin() as s:
            row = _SilenceRow(
                purpose=purpose,
                matchers=matchers.to_json(),
                starts_at=starts_at,
                ends_at=ends_at,
                created_by=created_by,
                comment=comment,
                created_at=now,
            )
            s.add(row)
            s.flush()
            return _silence(row)

    def get(self, silence_id: int) -> Silence | None:
        with self._sessions() as s:
            row = s.get(_SilenceRow, silence_id)
            return _silence(row) if row is not None else None

    def active(self, now: datetime) -> tuple[Silence, ...]:
        """Every silence in force at ``now``: what :func:`silenced` needs."""
        now = _utc(now)
        r = _SilenceRow
        with self._sessions() as s:
            rows = s.scalars(
                select(r).where(*self._state_sql(SilenceState.ACTIVE, now)).order_by(r.id)
            )
            return tuple(_silence(x) for x in rows)

    def list(
        self,
        *,
        now: datetime,
        states: Collection[SilenceState] | None = None,
        purpose: SilencePurpose | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> SilencePage:
        """Silences newest first, filtered by their state at ``now`` and purpose; one page of
        them and the total that match."""
        check_page(limit, offset)
        now = _utc(now)
        r = _SilenceRow
        where: list[ColumnElement[bool]] = []
        if purpose is not None:
            where.append(r.purpose == purpose)
        if states is not None:
            any_of: ColumnElement[bool] | None = None
            for st in states:
                cond = _and(self._state_sql(st, now))
                any_of = cond if any_of is None else (any_of | cond)
            if any_of is None:
                return Page((), 0, limit, offset)
            where.append(any_of)
        order = (r.created_at.desc(), r.id.desc())
        with self._sessions() as s:
            return newest_page(s, r, where, order, _silence, limit, offset)

    def cancel(self, silence_id: int, who: str, now: datetime) -> Silence:
        """End a pending or active silence now, as ``who``. Raises :class:`SilenceError`."""
        who = who.strip()
        if not who:
            raise SilenceError("cancelling a silence needs who does it", parameter="who")
        now = _utc(now)
        with self._sessions.begin() as s:
            row = s.get(_SilenceRow, silence_id)
            if row is None:
                raise SilenceError(f"no silence {silence_id}", missing=True)
            state = _silence(row).state(now)
            if state in (SilenceState.CANCELLED, SilenceState.EXPIRED):
                raise SilenceError(f"silence {silence_id} is already {state.value.lower()}")
            res = s.execute(
                update(_SilenceRow)
                .where(_SilenceRow.id == silence_id, _SilenceRow.cancelled_at.is_(None))
                .values(cancelled_at=now, cancelled_by=who)
            )
            if _rowcount(res) != 1:
                raise SilenceError(f"silence {silence_id} was cancelled meanwhile")
            fresh = s.get(_SilenceRow, silence_id, populate_existing=True)
            assert fresh is not None
            return _silence(fresh)

    @staticmethod
    def _state_sql(state: SilenceState, now: datetime) -> tuple[ColumnElement[bool], ...]:
        # Silence.state in SQL; cancelled_at is always the moment of cancelling (never later).
        r = _SilenceRow
        live = r.cancelled_at.is_(None) | (r.cancelled_at > now)
        match state:
            case SilenceState.CANCELLED:
                return (r.cancelled_at.is_not(None), r.cancelled_at <= now)
            case SilenceState.PENDING:
                return (live, r.starts_at > now)
            case SilenceState.ACTIVE:
                return (live, r.starts_at <= now, r.ends_at > now)
            case SilenceState.EXPIRED:
                return (live, r.ends_at <= now)
        raise AssertionError(state)


def _and(conds: tuple[ColumnElement[bool], ...]) -> ColumnElement[bool]:
    out = conds[0]
    for c in conds[1:]:
        out = out & c
    return out
