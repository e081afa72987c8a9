"""POST /api/v1/tickets/{id}/{action} and GET /api/v1/me: the ticket lifecycle people drive
(T2, T3, T5), by role, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from alerts.tickets import OPEN_STATUSES, TICKET_MOVES, TicketRequest
from api import create_app
from api.auth import ENV_TOKEN_NAME, named_tokens
from api.routes.tickets import ACTIONS
from store.embedded import EmbeddedStore
from tests.alerts.conftest import _pg_schema
from tests.api.conftest import NOW, site_config

VIEWER = "tok-viewer-1"
TECH = "tok-tech-wang"
MANAGER = "tok-manager-li"
ADMIN = "tok-admin-env"
TOKENS: dict[str, Any] = {
    VIEWER: ("大堂显示屏", "viewer"),
    TECH: ("王师傅", "technician"),
    MANAGER: ("李主管", "manager"),
    ADMIN: "admin",  # a bare role and not in the config: the FACMON_API_TOKEN one
}
CREATED = NOW - timedelta(hours=1)
# The lifecycle itself runs on both ticket databases; role and field checks, which never reach
# the database, on SQLite alone.
BOTH_DATABASES = pytest.mark.parametrize("desk", ["sqlite", "postgresql"], indirect=True)


@dataclass
class Desk:
    client: TestClient
    tickets: TicketStore
    ticket_id: int

    def act(self, action: str, token: str = TECH, ticket_id: int | None = None, **body: Any) -> Any:
        tid = self.ticket_id if ticket_id is None else ticket_id
        return self.client.post(
            f"/api/v1/tickets/{tid}/{action}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )

    def get(self, path: str, token: str = TECH) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {token}"})

    def events(self) -> list[tuple[str, str, str]]:
        detail = self.tickets.get_ticket(self.ticket_id)
        assert detail is not None
        return [(e.kind, e.who, e.note) for e in detail.events]


@pytest.fixture(scope="module")
def _desks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Desk]]:
    """One app per ticket database for the module (building a FastAPI app is the slow part);
    every test gets a ticket of its own on it."""
    made: dict[str, Desk] = {}
    with contextlib.ExitStack() as stack:

        def make(kind: str) -> Desk:
            if kind not in made:
                if kind == "postgresql":
                    url = stack.enter_context(_pg_schema())
                else:
                    url = f"sqlite:///{tmp_path_factory.mktemp('desk') / 'tickets.db'}"
                store = EmbeddedStore(":memory:")
                stack.callback(store.close)
                tickets = TicketStore(url)
                stack.callback(tickets.close)
                app = create_app(site_config(), store, tickets, tokens=TOKENS, clock=lambda: NOW)
                client = stack.enter_context(TestClient(app))
                made[kind] = Desk(client, tickets, 0)
            return made[kind]

        yield make


@pytest.fixture
def desk(request: pytest.FixtureRequest, _desks: Callable[[str], Desk]) -> Desk:
    """A NEW ticket, on SQLite unless a test asks for both databases with ``BOTH_DATABASES``."""
    base = _desks(getattr(request, "param", "sqlite"))
    # A fault class of its own: no test's ticket takes another's occurrence or reopens it (D4).
    fault = f"elevator_fault_{next(_SERIAL)}"
    ticket = base.tickets.open_or_add_occurrence(
        TicketRequest("el-1 电梯故障", "el-1", "A", fault, "critical"), CREATED
    )
    return Desk(base.client, base.tickets, ticket.id)


_SERIAL = itertools.count()


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    assert body["error"]["code"] == code
    return dict(body["error"])


@BOTH_DATABASES
def test_T2_T3_a_technician_walks_a_ticket_through_the_visit_and_a_manager_closes_it(
    desk: Desk,
) -> None:
    statuses = []
    visit: list[tuple[str, dict[str, Any]]] = [
        ("acknowledge", {}),
        ("arrived", {"note": "在机房"}),
        ("start", {}),
        ("hold", {"reason": "等门机板配件", "resume_at": "2024-03-03T16:30"}),
        ("resume", {}),
        ("resolve", {"note": "更换门机板，试运行正常"}),
    ]
    for action, body in visit:
        resp = desk.act(action, **body)
        assert resp.status_code == 200, resp.text
        statuses.append(resp.json()["status"])
    assert statuses == [
        "ACCEPTED",
        "ACCEPTED",  # arriving on site is an event, not a status
        "IN_PROGRESS",
        "ON_HOLD",
        "IN_PROGRESS",
        "RESOLVED",
    ]
    closed = desk.act("close", MANAGER, note="复查运行 30 分钟无故障")
    assert closed.status_code == 200 and closed.json()["status"] == "CLOSED"
    assert closed.json()["overdue"] is False
    # The response carries the history; who is the token's name, the time the app's clock.
    assert [(e["kind"], e["who"], e["note"]) for e in closed.json()["events"]] == desk.events()
    assert desk.events() == [
        ("created", "facmon", "el-1 电梯故障"),
        ("accepted", "王师傅", ""),
        ("arrived", "王师傅", "在机房"),
        ("started", "王师傅", ""),
        # Site-local (Asia/Shanghai) resume time, as the technician typed it (T3).
        ("on_hold", "王师傅", "等门机板配件 (expected resume 2024-03-03T16:30+08:00)"),
        ("resumed", "王师傅", ""),
        ("resolved", "王师傅", "更换门机板，试运行正常"),
        ("closed", "李主管", "复查运行 30 分钟无故障"),
    ]
    assert {e["at"] for e in closed.json()["events"][1:]} == {"2024-03-03T04:00:00Z"}
    listed = desk.get("/api/v1/tickets?status=open&limit=500").json()
    assert desk.ticket_id not in {t["id"] for t in listed["items"]}


def test_a_viewer_is_refused_403_and_nothing_changes(desk: Desk) -> None:
    for action in ("acknowledge", "arrived", "resolve", "close"):
        err = _error(desk.act(action, VIEWER, note="x"), 403, "forbidden")
        assert "viewer" in err["message"] and "大堂显示屏" in err["message"]
    err = _error(desk.act("acknowledge", VIEWER), 403, "forbidden")
    assert err["message"] == (
        "the viewer token '大堂显示屏' cannot accept tickets; "
        "that needs the technician role or above"
    )
    assert desk.events() == [("created", "facmon", "el-1 电梯故障")]
    assert desk.get(f"/api/v1/tickets/{desk.ticket_id}", VIEWER).json()["status"] == "NEW"


@BOTH_DATABASES
def test_only_managers_and_admins_assign_close_and_cancel(desk: Desk) -> None:
    refused: list[tuple[str, dict[str, Any]]] = [
        ("assign", {"assignee": "王师傅"}),
        ("cancel", {"reason": "重复"}),
        ("close", {"note": "ok"}),
    ]
    for action, body in refused:
        err = _error(desk.act(action, TECH, **body), 403, "forbidden")
        assert "that needs the manager role or above" in err["message"]
    assigned = desk.act("assign", MANAGER, assignee="王师傅", note="今天下午处理")
    assert assigned.status_code == 200 and assigned.json()["status"] == "ASSIGNED"
    assert desk.act("accept", TECH).json()["status"] == "ACCEPTED"
    cancelled = desk.act("cancel", ADMIN, reason="误报：检修期间的测试信号")
    assert cancelled.json()["status"] == "CANCELLED"
    assert desk.events()[1:] == [
        ("assigned", "李主管", "assigned to 王师傅: 今天下午处理"),
        ("accepted", "王师傅", ""),
        ("cancelled", ENV_TOKEN_NAME, "误报：检修期间的测试信号"),
    ]


@BOTH_DATABASES
@pytest.mark.parametrize(
    ("steps", "action", "token", "message"),
    [
        (
            [],
            "arrived",
            TECH,
            "Cannot report arrival on WO-000001: it is new and not yet accepted. "
            "Arrival on site is reported on an accepted ticket, or while work is under way.",
        ),
        (
            [],
            "start",
            TECH,
            "Cannot start work on WO-000001: it is new and not yet accepted. "
            "Work starts on an accepted ticket; a ticket on hold is resumed instead.",
        ),
        (
            ["accept"],
            "resume",
            TECH,
            "Cannot resume WO-000001: it is accepted, with work not started. "
            "Only a ticket on hold can be resumed.",
        ),
        (
            ["accept", "start"],
            "cancel",
            MANAGER,
            "Cannot cancel WO-000001: it is in progress. "
            "Only a ticket on which work has not started can be cancelled.",
        ),
        (
            [],
            "close",
            MANAGER,
            "Cannot close WO-000001: it is new and not yet accepted. "
            "Resolve it first: only a resolved ticket can be closed.",
        ),
        (
            ["resolve"],
            "resolve",
            TECH,
            "Cannot resolve WO-000001: it is already resolved. "
            "Only a ticket that is still open can be resolved.",
        ),
        (
            ["resolve"],
            "acknowledge",
            TECH,
            "Cannot accept WO-000001: it is already resolved. "
            "Only a new, assigned or reopened ticket can be accepted.",
        ),
    ],
)
def test_a_move_the_lifecycle_does_not_allow_is_409_with_a_plain_message(
    desk: Desk, steps: list[str], action: str, token: str, message: str
) -> None:
    for step in steps:
        assert desk.act(step, note="done").status_code == 200
    before = desk.events()
    err = _error(desk.act(action, token, note="n", reason="r"), 409, "conflict")
    assert err["message"] == message.replace("WO-000001", f"WO-{desk.ticket_id:06d}")
    assert desk.events() == before


@pytest.mark.parametrize(
    ("action", "body", "parameter", "token"),
    [
        ("resolve", {}, "note", TECH),
        ("resolve", {"note": "   "}, "note", TECH),
        ("close", {}, "note", MANAGER),
        ("hold", {"resume_at": "2024-03-03T16:00"}, "reason", TECH),
        ("hold", {"reason": "等配件"}, "resume_at", TECH),
        ("hold", {"reason": "等配件", "resume_at": "soon"}, "resume_at", TECH),
        # 11:00 site time is before the app's now (12:00): not an expected resume.
        ("hold", {"reason": "等配件", "resume_at": "2024-03-03T11:00"}, "resume_at", TECH),
        ("cancel", {}, "reason", MANAGER),
        ("assign", {"assignee": ""}, "assignee", MANAGER),
        ("fix", {}, "action", TECH),
    ],
)
def test_missing_or_bad_fields_are_400_naming_the_field(
    desk: Desk, action: str, body: dict[str, Any], parameter: str, token: str
) -> None:
    desk.act("accept")
    desk.act("start")
    err = _error(desk.act(action, token, **body), 400, "invalid_parameter")
    assert [d["parameter"] for d in err["details"]] == [parameter]
    assert parameter in err["message"]
    assert desk.events()[-1][0] == "started"


def test_unknown_ticket_is_404_and_a_missing_token_401(desk: Desk) -> None:
    _error(desk.act("accept", ticket_id=999), 404, "not_found")
    resp = desk.client.post(f"/api/v1/tickets/{desk.ticket_id}/accept")
    _error(resp, 401, "unauthorized")


def test_an_empty_body_is_fine_for_steps_that_need_nothing(desk: Desk) -> None:
    resp = desk.client.post(
        f"/api/v1/tickets/{desk.ticket_id}/acknowledge",
        headers={"Authorization": f"Bearer {TECH}"},
    )
    assert resp.status_code == 200 and resp.json()["status"] == "ACCEPTED"


def test_me_names_the_token_its_role_and_the_moves_it_may_make(desk: Desk) -> None:
    assert desk.get("/api/v1/me", VIEWER).json() == {
        "name": "大堂显示屏",
        "role": "viewer",
        "actions": {},
    }
    tech = desk.get("/api/v1/me", TECH).json()
    assert tech["name"] == "王师傅" and tech["role"] == "technician"
    assert set(tech["actions"]) == {
        "acknowledge",
        "accept",
        "arrived",
        "start",
        "hold",
        "resume",
        "resolve",
        "follow_up",
    }
    assert tech["actions"]["accept"] == ["ASSIGNED", "NEW", "REOPENED"]
    assert tech["actions"]["arrived"] == ["ACCEPTED", "IN_PROGRESS", "ON_HOLD"]
    assert tech["actions"]["resolve"] == sorted(s.value for s in OPEN_STATUSES)
    manager = desk.get("/api/v1/me", MANAGER).json()
    assert set(manager["actions"]) == set(ACTIONS)
    assert manager["actions"]["close"] == ["RESOLVED"]
    admin = desk.get("/api/v1/me", ADMIN).json()
    assert admin["name"] == ENV_TOKEN_NAME and admin["role"] == "admin"


def test_every_action_maps_to_a_move_of_the_store() -> None:
    assert {s.kind for s in ACTIONS.values()} == set(TICKET_MOVES)


def test_token_names_come_from_the_config_and_unknown_roles_are_refused(tmp_path: Path) -> None:
    cfg = site_config(
        api={"tokens": [{"name": "zhang", "token": "cfg-tech", "role": "technician"}]}
    )
    # As the runtime passes them: token -> role, config tokens plus FACMON_API_TOKEN.
    assert named_tokens({"cfg-tech": "technician", "env": "admin"}, cfg.api.tokens) == {
        "cfg-tech": ("zhang", "technician"),
        "env": (ENV_TOKEN_NAME, "admin"),
    }
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        named_tokens({"x": "boss"})
    store, tickets = EmbeddedStore(":memory:"), TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    t = tickets.open_or_add_occurrence(
        TicketRequest("pm-1 电压过低", "pm-1", "A", "power_quality", "minor"), CREATED
    )
    try:
        for tokens in (None, {"cfg-tech": "technician"}):
            with TestClient(create_app(cfg, store, tickets, tokens=tokens)) as client:
                me = client.get("/api/v1/me", headers={"Authorization": "Bearer cfg-tech"})
                assert me.json()["name"] == "zhang"
        with TestClient(create_app(cfg, store, tickets)) as client:
            resp = client.post(
                f"/api/v1/tickets/{t.id}/accept", headers={"Authorization": "Bearer cfg-tech"}
            )
            assert resp.json()["events"][-1]["who"] == "zhang"
    finally:
        tickets.close()
        store.close()


def test_openapi_documents_the_actions_and_their_refusals(desk: Desk) -> None:
    doc = desk.client.get("/openapi.json").json()
    op = doc["paths"]["/api/v1/tickets/{ticket_id}/{action}"]["post"]
    assert {"200", "400", "401", "403", "404", "409"} <= set(op["responses"])
    assert "`hold` (technician or above)" in op["description"]
    assert not any(p.startswith("/console") for p in doc["paths"])
