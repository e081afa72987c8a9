"""The ticket store on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from alerts import AlertState, TicketStatus, TicketStore
from alerts.tickets import OPEN_STATUSES, AlertConflict, NewAlert, TicketRequest

T0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[TicketStore]:
    s = TicketStore(db_url)
    yield s
    s.close()


def req(
    device: str, fault: str = "elevator_fault", building: str = "A", severity: str = "major"
) -> TicketRequest:
    return TicketRequest(
        title=f"{device} {fault}",
        device=device,
        building=building,
        fault_class=fault,
        severity=severity,
    )


def test_sla_by_priority_and_numbering(store: TicketStore) -> None:
    p1 = store.open_or_add_occurrence(req("el-1", severity="critical"), T0)
    p2 = store.open_or_add_occurrence(req("el-2", severity="major"), T0)
    p3 = store.open_or_add_occurrence(req("el-3", severity="warning"), T0)
    assert [(t.priority, t.due_at - t.created_at) for t in (p1, p2, p3)] == [
        ("P1", timedelta(hours=4)),
        ("P2", timedelta(hours=24)),
        ("P3", timedelta(hours=72)),
    ]
    assert [t.number for t in (p1, p2, p3)] == [f"WO-{t.id:06d}" for t in (p1, p2, p3)]
    assert len({t.number for t in (p1, p2, p3)}) == 3
    assert all(t.status is TicketStatus.NEW and t.is_open for t in (p1, p2, p3))


def test_one_open_ticket_per_device_and_fault_class(store: TicketStore, db_url: str) -> None:
    a = store.open_or_add_occurrence(req("el-1"), T0)
    b = store.open_or_add_occurrence(req("el-1"), T0 + timedelta(minutes=5))
    c = store.open_or_add_occurrence(req("el-1", fault="door_fault"), T0)
    assert b.id == a.id and b.occurrences == 2 and b.updated_at == T0 + timedelta(minutes=5)
    assert c.id != a.id

    # The database itself refuses a second open ticket, whoever writes it.
    raw = sa.create_engine(db_url)
    try:
        with pytest.raises(sa.exc.IntegrityError), raw.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO tickets (title, device, building, fault_class, priority, status,"
                    " created_at, due_at, updated_at, occurrences) VALUES ('x', 'el-1', 'A',"
                    " 'elevator_fault', 'P2', 'ASSIGNED', :t, :t, :t, 1)"
                ),
                {"t": T0.replace(tzinfo=None)},
            )
        # Once the ticket is closed, the next episode opens a new one.
        with raw.begin() as conn:
            conn.execute(sa.text("UPDATE tickets SET status = 'CLOSED' WHERE id = :i"), {"i": a.id})
    finally:
        raw.dispose()
    d = store.open_or_add_occurrence(req("el-1"), T0 + timedelta(hours=1))
    assert d.id != a.id and d.occurrences == 1


def test_one_unresolved_alert_per_fingerprint(store: TicketStore) -> None:
    new = NewAlert("f" * 64, "r1", "site", "A", "el-1", "fault_code", "critical")
    first, ticket = store.start_alert(new, AlertState.FIRING, T0, 5.0, req("el-1"))
    assert ticket is not None and first.ticket_id == ticket.id
    with pytest.raises(AlertConflict) as exc:
        store.start_alert(new, AlertState.FIRING, T0, 6.0, req("el-1"))
    assert exc.value.current == first
    assert len(store.list_tickets().items) == 1  # the loser's ticket was rolled back with it

    resolved = store.resolve_alert(first, T0 + timedelta(minutes=1), 0.0)
    assert resolved.state is AlertState.RESOLVED and resolved.resolved_at == T0 + timedelta(
        minutes=1
    )
    with pytest.raises(AlertConflict):
        store.resolve_alert(first, T0 + timedelta(minutes=2), 0.0)  # no longer FIRING
    again, _ = store.start_alert(new, AlertState.PENDING, T0 + timedelta(minutes=3), 5.0)
    assert again.id != first.id and store.unresolved_alerts() == [again]


def test_a_pending_alert_cannot_open_a_ticket(store: TicketStore) -> None:
    new = NewAlert("e" * 64, "r1", "site", "A", "el-1", "fault_code", "critical")
    with pytest.raises(ValueError, match="A2"):
        store.start_alert(new, AlertState.PENDING, T0, 5.0, req("el-1"))


def test_condition_cleared_is_a_note_not_a_status_change(store: TicketStore) -> None:
    t = store.open_or_add_occurrence(req("el-1"), T0)
    store.note_condition_cleared(t.id, T0 + timedelta(minutes=3))
    detail = store.get_ticket(t.id)
    assert detail is not None
    assert detail.ticket.status is TicketStatus.NEW
    assert [(e.kind, e.who, e.note) for e in detail.events] == [
        ("created", "facmon", "el-1 elevator_fault"),
        ("condition_cleared", "facmon", "condition cleared"),
    ]
    assert store.get_ticket(t.id + 1000) is None


def test_list_filters_and_pagination(store: TicketStore) -> None:
    for i in range(7):
        store.open_or_add_occurrence(
            req(f"el-{i}", building="A" if i < 5 else "B"), T0 + timedelta(minutes=i)
        )
    page = store.list_tickets(limit=3, offset=0)
    assert page.total == 7 and (page.limit, page.offset) == (3, 0)
    assert [t.device for t in page.items] == ["el-6", "el-5", "el-4"]  # newest first
    page = store.list_tickets(limit=3, offset=6)
    assert [t.device for t in page.items] == ["el-0"] and page.total == 7

    assert store.list_tickets(building="B").total == 2
    assert [t.device for t in store.list_tickets(device="el-3").items] == ["el-3"]
    assert store.list_tickets(status=OPEN_STATUSES).total == 7
    assert store.list_tickets(status={TicketStatus.CLOSED}).total == 0
    assert store.list_tickets(status={TicketStatus.NEW}, building="A", limit=2).total == 5

    with pytest.raises(ValueError):
        store.list_tickets(limit=0)
    with pytest.raises(ValueError):
        store.list_tickets(limit=501)
    with pytest.raises(ValueError):
        store.list_tickets(offset=-1)


def test_times_are_aware_utc_whatever_zone_goes_in(store: TicketStore) -> None:
    shanghai = timezone(timedelta(hours=8))
    t = store.open_or_add_occurrence(req("el-1"), datetime(2024, 3, 1, 10, 0, tzinfo=shanghai))
    for value in (t.created_at, t.due_at, t.updated_at):
        assert value.utcoffset() == timedelta(0)
    assert t.created_at == datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
    [page_item] = store.list_tickets().items
    assert page_item.created_at == T0 and page_item.created_at.tzinfo is not None

    with pytest.raises(ValueError, match="naive"):
        store.open_or_add_occurrence(req("el-2"), datetime(2024, 3, 1))


def test_postgres_session_zone_does_not_leak_into_results(pg_url: str) -> None:
    url = pg_url.replace("options=", "options=-ctimezone%3DAsia/Shanghai%20")
    s = TicketStore(url)
    try:
        t = s.open_or_add_occurrence(req("el-1"), T0)
        detail = s.get_ticket(t.id)
        assert detail is not None
        assert detail.ticket.created_at == T0
        assert detail.ticket.created_at.utcoffset() == timedelta(0)
    finally:
        s.close()
