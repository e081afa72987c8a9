"""The maintenance report (repair KPIs) over a real ticket database, on a SQLite file and on
PostgreSQL, with hand-computed expectations. Rule ids refer to ../shared/alerting-semantics.md.

One month of tickets (March 2024, Asia/Shanghai: S = 1 March 00:00+08, E = 1 April 00:00+08):

====== ============================ === ============================================== ======
ticket class / device (building)    pri history (hours after creation unless noted)    due
====== ============================ === ============================================== ======
old    power_quality pm-2 (B)       P3  S-40 d, never touched                          +72 h
prev   elevator_fault el-9 (A)      P2  S-2 d; resolved at S+1 h (49 h, late)          +24 h
t1     elevator_fault el-1 (A)      P1  S+1 d by an alert; alert acked +0.5, accepted  +4 h
                                        and started +0.75, on hold +1, resumed +3,
                                        resolved +5
                                        (gross 5 h, late; net of 2 h hold 3 h, on time)
t2     power_quality pm-1 (A)       P2  S+2 d; accepted +2, resolved +10, closed +12;  +24 h
                                        reopened +20 (D4), resolved +30 (2nd repair 10 h)
t3     water_leak wm-1 (B)          P3  E-2 d, untouched                               +72 h
t4     elevator_fault el-2 (A)      P2  E-5 d; accepted +1, started +1.5, on hold +2   +24 h
                                        until the end
t5     communication_loss pm-3 (B)  P3  S+10 d by an alert; the alert resolves +0.5    +72 h
                                        and facmon resolves the ticket (T4)
t6     power_quality pm-3 (B)       P2  E-10 h; accepted and resolved after E          +24 h
t7     elevator_fault el-3 (A)      P3  S+5 d; cancelled +1 by a person                +72 h
gone   elevator_fault el-8 (A)      P3  S-60 d, resolved S-59 d: outside every figure  +72 h
later  elevator_fault el-7 (A)      P3  E+1 d                                          +72 h
====== ============================ === ============================================== ======

Every ticket and status change goes through TicketStore's public methods with explicit times.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from alerts import AlertState, TicketRecord, TicketStore
from alerts.tickets import NewAlert, TicketRequest
from api import create_app
from config.models import SiteConfig
from reports import Period, ReportContext
from reports.maintenance import maintenance_report
from store.embedded import EmbeddedStore
from tests.alerts.conftest import _pg_schema
from tests.api.conftest import site_config

TZ_NAME = "Asia/Shanghai"
S = datetime(2024, 2, 29, 16, 0, tzinfo=UTC)  # 2024-03-01 00:00 local
E = datetime(2024, 3, 31, 16, 0, tzinfo=UTC)  # 2024-04-01 00:00 local
AFTER = datetime(2024, 4, 10, 0, 0, tzinfo=UTC)  # "now" for the closed month
H = timedelta(hours=1)
D = timedelta(days=1)
TOKEN = "maint-token-7c1e"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{os.path.join(tmp_path, 'tickets.db')}"
        return
    with _pg_schema() as url:
        yield url


@pytest.fixture
def tickets(db_url: str) -> Iterator[TicketStore]:
    s = TicketStore(db_url)
    yield s
    s.close()


@pytest.fixture
def config() -> SiteConfig:
    return site_config()


@pytest.fixture
def readings() -> Iterator[EmbeddedStore]:
    s = EmbeddedStore(":memory:")  # the report reads no readings; ReportContext needs a store
    yield s
    s.close()


def req(device: str, fault: str, building: str, severity: str) -> TicketRequest:
    return TicketRequest(
        title=f"{device} {fault}",
        device=device,
        building=building,
        fault_class=fault,
        severity=severity,
    )


@dataclass
class Month:
    ids: dict[str, TicketRecord]

    def number(self, name: str) -> str:
        return self.ids[name].number


def build_month(store: TicketStore) -> Month:
    ids: dict[str, TicketRecord] = {}

    ids["gone"] = store.open_or_add_occurrence(
        req("el-8", "elevator_fault", "A", "minor"), S - 60 * D
    )
    store.resolve_ticket(ids["gone"].id, S - 59 * D, "wang")
    ids["old"] = store.open_or_add_occurrence(
        req("pm-2", "power_quality", "B", "minor"), S - 40 * D
    )
    ids["prev"] = store.open_or_add_occurrence(
        req("el-9", "elevator_fault", "A", "major"), S - 2 * D
    )
    store.resolve_ticket(ids["prev"].id, S + H, "wang")

    t = S + D
    new = NewAlert("1" * 64, "lift_fault", "riverside", "A", "el-1", "fault_code", "critical")
    alert, t1 = store.start_alert(
        new, AlertState.FIRING, t, 5.0, req("el-1", "elevator_fault", "A", "critical")
    )
    assert t1 is not None
    ids["t1"] = t1
    store.acknowledge_alert(alert, "zhang", t + 0.5 * H)
    store.accept_ticket(t1.id, t + 0.75 * H, "zhang")
    store.start_work(t1.id, t + 0.75 * H, "zhang")
    store.hold_ticket(t1.id, t + H, "zhang", "waiting for a door operator board", t + 3 * H)
    store.resume_work(t1.id, t + 3 * H, "zhang")
    store.resolve_ticket(t1.id, t + 5 * H, "wang", "replaced door operator board")

    t = S + 2 * D
    ids["t2"] = store.open_or_add_occurrence(req("pm-1", "power_quality", "A", "major"), t)
    store.accept_ticket(ids["t2"].id, t + 2 * H, "li")
    store.resolve_ticket(ids["t2"].id, t + 10 * H, "li")
    store.close_ticket(ids["t2"].id, t + 12 * H, "li", "voltage normal for 2 h")
    again = store.open_or_add_occurrence(req("pm-1", "power_quality", "A", "major"), t + 20 * H)
    assert again.id == ids["t2"].id and again.reopen_count == 1
    store.resolve_ticket(ids["t2"].id, t + 30 * H, "li")

    ids["t3"] = store.open_or_add_occurrence(req("wm-1", "water_leak", "B", "minor"), E - 2 * D)

    t = E - 5 * D
    ids["t4"] = store.open_or_add_occurrence(req("el-2", "elevator_fault", "A", "major"), t)
    store.accept_ticket(ids["t4"].id, t + H, "zhao")
    store.start_work(ids["t4"].id, t + 1.5 * H, "zhao")
    store.hold_ticket(ids["t4"].id, t + 2 * H, "zhao", "lift company to quote", t + 10 * D)

    t = S + 10 * D
    new = NewAlert("5" * 64, "comm", "riverside", "B", "pm-3", "device_up", "minor")
    alert, t5 = store.start_alert(
        new, AlertState.FIRING, t, 0.0, req("pm-3", "communication_loss", "B", "minor")
    )
    assert t5 is not None
    ids["t5"] = t5
    store.resolve_alert(alert, t + 0.5 * H, 1.0)

    t = E - 10 * H
    ids["t6"] = store.open_or_add_occurrence(req("pm-3", "power_quality", "B", "major"), t)
    store.accept_ticket(ids["t6"].id, E + H, "li")
    store.resolve_ticket(ids["t6"].id, E + 5 * H, "li")

    ids["t7"] = store.open_or_add_occurrence(req("el-3", "elevator_fault", "A", "minor"), S + 5 * D)
    store.cancel_ticket(ids["t7"].id, S + 5 * D + H, "li", "duplicate of a phone report")

    ids["later"] = store.open_or_add_occurrence(req("el-7", "elevator_fault", "A", "minor"), E + D)
    return Month(ids)


def report(
    config: SiteConfig,
    readings: EmbeddedStore,
    tickets: TicketStore,
    now: datetime,
    period: Period | None = None,
    building: str | None = None,
) -> dict[str, Any]:
    rc = ReportContext(config, readings, tickets, lambda: now)
    p = period or Period.month(2024, 3, rc.tz)
    return maintenance_report(rc, p, building=building).model_dump(mode="json")


def test_closed_month_figures(
    config: SiteConfig, readings: EmbeddedStore, tickets: TicketStore
) -> None:
    m = build_month(tickets)
    out = report(config, readings, tickets, AFTER)

    assert (out["period"], out["complete"], out["building"]) == ("2024-03", True, None)
    assert out["start"] == "2024-03-01T00:00:00+08:00"
    assert out["as_of"] == out["end"] == "2024-04-01T00:00:00+08:00"

    # t1..t7 were created in March; old, prev, gone before it, later after it.
    assert out["opened"] == {"total": 7, "by_priority": {"P1": 1, "P2": 3, "P3": 3}}

    # Repairs resolved in March: prev (49 h, late), t1 (5 h late; 3 h net of hold, on time),
    # t2 twice (10 h each, on time), t5 (0.5 h, on time). t6 was resolved after the month.
    assert out["timeliness"] == {
        "resolved": 5,
        "on_time": 3,
        "on_time_rate": 0.6,
        "on_time_net": 4,
        "on_time_net_rate": 0.8,
        "target": 0.92,
        "meets_target": False,
    }
    # (49 + 5 + 10 + 10 + 0.5) / 5 = 14.9; net (49 + 3 + 10 + 10 + 0.5) / 5 = 14.5.
    assert out["repair_time"] == {
        "repairs": 5,
        "mttr_gross_h": 14.9,
        "mttr_net_h": 14.5,
        "on_hold_h": 2.0,
        "auto_resolved": 1,
    }
    # Acknowledged: t1 0.5 h (the alert ack), t2 2 h, t4 1 h, t7 1 h (cancelled by a person):
    # 4.5 / 4 = 1.125. t3 untouched, t5 resolved by facmon, t6 accepted only after the month.
    assert out["response"] == {"acknowledged": 4, "unacknowledged": 3, "mtta_h": 1.125}

    # Open at E: old (71 d, overdue), t3 (2 d), t4 (5 d, on hold, overdue), t6 (10 h).
    backlog = out["backlog"]
    assert (backlog["open"], backlog["overdue"]) == (4, 2)
    assert backlog["by_priority"] == {"P1": 0, "P2": 2, "P3": 2}
    assert [(b["label"], b["count"]) for b in backlog["by_age"]] == [
        ("<1 d", 1),
        ("1-3 d", 1),
        ("3-7 d", 1),
        ("7-30 d", 0),
        (">30 d", 1),
    ]
    assert [
        (t["number"], t["status"], t["age_h"], t["overdue_h"]) for t in backlog["overdue_tickets"]
    ] == [
        # old: created S-40 d, due S-37 d: 71 d and 68 d before E.
        (m.number("old"), "NEW", 71 * 24.0, 68 * 24.0),
        # t4: created E-5 d, due E-4 d.
        (m.number("t4"), "ON_HOLD", 120.0, 96.0),
    ]
    assert backlog["overdue_tickets"][1]["due_at"] == "2024-03-28T00:00:00+08:00"

    assert out["repeats"] == {
        "reopen_window_h": 24.0,
        "repeat_repairs": 1,
        "tickets": [m.number("t2")],
        "rate": 0.2,
    }

    cats = {c["fault_class"]: c for c in out["categories"]}
    assert list(cats) == ["communication_loss", "elevator_fault", "power_quality", "water_leak"]
    pick = (
        "opened",
        "resolved",
        "on_time",
        "on_time_rate",
        "on_time_net_rate",
        "meets_target",
        "open_at_end",
        "mttr_gross_h",
        "mttr_net_h",
    )
    assert {fc: tuple(c[k] for k in pick) for fc, c in cats.items()} == {
        "communication_loss": (1, 1, 1, 1.0, 1.0, True, 0, 0.5, 0.5),
        # prev (49 h late) and t1 (5 h late, 3 h net): (49 + 5) / 2, (49 + 3) / 2.
        "elevator_fault": (3, 2, 0, 0.0, 0.5, False, 1, 27.0, 26.0),
        "power_quality": (2, 2, 2, 1.0, 1.0, True, 2, 10.0, 10.0),
        "water_leak": (1, 0, 0, None, None, None, 1, None, None),
    }
    assert cats["elevator_fault"]["opened_by_priority"] == {"P1": 1, "P2": 1, "P3": 1}


def test_one_building(config: SiteConfig, readings: EmbeddedStore, tickets: TicketStore) -> None:
    build_month(tickets)
    out = report(config, readings, tickets, AFTER, building="B")
    # B: old, t3, t5, t6.
    assert out["building"] == "B"
    assert out["opened"]["total"] == 3
    assert (out["timeliness"]["resolved"], out["timeliness"]["on_time_rate"]) == (1, 1.0)
    assert (out["backlog"]["open"], out["backlog"]["overdue"]) == (3, 1)
    assert [c["fault_class"] for c in out["categories"]] == [
        "communication_loss",
        "power_quality",
        "water_leak",
    ]


def test_running_month_ends_now_and_ignores_later_events(
    config: SiteConfig, readings: EmbeddedStore, tickets: TicketStore
) -> None:
    m = build_month(tickets)
    now = S + 2 * D + 21 * H  # an hour after t2 was reopened
    out = report(config, readings, tickets, now)
    assert out["complete"] is False
    assert out["as_of"] == "2024-03-03T21:00:00+08:00"
    # Created so far: t1, t2. Resolved so far: prev, t1, t2's first repair.
    assert out["opened"]["total"] == 2
    assert (out["timeliness"]["resolved"], out["timeliness"]["on_time"]) == (3, 1)
    assert out["response"] == {"acknowledged": 2, "unacknowledged": 0, "mtta_h": 1.25}
    # Open now: old, and t2 as a new repair reopened an hour ago (due in 23 h).
    backlog = out["backlog"]
    assert (backlog["open"], backlog["overdue"]) == (2, 1)
    assert [(b["label"], b["count"]) for b in backlog["by_age"]] == [
        ("<1 d", 1),
        ("1-3 d", 0),
        ("3-7 d", 0),
        ("7-30 d", 0),
        (">30 d", 1),
    ]
    assert [t["number"] for t in backlog["overdue_tickets"]] == [m.number("old")]
    assert out["repeats"]["repeat_repairs"] == 1 and out["repeats"]["rate"] == round(1 / 3, 4)


def test_past_month_is_replayed_as_it_stood_at_its_end(
    config: SiteConfig, readings: EmbeddedStore, tickets: TicketStore
) -> None:
    m = build_month(tickets)
    rc_tz = ReportContext(config, readings, tickets).tz
    out = report(config, readings, tickets, AFTER, period=Period.month(2024, 2, rc_tz))
    # February: prev was created (S-2 d) and still open at its end; it is RESOLVED today.
    assert out["opened"] == {"total": 1, "by_priority": {"P1": 0, "P2": 1, "P3": 0}}
    assert out["timeliness"]["resolved"] == 0 and out["timeliness"]["on_time_rate"] is None
    assert out["repair_time"]["mttr_gross_h"] is None
    backlog = out["backlog"]
    assert [(t["number"], t["status"], t["overdue_h"]) for t in backlog["overdue_tickets"]] == [
        (m.number("old"), "NEW", 37 * 24.0),
        (m.number("prev"), "NEW", 24.0),
    ]
    assert [b["count"] for b in backlog["by_age"]] == [0, 1, 0, 0, 1]


def test_tickets_touching_is_one_query_with_events(tickets: TicketStore) -> None:
    m = build_month(tickets)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = tickets._engine  # the store's own engine: count what it sends (no N+1)
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        found = tickets.tickets_touching(S, E)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    names = {v.id: k for k, v in m.ids.items()}
    assert [names[d.ticket.id] for d in found] == [
        "old",
        "prev",
        "t1",
        "t2",
        "t3",
        "t4",
        "t5",
        "t6",
        "t7",
    ]
    t2 = next(d for d in found if d.ticket.id == m.ids["t2"].id)
    assert [e.kind for e in t2.events] == [
        "created",
        "accepted",
        "resolved",
        "closed",
        "reopened",
        "resolved",
    ]
    assert [names[d.ticket.id] for d in tickets.tickets_touching(S, E, building="B")] == [
        "old",
        "t3",
        "t5",
        "t6",
    ]


def test_api_route(config: SiteConfig, readings: EmbeddedStore, tickets: TicketStore) -> None:
    build_month(tickets)
    app = create_app(config, readings, tickets, tokens={TOKEN: "viewer"}, clock=lambda: AFTER)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        res = client.get("/api/v1/reports/maintenance", params={"month": "2024-03"}, headers=auth)
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["timeliness"]["on_time_rate"] == 0.6
        assert body["backlog"]["open"] == 4

        # start/end are local days, end exclusive: the same month.
        same = client.get(
            "/api/v1/reports/maintenance",
            params={"start": "2024-03-01", "end": "2024-04-01"},
            headers=auth,
        ).json()
        assert same["period"] == "2024-03" and same["timeliness"] == body["timeliness"]

        b = client.get(
            "/api/v1/reports/maintenance",
            params={"month": "2024-03", "building": "B"},
            headers=auth,
        ).json()
        assert b["opened"]["total"] == 3

        for params, bad in [
            ({"month": "2024-13"}, "month"),
            ({"month": "2024-03", "start": "2024-03-01"}, "month"),
            ({"start": "2024-03-01"}, "end"),
            ({"start": "2024-03-05", "end": "2024-03-01"}, "end"),
            ({"start": "March", "end": "2024-04-01"}, "start"),
            ({"month": "2024-03", "building": "Z"}, "building"),
        ]:
            res = client.get("/api/v1/reports/maintenance", params=params, headers=auth)
            assert res.status_code == 400, params
            assert res.json()["error"]["details"][0]["parameter"] == bad
        assert client.get("/api/v1/reports/maintenance").status_code == 401


def test_preventive_jobs_are_not_repairs(
    config: SiteConfig, readings: EmbeddedStore, tickets: TicketStore
) -> None:
    """T6/T7: a late preventive job (a schedule's ticket) keeps its own category row but
    counts in neither repair timeliness nor MTTR."""
    t0 = S + D
    fix = tickets.open_or_add_occurrence(req("el-1", "elevator_fault", "A", "major"), t0)
    tickets.resolve_ticket(fix.id, t0 + 2 * H, "wang")
    job = tickets.open_or_add_occurrence(req("el-1", "preventive:lift-15d", "A", "minor"), t0 + H)
    tickets.resolve_ticket(job.id, t0 + 10 * D, "wang")  # far past its 72 h
    rc = ReportContext(config, readings, tickets, lambda: AFTER)
    rep = maintenance_report(rc, Period.month(2024, 3, rc.tz)).model_dump(mode="json")
    assert rep["repair_time"]["repairs"] == 1
    assert rep["repair_time"]["mttr_gross_h"] == pytest.approx(2.0)
    assert rep["timeliness"]["resolved"] == 1 and rep["timeliness"]["on_time"] == 1
    [prev] = [c for c in rep["categories"] if c["fault_class"] == "preventive:lift-15d"]
    assert prev["resolved"] == 1 and prev["on_time"] == 0
