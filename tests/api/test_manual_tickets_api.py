"""POST /api/v1/tickets (tickets opened by hand and tenants' repair requests), the follow_up
action (回访, T5) and the source filter, by role, over a real SQLite ticket database. The store
rules behind them run on PostgreSQL too in tests/alerts/test_manual_tickets.py."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from alerts.tickets import TicketRequest
from api import create_app
from store.embedded import EmbeddedStore
from tests.api.conftest import NOW, site_config

VIEWER = "tok-viewer-lobby"
TECH = "tok-tech-wang"
MANAGER = "tok-manager-li"
TOKENS: dict[str, Any] = {
    VIEWER: ("大堂显示屏", "viewer"),
    TECH: ("王师傅", "technician"),
    MANAGER: ("李主管", "manager"),
}
TENANT = "张女士 A座1203 138-0000-1234"
_SERIAL = itertools.count(1)


class Desk:
    def __init__(self, client: TestClient, tickets: TicketStore) -> None:
        self.client = client
        self.tickets = tickets

    def post(self, path: str, body: Any = None, token: str | None = TECH) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.post(f"/api/v1{path}", json=body, headers=headers)

    def get(self, path: str, token: str = TECH) -> Any:
        return self.client.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp: Path = tmp_path_factory.mktemp("manual")
    store = EmbeddedStore(":memory:")
    tickets = TicketStore(f"sqlite:///{tmp / 'tickets.db'}")
    app = create_app(site_config(), store, tickets, tokens=TOKENS, clock=lambda: NOW)
    try:
        with TestClient(app) as client:
            yield Desk(client, tickets)
    finally:
        tickets.close()
        store.close()


def body(**extra: Any) -> dict[str, Any]:
    """A tenant's request on el-1, with a fault class of its own (no test takes another's
    ticket by D4)."""
    return {
        "title": "1号梯门关不上",
        "device": "el-1",
        "fault_class": f"door_fault_{next(_SERIAL)}",
        "priority": "P2",
        "note": "住户来电",
        "source": "tenant",
        "requester": TENANT,
        **extra,
    }


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["status"] == status and err["code"] == code
    return dict(err)


def test_a_technician_opens_a_tenant_request_and_a_manual_ticket(desk: Desk) -> None:
    resp = desk.post("/tickets", body())
    assert resp.status_code == 201, resp.text
    t = resp.json()
    assert resp.headers["location"] == f"/api/v1/tickets/{t['id']}"
    assert (t["source"], t["requester"], t["building"], t["priority"]) == (
        "tenant",
        TENANT,
        "A",  # the device's
        "P2",
    )
    assert t["status"] == "NEW" and t["source_alert_id"] is None
    assert [(e["kind"], e["who"], e["note"]) for e in t["events"]] == [
        ("created", "王师傅", "住户来电")
    ]

    manual = desk.post(
        "/tickets",
        {"title": " 机房漏水 ", "device": "wm-1", "fault_class": "leak"},
    )
    assert manual.status_code == 201, manual.text
    m = manual.json()
    assert (m["source"], m["requester"], m["priority"], m["building"], m["title"]) == (
        "manual",
        None,
        "P3",  # the default
        "B",
        "机房漏水",
    )
    assert m["due_at"] != m["created_at"]


def test_a_viewer_may_not_open_tickets_nor_see_who_asked(desk: Desk) -> None:
    before = desk.tickets.list_tickets().total
    _error(desk.post("/tickets", body(), VIEWER), 403, "forbidden")
    # The role is checked before the fields: a viewer learns nothing from a bad body.
    _error(desk.post("/tickets", {"device": 5}, VIEWER), 403, "forbidden")
    _error(desk.post("/tickets", body(), None), 401, "unauthorized")
    assert desk.tickets.list_tickets().total == before

    t = desk.post("/tickets", body()).json()
    assert desk.get(f"/tickets/{t['id']}", VIEWER).json()["requester"] is None
    listed = desk.get("/tickets?source=tenant&limit=500", VIEWER).json()["items"]
    assert listed and all(x["requester"] is None for x in listed)
    assert desk.get(f"/tickets/{t['id']}", MANAGER).json()["requester"] == TENANT


def test_every_bad_field_is_named_in_one_400(desk: Desk) -> None:
    err = _error(
        desk.post(
            "/tickets",
            {
                "title": "  ",
                "device": "el-99",
                "fault_class": "门 故障",
                "priority": "P4",
                "source": "tenant",
            },
        ),
        400,
        "invalid_parameter",
    )
    named = {d["parameter"] for d in err["details"]}
    assert named == {"title", "device", "fault_class", "priority", "requester"}
    assert all(d["location"] == "body" for d in err["details"])
    assert err["message"] == ("invalid parameters: device, fault_class, priority, requester, title")
    [device] = [d for d in err["details"] if d["parameter"] == "device"]
    assert device["message"] == "no configured device 'el-99'"

    missing = _error(desk.post("/tickets", {}), 400, "invalid_parameter")
    assert {d["parameter"] for d in missing["details"]} == {"title", "device", "fault_class"}
    no_body = _error(desk.post("/tickets"), 400, "invalid_parameter")
    assert {d["parameter"] for d in no_body["details"]} == {"title", "device", "fault_class"}
    long = _error(desk.post("/tickets", body(requester="x" * 201)), 400, "invalid_parameter")
    assert [d["parameter"] for d in long["details"]] == ["requester"]
    alert = _error(desk.post("/tickets", body(source="alert")), 400, "invalid_parameter")
    assert [d["parameter"] for d in alert["details"]] == ["source"]
    # Planned work keeps its own classes: a person cannot open a "preventive:" ticket.
    planned = body(fault_class="preventive:lift-15d")
    assert (
        _error(desk.post("/tickets", planned), 400, "invalid_parameter")["details"][0]["parameter"]
        == "fault_class"
    )


def test_D4_a_report_on_an_open_ticket_is_added_to_it_with_200(desk: Desk) -> None:
    fault = f"elevator_fault_{next(_SERIAL)}"
    fired = desk.tickets.open_or_add_occurrence(
        TicketRequest("el-1 电梯故障", "el-1", "A", fault, "critical"), NOW
    )
    resp = desk.post("/tickets", body(fault_class=fault, priority="P3"))
    assert resp.status_code == 200, resp.text
    t = resp.json()
    assert (t["id"], t["occurrences"], t["priority"]) == (fired.id, 2, "P1")
    assert (t["source"], t["requester"]) == ("tenant", TENANT)
    assert resp.headers["location"] == f"/api/v1/tickets/{fired.id}"
    assert (t["events"][-1]["kind"], t["events"][-1]["who"]) == ("occurrence", "王师傅")


def test_T5_a_tenant_ticket_closes_after_the_follow_up_action(desk: Desk) -> None:
    t = desk.post("/tickets", body()).json()
    tid = t["id"]
    early = _error(desk.post(f"/tickets/{tid}/follow_up", {"note": "太早"}), 409, "conflict")
    assert "only a resolved or closed ticket takes it" in early["message"]
    assert desk.post(f"/tickets/{tid}/resolve", {"note": "更换门机皮带"}).status_code == 200

    refused = _error(
        desk.post(f"/tickets/{tid}/close", {"note": "验证正常"}, MANAGER), 409, "conflict"
    )
    assert "follow-up call" in refused["message"] and "T5" in refused["message"]
    no_note = _error(desk.post(f"/tickets/{tid}/follow_up", {}), 400, "invalid_parameter")
    assert no_note["details"][0]["parameter"] == "note"
    assert "called back" in no_note["details"][0]["message"]
    _error(desk.post(f"/tickets/{tid}/follow_up", {"note": "满意"}, VIEWER), 403, "forbidden")

    done = desk.post(f"/tickets/{tid}/follow_up", {"note": "张女士确认正常，满意"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "RESOLVED"
    assert (done.json()["events"][-1]["kind"], done.json()["events"][-1]["who"]) == (
        "follow_up",
        "王师傅",
    )
    closed = desk.post(f"/tickets/{tid}/close", {"note": "验证正常"}, MANAGER)
    assert closed.status_code == 200 and closed.json()["status"] == "CLOSED"
    kinds = [e["kind"] for e in closed.json()["events"]]
    assert kinds == ["created", "resolved", "follow_up", "closed"]


def test_me_offers_the_follow_up_to_technicians(desk: Desk) -> None:
    tech = desk.get("/me").json()
    assert tech["actions"]["follow_up"] == ["CLOSED", "RESOLVED"]
    assert desk.get("/me", VIEWER).json()["actions"] == {}


def test_tickets_are_filtered_by_source(desk: Desk) -> None:
    desk.post("/tickets", body())
    desk.post("/tickets", body(source="manual", requester=None))
    tenant = desk.get("/tickets?source=tenant&limit=500").json()
    assert tenant["total"] >= 1 and {x["source"] for x in tenant["items"]} == {"tenant"}
    both = desk.get("/tickets?source=manual,tenant&limit=500").json()
    assert {x["source"] for x in both["items"]} == {"manual", "tenant"}
    bad = _error(desk.get("/tickets?source=phone"), 400, "invalid_parameter")
    assert bad["details"][0]["parameter"] == "source"


def test_openapi_documents_the_new_ticket_body(desk: Desk) -> None:
    doc = desk.client.get("/openapi.json").json()
    op = doc["paths"]["/api/v1/tickets"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"title", "device", "fault_class"}
    assert schema["properties"]["source"]["enum"] == ["manual", "tenant"]
    assert {"200", "201", "400", "403"} <= set(op["responses"])
    assert (
        "follow_up" in doc["paths"]["/api/v1/tickets/{ticket_id}/{action}"]["post"]["description"]
    )
