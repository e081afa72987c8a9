"""Ticket status changes, the reopen window and the migrated schema, on a SQLite file and on
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import alerts
from alerts import AlertEngine, TicketStatus, TicketStore
from alerts.tickets import TicketTransitionError, metadata
from tests.alerts.test_engine import T0, r, site_config
from tests.alerts.test_tickets import req


@pytest.fixture
def store(db_url: str) -> Iterator[TicketStore]:
    s = TicketStore(db_url)
    yield s
    s.close()


def _fire_and_clear(engine: AlertEngine, start: timedelta) -> int:
    """One lift_fault episode on el-1; returns the id of the ticket it fired on."""
    out = engine.evaluate([r("el-1", "fault_code", 5, T0 + start)], now=T0 + start)
    t = T0 + start + timedelta(minutes=1)
    engine.evaluate([r("el-1", "fault_code", 0, t)], now=t)
    ticket = out[0].ticket
    assert ticket is not None
    return ticket.id


def test_T2_resolve_and_close_are_events_with_who_and_note(store: TicketStore) -> None:
    t = store.open_or_add_occurrence(req("el-1"), T0)
    done = store.resolve_ticket(t.id, T0 + timedelta(hours=1), "wang", "门机板更换")
    assert done.status is TicketStatus.RESOLVED and done.resolved_at == T0 + timedelta(hours=1)
    closed = store.close_ticket(t.id, T0 + timedelta(hours=2), "li", "验证正常")
    assert closed.status is TicketStatus.CLOSED and closed.closed_at == T0 + timedelta(hours=2)
    detail = store.get_ticket(t.id)
    assert detail is not None
    assert [(e.kind, e.who, e.note) for e in detail.events][1:] == [
        ("resolved", "wang", "门机板更换"),
        ("closed", "li", "验证正常"),
    ]


def test_T2_T5_status_changes_the_lifecycle_does_not_allow_are_refused(
    store: TicketStore,
) -> None:
    t = store.open_or_add_occurrence(req("el-1"), T0)
    with pytest.raises(TicketTransitionError, match="cannot become CLOSED"):
        store.close_ticket(t.id, T0, "li", "ok")  # NEW -> CLOSED skips the repair
    store.resolve_ticket(t.id, T0, "wang")
    with pytest.raises(TicketTransitionError, match="verification note"):
        store.close_ticket(t.id, T0, "li", "  ")
    with pytest.raises(TicketTransitionError, match="who"):
        store.resolve_ticket(t.id, T0, "")
    with pytest.raises(TicketTransitionError, match="cannot become RESOLVED"):
        store.resolve_ticket(t.id, T0, "wang")
    with pytest.raises(TicketTransitionError, match="no ticket"):
        store.resolve_ticket(t.id + 999, T0, "wang")
    detail = store.get_ticket(t.id)
    assert detail is not None and detail.ticket.status is TicketStatus.RESOLVED


def test_D4_reopen_a_new_episode_within_24h_of_closure_reopens_the_ticket(
    store: TicketStore,
) -> None:
    engine = AlertEngine(site_config(), store)
    first = _fire_and_clear(engine, timedelta(0))
    store.resolve_ticket(first, T0 + timedelta(hours=1), "wang", "reset controller")
    store.close_ticket(first, T0 + timedelta(hours=2), "li", "verified")

    out = engine.evaluate(
        [r("el-1", "fault_code", 7, T0 + timedelta(hours=25))], now=T0 + timedelta(hours=25)
    )
    ticket = out[0].ticket
    assert ticket is not None and ticket.id == first
    assert ticket.status is TicketStatus.REOPENED and ticket.is_open
    assert (ticket.reopen_count, ticket.occurrences) == (1, 2)
    assert ticket.closed_at is None and ticket.due_at == T0 + timedelta(hours=29)  # new P1 SLA
    detail = store.get_ticket(first)
    assert detail is not None
    assert [e.kind for e in detail.events][-1] == "reopened"
    assert "of closed (repeat repair)" in detail.events[-1].note
    assert store.list_tickets().total == 1


def test_D4_reopen_window_over_a_new_episode_opens_a_new_ticket(store: TicketStore) -> None:
    engine = AlertEngine(site_config(), store)
    first = _fire_and_clear(engine, timedelta(0))
    store.resolve_ticket(first, T0 + timedelta(hours=1), "wang", "fixed")
    second = _fire_and_clear(engine, timedelta(hours=25, seconds=1))
    assert second != first
    tickets = {t.id: t for t in store.list_tickets().items}
    assert tickets[first].status is TicketStatus.RESOLVED and tickets[first].reopen_count == 0
    assert tickets[second].status is TicketStatus.NEW and tickets[second].occurrences == 1


def test_D4_reopen_window_is_configurable(db_url: str) -> None:
    store = TicketStore(db_url, reopen_window=timedelta(hours=1))
    try:
        a = store.open_or_add_occurrence(req("el-1"), T0)
        store.resolve_ticket(a.id, T0 + timedelta(minutes=10), "wang")
        b = store.open_or_add_occurrence(req("el-1"), T0 + timedelta(minutes=70))
        assert b.id == a.id and b.status is TicketStatus.REOPENED
        store.resolve_ticket(b.id, T0 + timedelta(minutes=80), "wang")
        c = store.open_or_add_occurrence(req("el-1"), T0 + timedelta(minutes=141))
        assert c.id != a.id and c.status is TicketStatus.NEW
        # Another device's episode never reopens it.
        d = store.open_or_add_occurrence(req("el-2"), T0 + timedelta(minutes=142))
        assert d.id not in (a.id, c.id)
    finally:
        store.close()
    with pytest.raises(ValueError, match="reopen_window"):
        TicketStore(db_url, reopen_window=timedelta(hours=-1))


def test_migrations_build_exactly_the_schema_the_code_uses(store: TicketStore, db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, metadata) == []
            scripts = ScriptDirectory(str(Path(alerts.__file__).parent / "migrations"))
            head = scripts.get_current_head()
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == head
    finally:
        engine.dispose()
    # Opening an up-to-date database again changes nothing and keeps the data.
    t = store.open_or_add_occurrence(req("el-1"), T0)
    again = TicketStore(db_url)
    try:
        assert [x.id for x in again.list_tickets().items] == [t.id]
    finally:
        again.close()


def test_a_database_from_before_the_migrations_is_refused_clearly(db_url: str) -> None:
    raw = sa.create_engine(db_url)
    try:
        with raw.begin() as conn:
            conn.execute(sa.text("CREATE TABLE alerts (id INTEGER PRIMARY KEY)"))
    finally:
        raw.dispose()
    with pytest.raises(RuntimeError, match="predates its migrations"):
        TicketStore(db_url)
