"""Tickets people open by hand and tenants' repair requests (报修): where a ticket came from,
who asked, D4 for reports, the follow-up call (回访) a tenant's ticket needs before it closes
(T5), and the 0004 migration of existing tickets; on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from alerts import TicketStatus, TicketStore
from alerts.paging import ACTIVE, CHAIN, _EscalationRow
from alerts.tickets import (
    _MIGRATIONS,
    TICKET_MOVES,
    TicketRequest,
    TicketSource,
    TicketTransitionError,
)
from reports import Period, ReportContext
from reports.maintenance import STATUS_OF_EVENT, maintenance_report
from store.embedded import EmbeddedStore
from tests.api.conftest import site_config

T0 = datetime(2024, 3, 4, 2, 0, tzinfo=UTC)  # 10:00 on 4 March in Asia/Shanghai
H = timedelta(hours=1)
DESK = "前台小张"
TENANT = "张女士 A座1203 138-0000-1234"


@pytest.fixture
def store(db_url: str) -> Iterator[TicketStore]:
    s = TicketStore(db_url)
    yield s
    s.close()


def report(
    fault: str = "door_fault",
    *,
    source: TicketSource = "tenant",
    requester: str | None = TENANT,
    device: str = "el-1",
) -> TicketRequest:
    """A repair request taken at the front desk, as POST /api/v1/tickets builds it."""
    return TicketRequest(
        title=f"{device} 门关不上",
        device=device,
        building="A",
        fault_class=fault,
        severity="minor",
        note="住户来电",
        source=source,
        requester=requester,
        created_by=DESK,
        priority="P2",
    )


def alert_request(fault: str = "door_fault") -> TicketRequest:
    return TicketRequest("el-1 门机故障", "el-1", "A", fault, "critical")


def test_a_manual_ticket_keeps_who_opened_it_and_the_priority_chosen(
    store: TicketStore,
) -> None:
    t = store.open_or_add_occurrence(report(source="manual", requester=None), T0)
    assert (t.source, t.requester, t.priority) == ("manual", None, "P2")  # not minor's P3
    assert t.due_at == T0 + timedelta(hours=24) and t.status is TicketStatus.NEW
    assert t.source_alert_id is None
    detail = store.get_ticket(t.id)
    assert detail is not None
    [created] = detail.events
    assert (created.kind, created.who, created.note) == ("created", DESK, "住户来电")
    # Paging starts as for a ticket an alert opens (E2): its escalation row is there.
    with store.sessions() as sess:
        chains = sess.scalars(
            sa.select(_EscalationRow.kind).where(
                _EscalationRow.ticket_id == t.id, _EscalationRow.state == ACTIVE
            )
        ).all()
    assert chains == [CHAIN]
    # A tenant's request keeps who asked; alert tickets stay "alert" by default.
    tenant = store.open_or_add_occurrence(report("light_out", device="el-2"), T0)
    assert (tenant.source, tenant.requester) == ("tenant", TENANT)
    fired = store.open_or_add_occurrence(alert_request("overcurrent"), T0)
    assert (fired.source, fired.requester, fired.priority) == ("alert", None, "P1")


def test_a_request_that_cannot_be_a_ticket_is_refused() -> None:
    with pytest.raises(ValueError, match="requester"):
        report(requester=None)
    with pytest.raises(ValueError, match="requester"):
        report(requester="   ")
    with pytest.raises(ValueError, match="longer than 200"):
        report(requester="x" * 201)
    with pytest.raises(ValueError, match="source"):
        TicketRequest("t", "el-1", "A", "f", "minor", source="phone")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priority"):
        TicketRequest("t", "el-1", "A", "f", "minor", priority="P0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="who"):
        TicketRequest("t", "el-1", "A", "f", "minor", created_by=" ")


def test_D4_a_tenant_report_on_an_open_alert_ticket_is_an_occurrence_that_owes_a_call(
    store: TicketStore,
) -> None:
    fired = store.open_or_add_occurrence(alert_request(), T0)
    t = store.open_or_add_occurrence(report(), T0 + H)
    assert t.id == fired.id and t.occurrences == 2
    # The tenant still gets the call-back: the ticket became a tenant ticket.
    assert (t.source, t.requester, t.priority) == ("tenant", TENANT, "P1")
    detail = store.get_ticket(t.id)
    assert detail is not None
    occ = detail.events[-1]
    assert (occ.kind, occ.who) == ("occurrence", DESK)
    assert occ.note == f"住户来电; reported by {TENANT}"
    # A second tenant on the same fault: still one ticket, the first requester stays.
    again = store.open_or_add_occurrence(report(requester="李先生 1505"), T0 + 2 * H)
    assert (again.id, again.occurrences, again.requester) == (t.id, 3, TENANT)
    assert store.list_tickets().total == 1


def test_T5_a_tenant_ticket_closes_only_after_the_follow_up_call(store: TicketStore) -> None:
    t = store.open_or_add_occurrence(report(), T0)
    with pytest.raises(TicketTransitionError, match="cannot record 'follow_up'"):
        store.record_follow_up(t.id, T0, "小张", "太早了")  # nothing repaired yet
    store.resolve_ticket(t.id, T0 + H, "wang", "门机皮带更换")
    with pytest.raises(TicketTransitionError, match=r"follow-up call.*\(T5\)") as refused:
        store.close_ticket(t.id, T0 + 2 * H, "li", "现场验证正常")
    assert refused.value.number == t.number and refused.value.current is None
    with pytest.raises(TicketTransitionError, match="needs a note"):
        store.record_follow_up(t.id, T0 + 2 * H, "小张", "  ")
    with pytest.raises(TicketTransitionError, match="who"):
        store.record_follow_up(t.id, T0 + 2 * H, "", "满意")

    after = store.record_follow_up(t.id, T0 + 3 * H, "小张", "张女士确认门已正常，满意")
    assert after.status is TicketStatus.RESOLVED  # the call changes no status
    closed = store.close_ticket(t.id, T0 + 4 * H, "li", "现场验证正常")
    assert closed.status is TicketStatus.CLOSED
    detail = store.get_ticket(t.id)
    assert detail is not None
    assert [(e.kind, e.who, e.note) for e in detail.events][1:] == [
        ("resolved", "wang", "门机皮带更换"),
        ("follow_up", "小张", "张女士确认门已正常，满意"),
        ("closed", "li", "现场验证正常"),
    ]


def test_T5_the_follow_up_must_come_after_the_last_resolution(store: TicketStore) -> None:
    t = store.open_or_add_occurrence(report(), T0)
    store.resolve_ticket(t.id, T0 + H, "wang", "调整门机")
    store.record_follow_up(t.id, T0 + 2 * H, "小张", "满意")
    # The repair did not hold: the first call was about a repair that failed.
    store.reopen_ticket(t.id, T0 + 3 * H, "li", "门又关不上")
    store.resolve_ticket(t.id, T0 + 4 * H, "wang", "更换门机板")
    with pytest.raises(TicketTransitionError, match="T5"):
        store.close_ticket(t.id, T0 + 5 * H, "li", "验证正常")
    store.record_follow_up(t.id, T0 + 5 * H, "小张", "这次好了")
    assert store.close_ticket(t.id, T0 + 6 * H, "li", "验证正常").status is TicketStatus.CLOSED
    # Written down late, on a closed ticket: allowed, and the status stays.
    late = store.record_follow_up(t.id, T0 + 30 * H, "小张", "一周后再次回访，正常")
    assert late.status is TicketStatus.CLOSED and late.updated_at == T0 + 30 * H


def test_manual_and_alert_tickets_close_without_a_follow_up(store: TicketStore) -> None:
    for req in (report(source="manual", requester=None), alert_request("overcurrent")):
        t = store.open_or_add_occurrence(req, T0)
        store.resolve_ticket(t.id, T0 + H, "wang", "fixed")
        assert store.close_ticket(t.id, T0 + 2 * H, "li", "ok").status is TicketStatus.CLOSED


def test_D4_a_tenant_report_soon_after_closure_reopens_and_owes_a_new_call(
    store: TicketStore,
) -> None:
    t = store.open_or_add_occurrence(report(source="manual", requester=None), T0)
    store.resolve_ticket(t.id, T0 + H, "wang", "fixed")
    store.close_ticket(t.id, T0 + 2 * H, "li", "ok")
    back = store.open_or_add_occurrence(report(), T0 + 5 * H)
    assert back.id == t.id and back.status is TicketStatus.REOPENED and back.reopen_count == 1
    assert (back.source, back.requester) == ("tenant", TENANT)
    detail = store.get_ticket(t.id)
    assert detail is not None and (detail.events[-1].kind, detail.events[-1].who) == (
        "reopened",
        DESK,
    )
    store.resolve_ticket(t.id, T0 + 6 * H, "wang", "fixed again")
    with pytest.raises(TicketTransitionError, match="T5"):
        store.close_ticket(t.id, T0 + 7 * H, "li", "ok")


def test_tickets_are_listed_by_source(store: TicketStore) -> None:
    fired = store.open_or_add_occurrence(alert_request("overcurrent"), T0)
    manual = store.open_or_add_occurrence(report("a", source="manual", requester=None), T0)
    tenant = store.open_or_add_occurrence(report("b"), T0)
    assert [x.id for x in store.list_tickets(source={"tenant"}).items] == [tenant.id]
    both = store.list_tickets(source={"manual", "alert"})
    assert {x.id for x in both.items} == {fired.id, manual.id} and both.total == 2
    assert store.list_tickets(source=set()).total == 0


def test_the_follow_up_is_not_a_status_change_for_the_repair_figures(
    store: TicketStore,
) -> None:
    """reports/maintenance.py replays the event stream: the call must not move the status it
    reconstructs, and a closed tenant ticket is one on-time repair, not backlog."""
    assert TICKET_MOVES["follow_up"][0] is None and "follow_up" not in STATUS_OF_EVENT
    t = store.open_or_add_occurrence(report(), T0)
    store.accept_ticket(t.id, T0 + H, "wang")
    store.resolve_ticket(t.id, T0 + 2 * H, "wang", "fixed")
    store.record_follow_up(t.id, T0 + 3 * H, "小张", "满意")
    store.close_ticket(t.id, T0 + 4 * H, "li", "ok")
    readings = EmbeddedStore(":memory:")
    try:
        rc = ReportContext(site_config(), readings, store, lambda: T0 + 40 * 24 * H)
        rep = maintenance_report(rc, Period.month(2024, 3, rc.tz)).model_dump(mode="json")
    finally:
        readings.close()
    assert rep["repair_time"]["repairs"] == 1
    assert rep["timeliness"]["resolved"] == 1 and rep["timeliness"]["on_time"] == 1
    assert rep["backlog"]["open"] == 0


def _at_0003(url: str) -> None:
    """A database as facmon left it before 0004: migrated to 0003 only."""
    engine = sa.create_engine(url)
    try:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
            for i, fault in enumerate(("elevator_fault", "preventive:lift-15d"), start=1):
                conn.execute(
                    sa.text(
                        "INSERT INTO tickets (id, number, title, device, building, fault_class,"
                        " priority, status, created_at, due_at, updated_at, occurrences,"
                        " reopen_count) VALUES (:id, :n, 't', 'el-1', 'A', :f, 'P2', 'NEW',"
                        " :at, :at, :at, 1, 0)"
                    ),
                    {"id": i, "n": f"WO-{i:06d}", "f": fault, "at": T0.replace(tzinfo=None)},
                )
            conn.execute(
                sa.text(
                    "INSERT INTO ticket_events (ticket_id, at, who, kind, note)"
                    " VALUES (1, :at, 'facmon', 'created', 't')"
                ),
                {"at": T0.replace(tzinfo=None)},
            )
            version = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            assert version == "0003"
    finally:
        engine.dispose()


def test_migration_0004_keeps_existing_tickets_as_alert_and_preventive(db_url: str) -> None:
    _at_0003(db_url)
    store = TicketStore(db_url)  # upgrades to the head on open
    try:
        tickets = {t.fault_class: t for t in store.list_tickets().items}
        assert (tickets["elevator_fault"].source, tickets["elevator_fault"].requester) == (
            "alert",
            None,
        )
        assert tickets["preventive:lift-15d"].source == "preventive"
        assert tickets["elevator_fault"].number == "WO-000001"
        detail = store.get_ticket(tickets["elevator_fault"].id)
        assert detail is not None and [e.kind for e in detail.events] == ["created"]
        # The rows the migration kept still work: a new report lands on the open one (D4).
        t = store.open_or_add_occurrence(report("elevator_fault"), T0 + H)
        assert t.id == tickets["elevator_fault"].id and t.source == "tenant"
    finally:
        store.close()
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            head = ScriptDirectory(str(_MIGRATIONS)).get_current_head()
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == head
    finally:
        engine.dispose()
