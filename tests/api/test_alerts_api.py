"""/api/v1/alerts (list, filter, acknowledge, shelve, unshelve), /api/v1/silences (CRUD by
role) and POST /api/v1/tickets/{id}/reopen, over a real app, a real AlertEngine writing the
alerts and a real ticket database (SQLite file; the flows also on PostgreSQL)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import AlertEngine, TicketStore
from api import create_app
from store.embedded import EmbeddedStore
from store.reading import Reading
from tests.alerts.conftest import _pg_schema
from tests.api.conftest import NOW, site_config

VIEWER = "tok-viewer-1"
TECH = "tok-tech-wang"
MANAGER = "tok-manager-li"
TOKENS: dict[str, Any] = {
    VIEWER: ("大堂显示屏", "viewer"),
    TECH: ("王师傅", "technician"),
    MANAGER: ("李主管", "manager"),
}
H = timedelta(hours=1)
BOTH_DATABASES = pytest.mark.parametrize("site", ["sqlite", "postgresql"], indirect=True)


@dataclass
class Site:
    client: TestClient
    tickets: TicketStore
    engine: AlertEngine
    alerts: dict[str, int]  # scenario name -> alert id

    def get(self, path: str, token: str = VIEWER, **params: Any) -> Any:
        return self.client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    def post(self, path: str, token: str = TECH, body: Any = None) -> Any:
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

    def delete(self, path: str, token: str = MANAGER) -> Any:
        return self.client.delete(path, headers={"Authorization": f"Bearer {token}"})


def _feed(engine: AlertEngine, device: str, metric: str, value: float, t: datetime) -> int:
    out = engine.evaluate([Reading(t, device, metric, value)], now=t)
    return out[0].alert_id


@contextlib.contextmanager
def _site(tmp_path: Path, kind: str, **app_kw: Any) -> Iterator[tuple[Any, TicketStore]]:
    with contextlib.ExitStack() as stack:
        url = (
            stack.enter_context(_pg_schema())
            if kind == "postgresql"
            else f"sqlite:///{tmp_path / 'tickets.db'}"
        )
        store = EmbeddedStore(":memory:")
        stack.callback(store.close)
        tickets = TicketStore(url)
        stack.callback(tickets.close)
        yield store, tickets


@contextlib.contextmanager
def _scenario(tmp_path: Path, kind: str) -> Iterator[Site]:
    """Three alert episodes written by the engine before NOW: lift_fault on el-1 (A, critical,
    firing since NOW-3h), low_voltage on pm-2 (B, minor, NOW-2h .. NOW-1h, resolved) and
    low_voltage on pm-1 (A, minor, firing since NOW-30m)."""
    cfg = site_config()
    with _site(tmp_path, kind) as (store, tickets):
        engine = AlertEngine(cfg, tickets)
        ids = {
            "lift": _feed(engine, "el-1", "fault_code", 5, NOW - 3 * H),
            "pm2": _feed(engine, "pm-2", "voltage_a", 190, NOW - 2 * H),
        }
        _feed(engine, "pm-2", "voltage_a", 230, NOW - H)
        ids["pm1"] = _feed(engine, "pm-1", "voltage_a", 180, NOW - timedelta(minutes=30))
        app = create_app(cfg, store, tickets, tokens=TOKENS, clock=lambda: NOW)
        with TestClient(app) as client:
            yield Site(client, tickets, engine, ids)


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """The scenario on a database of its own (SQLite unless the test asks for both)."""
    with _scenario(tmp_path, getattr(request, "param", "sqlite")) as s:
        yield s


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The scenario once for the module, for tests that change nothing (refused requests)."""
    with _scenario(tmp_path_factory.mktemp("shared"), "sqlite") as s:
        yield s


def _error(resp: Any, status: int, code: str, parameter: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"status", "code", "message", "details"}
    assert err["status"] == status and err["code"] == code and err["message"]
    if parameter is not None:
        assert parameter in [d["parameter"] for d in err["details"]], err
        assert parameter in err["message"]
    return dict(err)


# -- list and read ----------------------------------------------------------------------------
def test_list_filters_and_pages_like_the_ticket_list(site: Site) -> None:
    a = site.alerts

    def ids(**params: Any) -> list[int]:
        resp = site.get("/api/v1/alerts", **params)
        assert resp.status_code == 200, resp.text
        return [x["id"] for x in resp.json()["items"]]

    assert ids() == [a["pm1"], a["pm2"], a["lift"]]  # newest episode first
    assert ids(state="firing") == [a["pm1"], a["lift"]]
    assert ids(state="RESOLVED") == [a["pm2"]]
    assert ids(state="unresolved") == [a["pm1"], a["lift"]]
    assert ids(severity="critical") == [a["lift"]]
    assert ids(severity="minor,critical") == [a["pm1"], a["pm2"], a["lift"]]
    assert ids(building="B") == [a["pm2"]]
    assert ids(device="el-1") == [a["lift"]]
    assert ids(rule="low_voltage") == [a["pm1"], a["pm2"]]
    assert ids(acknowledged="false") == [a["pm1"], a["pm2"], a["lift"]]
    assert ids(shelved="true") == []
    # Episodes overlapping [since, until); site-local times without an offset (UTC+8).
    assert ids(since="2024-03-03T11:30") == [a["pm1"], a["lift"]]  # pm-2 ended 03:00 UTC
    assert ids(until="2024-03-03T10:00+08:00") == [a["lift"]]
    assert ids(since="2024-03-03", until="2024-03-03T10:30") == [a["pm2"], a["lift"]]

    first = site.get("/api/v1/alerts", limit=2, state="FIRING,RESOLVED").json()
    assert (first["total"], first["limit"], first["offset"]) == (3, 2, 0)
    assert first["next"].startswith("/api/v1/alerts?")
    second = site.client.get(first["next"], headers={"Authorization": f"Bearer {VIEWER}"}).json()
    assert [x["id"] for x in second["items"]] == [a["lift"]] and second["next"] is None

    lift = site.get(f"/api/v1/alerts/{a['lift']}").json()
    assert {k: lift[k] for k in ("rule_id", "device", "building", "state", "severity")} == {
        "rule_id": "lift_fault",
        "device": "el-1",
        "building": "A",
        "state": "FIRING",
        "severity": "critical",
    }
    assert lift["last_value"] == 5 and lift["ticket_id"] is not None
    assert (lift["acknowledged"], lift["shelved"], lift["shelve"], lift["silenced_by"]) == (
        False,
        False,
        None,
        None,
    )
    assert lift["started_at"] == (NOW - 3 * H).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"state": "BURNING"}, "state"),
        ({"state": "INACTIVE"}, "state"),
        ({"severity": "huge"}, "severity"),
        ({"building": "Z"}, "building"),
        ({"device": "nope"}, "device"),
        ({"rule": "nope"}, "rule"),
        ({"shelved": "maybe"}, "shelved"),
        ({"acknowledged": "2"}, "acknowledged"),
        ({"since": "yesterday"}, "since"),
        ({"until": "0001-01-01"}, "until"),
        ({"since": "2024-03-03", "until": "2024-03-02"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(
    shared: Site, params: dict[str, str], parameter: str
) -> None:
    _error(shared.get("/api/v1/alerts", **params), 400, "invalid_parameter", parameter)


def test_one_alert_unknown_or_malformed_id(shared: Site) -> None:
    _error(shared.get("/api/v1/alerts/999"), 404, "not_found")
    _error(shared.get("/api/v1/alerts/0"), 400, "invalid_parameter", "alert_id")
    _error(shared.get("/api/v1/alerts/abc"), 400, "invalid_parameter", "alert_id")
    _error(shared.client.get("/api/v1/alerts"), 401, "unauthorized")


# -- acknowledge ------------------------------------------------------------------------------
@BOTH_DATABASES
def test_a10_acknowledge_changes_no_state_and_needs_a_technician(site: Site) -> None:
    lift = site.alerts["lift"]
    path = f"/api/v1/alerts/{lift}/acknowledge"
    _error(site.post(path, VIEWER), 403, "forbidden")
    resp = site.post(path, TECH, {"note": "在路上"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["acknowledged"], body["acked_by"], body["state"]) == (True, "王师傅", "FIRING")
    ids = [x["id"] for x in site.get("/api/v1/alerts", acknowledged="true").json()["items"]]
    assert ids == [lift]
    events = site.get(f"/api/v1/tickets/{body['ticket_id']}").json()["events"]
    assert (events[-1]["kind"], events[-1]["who"], events[-1]["note"]) == (
        "alert_acknowledged",
        "王师傅",
        "在路上",
    )
    _error(site.post(f"/api/v1/alerts/{site.alerts['pm2']}/acknowledge"), 409, "conflict")
    _error(site.post("/api/v1/alerts/999/acknowledge"), 404, "not_found")


def test_a10_acknowledge_through_the_engine_resolves_a_latched_alert(tmp_path: Path) -> None:
    rules = [
        {
            "id": "entrapment",
            "name": "困人",
            "metric": "fault_code",
            "select": {"kinds": ["elevator"]},
            "above": 0,
            "severity": "critical",
            "fault_class": "entrapment",
            "latched": True,
        }
    ]
    cfg = site_config(rules=rules)
    with _site(tmp_path, "sqlite") as (store, tickets):
        engine = AlertEngine(cfg, tickets)
        alert_id = _feed(engine, "el-1", "fault_code", 3, NOW - H)
        _feed(engine, "el-1", "fault_code", 0, NOW - timedelta(minutes=30))  # -> RECOVERING
        lock = threading.Lock()  # as the runtime serialises its engine calls

        def through_engine(fp: str, who: str, now: datetime) -> None:
            with lock:
                engine.acknowledge(fp, who, now)

        app = create_app(
            cfg, store, tickets, tokens=TOKENS, clock=lambda: NOW, acknowledge_alert=through_engine
        )
        with TestClient(app) as client:
            resp = client.post(
                f"/api/v1/alerts/{alert_id}/acknowledge",
                headers={"Authorization": f"Bearer {TECH}"},
            )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["state"], body["acked_by"]) == ("RESOLVED", "王师傅")
        assert engine.unresolved() == []


# -- shelve -----------------------------------------------------------------------------------
@BOTH_DATABASES
def test_a11_shelve_and_unshelve_with_roles_and_audit(site: Site) -> None:
    lift = site.alerts["lift"]
    path = f"/api/v1/alerts/{lift}/shelve"
    _error(site.post(path, VIEWER, {"reason": "x", "duration": "1h"}), 403, "forbidden")
    resp = site.post(path, TECH, {"reason": "门机厂家在修", "duration": "2h"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["shelved"] is True and body["state"] == "FIRING"
    assert body["shelve"] == {
        "by": "王师傅",
        "reason": "门机厂家在修",
        "at": "2024-03-03T04:00:00Z",
        "until": "2024-03-03T06:00:00Z",
    }
    listed = site.get("/api/v1/alerts", shelved="true").json()["items"]
    assert [x["id"] for x in listed] == [lift]
    # Until as a site-local time, replacing the first shelve.
    body = site.post(path, TECH, {"reason": "longer", "until": "2024-03-03T20:00"}).json()
    assert body["shelve"]["until"] == "2024-03-03T12:00:00Z"

    unshelve = f"/api/v1/alerts/{lift}/unshelve"
    _error(site.post(unshelve, VIEWER), 403, "forbidden")
    body = site.post(unshelve, TECH, {"note": "修好了"}).json()
    assert body["shelved"] is False and body["shelve"]["until"] == "2024-03-03T04:00:00Z"
    _error(site.post(unshelve, TECH), 409, "conflict")  # not shelved any more

    events = site.get(f"/api/v1/tickets/{body['ticket_id']}").json()["events"]
    assert [(e["kind"], e["who"]) for e in events[-3:]] == [
        ("alert_shelved", "王师傅"),
        ("alert_shelved", "王师傅"),
        ("alert_unshelved", "王师傅"),
    ]
    assert events[-1]["note"] == "alert lift_fault unshelved: 修好了"


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        (None, "reason"),
        ({"duration": "1h"}, "reason"),
        ({"reason": "  ", "duration": "1h"}, "reason"),
        ({"reason": "x"}, "until"),  # neither until nor duration
        ({"reason": "x", "until": "2024-03-03T13:00", "duration": "1h"}, "until"),  # both
        ({"reason": "x", "duration": "25h"}, "duration"),  # over tickets.max_shelve (24h)
        ({"reason": "x", "duration": "soon"}, "duration"),
        ({"reason": "x", "duration": "0s"}, "duration"),
        ({"reason": "x", "duration": "99999999999999d"}, "duration"),
        ({"reason": "x", "until": "2024-03-05T12:00"}, "until"),  # 48 h away
        ({"reason": "x", "until": "2024-03-03T11:00"}, "until"),  # in the past
        ({"reason": "x", "until": "tomorrow"}, "until"),
        ({"reason": 5, "duration": "1h"}, "reason"),
        ({"reason": "x" * 2001, "duration": "1h"}, "reason"),
    ],
)
def test_a11_bad_shelve_requests_are_400_naming_the_field(
    shared: Site, body: Any, parameter: str
) -> None:
    resp = shared.post(f"/api/v1/alerts/{shared.alerts['lift']}/shelve", TECH, body)
    _error(resp, 400, "invalid_parameter", parameter)
    assert shared.get(f"/api/v1/alerts/{shared.alerts['lift']}").json()["shelve"] is None


def test_a11_shelving_a_resolved_or_unknown_alert(site: Site) -> None:
    body = {"reason": "x", "duration": "1h"}
    _error(site.post(f"/api/v1/alerts/{site.alerts['pm2']}/shelve", TECH, body), 409, "conflict")
    _error(site.post("/api/v1/alerts/999/shelve", TECH, body), 404, "not_found")
    _error(site.post("/api/v1/alerts/999/unshelve", TECH), 404, "not_found")
    resp = site.client.post(
        f"/api/v1/alerts/{site.alerts['lift']}/shelve",
        content=b"{not json",
        headers={"Authorization": f"Bearer {TECH}", "Content-Type": "application/json"},
    )
    _error(resp, 400, "invalid_parameter")


# -- silences ---------------------------------------------------------------------------------
@BOTH_DATABASES
def test_silences_crud_by_role_and_shown_on_alerts(site: Site) -> None:
    window = {
        "purpose": "maintenance",
        "matchers": {"kinds": ["elevator"], "buildings": ["A"]},
        "duration": "4h",
        "comment": "A座电梯年检",
    }
    _error(site.post("/api/v1/silences", VIEWER, window), 403, "forbidden")
    _error(site.post("/api/v1/silences", TECH, window), 403, "forbidden")
    resp = site.post("/api/v1/silences", MANAGER, window)
    assert resp.status_code == 201, resp.text
    w = resp.json()
    assert {k: w[k] for k in ("purpose", "state", "created_by", "comment")} == {
        "purpose": "maintenance",
        "state": "ACTIVE",
        "created_by": "李主管",
        "comment": "A座电梯年检",
    }
    assert (w["starts_at"], w["ends_at"]) == ("2024-03-03T04:00:00Z", "2024-03-03T08:00:00Z")
    assert w["matchers"]["kinds"] == ["elevator"] and w["matchers"]["devices"] == []
    later = site.post(
        "/api/v1/silences",
        MANAGER,
        {
            "matchers": {"rule_ids": ["low_voltage"], "tags": {"panel": "1#"}},
            "starts_at": "2024-03-04T09:00",
            "ends_at": "2024-03-04T18:00",
            "comment": "1#配电柜改造",
        },
    ).json()
    assert later["state"] == "PENDING" and later["starts_at"] == "2024-03-04T01:00:00Z"

    # The alerts it covers say so; the others do not.
    covered = {x["id"]: x["silenced_by"] for x in site.get("/api/v1/alerts").json()["items"]}
    assert covered == {
        site.alerts["lift"]: w["id"],
        site.alerts["pm1"]: None,
        site.alerts["pm2"]: None,
    }

    def ids(**params: Any) -> list[int]:
        resp = site.get("/api/v1/silences", VIEWER, **params)
        assert resp.status_code == 200, resp.text
        return [x["id"] for x in resp.json()["items"]]

    assert ids() == [later["id"], w["id"]]
    assert ids(state="active") == [w["id"]] and ids(state="PENDING,EXPIRED") == [later["id"]]
    assert ids(purpose="maintenance") == [w["id"]]
    assert site.get(f"/api/v1/silences/{w['id']}").json() == w
    page = site.get("/api/v1/silences", limit=1).json()
    assert page["total"] == 2 and page["next"] is not None

    _error(site.delete(f"/api/v1/silences/{w['id']}", VIEWER), 403, "forbidden")
    _error(site.delete(f"/api/v1/silences/{w['id']}", TECH), 403, "forbidden")
    gone = site.delete(f"/api/v1/silences/{w['id']}", MANAGER)
    assert gone.status_code == 200, gone.text
    assert gone.json()["state"] == "CANCELLED" and gone.json()["cancelled_by"] == "李主管"
    _error(site.delete(f"/api/v1/silences/{w['id']}", MANAGER), 409, "conflict")
    _error(site.delete("/api/v1/silences/999", MANAGER), 404, "not_found")
    _error(site.get("/api/v1/silences/999"), 404, "not_found")
    assert site.get(f"/api/v1/alerts/{site.alerts['lift']}").json()["silenced_by"] is None
    assert ids(state="cancelled") == [w["id"]]


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"matchers": {}}, "matchers"),
        ({"matchers": {"buildings": ["Z"]}}, "matchers.buildings"),
        ({"matchers": {"devices": ["el-9"]}}, "matchers.devices"),
        ({"matchers": {"rule_ids": ["nope"]}}, "matchers.rule_ids"),
        ({"matchers": {"fault_classes": ["nope"]}}, "matchers.fault_classes"),
        ({"matchers": {"kinds": ["toaster"]}}, "matchers"),
        ({"matchers": {"colour": ["red"]}}, "matchers"),
        ({"comment": ""}, "comment"),
        ({"duration": None}, "ends_at"),  # neither ends_at nor duration
        ({"ends_at": "2024-03-03T13:00"}, "ends_at"),  # and duration: both
        ({"duration": None, "ends_at": "2024-03-03T11:00"}, "ends_at"),  # already over
        (
            {"duration": None, "starts_at": "2024-03-03T13:00", "ends_at": "2024-03-03T12:30"},
            "ends_at",
        ),
        ({"duration": "31d"}, "duration"),  # over tickets.max_silence
        ({"duration": "later"}, "duration"),
        ({"starts_at": "soon"}, "starts_at"),
        ({"purpose": "party"}, "purpose"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_silences_are_400_naming_the_field(
    shared: Site, change: dict[str, Any], parameter: str
) -> None:
    body = {"matchers": {"devices": ["el-1"]}, "duration": "1h", "comment": "x", **change}
    body = {k: v for k, v in body.items() if v is not None}
    _error(shared.post("/api/v1/silences", MANAGER, body), 400, "invalid_parameter", parameter)
    assert shared.get("/api/v1/silences").json()["total"] == 0


def test_bad_silence_list_parameters(shared: Site) -> None:
    _error(shared.get("/api/v1/silences", state="gone"), 400, "invalid_parameter", "state")
    _error(shared.get("/api/v1/silences", purpose="x"), 400, "invalid_parameter", "purpose")
    _error(shared.get("/api/v1/silences/0"), 400, "invalid_parameter", "silence_id")


# -- reopen -----------------------------------------------------------------------------------
@BOTH_DATABASES
def test_reopen_a_resolved_ticket_needs_a_manager_and_a_note(site: Site) -> None:
    ticket_id = site.get(f"/api/v1/alerts/{site.alerts['lift']}").json()["ticket_id"]
    path = f"/api/v1/tickets/{ticket_id}/reopen"
    reason = {"note": "客户反映又困人"}
    _error(site.post(path, MANAGER, reason), 409, "conflict")  # still open
    site.tickets.resolve_ticket(ticket_id, NOW - H, "王师傅", "换了门锁")
    _error(site.post(path, VIEWER, reason), 403, "forbidden")
    _error(site.post(path, TECH, reason), 403, "forbidden")
    _error(site.post(path, MANAGER, None), 400, "invalid_parameter", "note")
    _error(site.post(path, MANAGER, {"note": " "}), 400, "invalid_parameter", "note")
    resp = site.post(path, MANAGER, reason)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "REOPENED" and body["due_at"] == "2024-03-03T08:00:00Z"  # new P1 SLA
    last = body["events"][-1]
    assert (last["kind"], last["who"]) == ("reopened", "李主管")
    assert last["note"] == "reopened by hand after resolved (repeat repair): 客户反映又困人"
    detail = site.tickets.get_ticket(ticket_id)
    assert detail is not None and detail.ticket.reopen_count == 1
    _error(site.post(path, MANAGER, reason), 409, "conflict")  # already reopened
    _error(site.post("/api/v1/tickets/999/reopen", MANAGER, reason), 404, "not_found")


def test_reopen_is_refused_while_another_ticket_of_the_fault_is_open(site: Site) -> None:
    first = site.get(f"/api/v1/alerts/{site.alerts['lift']}").json()["ticket_id"]
    site.tickets.resolve_ticket(first, NOW - 2 * H, "王师傅", "ok")
    site.tickets.close_ticket(first, NOW - 2 * H, "李主管", "ok")
    # Resolve the episode and start a new one after the reopen window: a second ticket opens.
    _feed(site.engine, "el-1", "fault_code", 0, NOW - 2 * H)
    later = NOW + 30 * H
    second = site.engine.evaluate([Reading(later, "el-1", "fault_code", 9)], now=later)[0].ticket
    assert second is not None and second.id != first
    resp = site.post(f"/api/v1/tickets/{first}/reopen", MANAGER, {"note": "again"})
    err = _error(resp, 409, "conflict")
    assert second.number in err["message"]
