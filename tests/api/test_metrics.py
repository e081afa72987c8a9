"""GET /metrics on the real app (TestClient), parsed with prometheus_client's own parser, and
the pagination of the list endpoints that grow (GET /api/v1/tickets)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from alerts import AlertState, TicketStore
from alerts.tickets import NewAlert, TicketRequest
from api import create_app
from api.metrics import status_figures
from store.embedded import EmbeddedStore
from tests.api.conftest import NOW, TOKEN, Api, site_config

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, token: str = TOKEN) -> Samples:
    res = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(res.text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def req(device: str, building: str, fault: str, severity: str) -> TicketRequest:
    return TicketRequest(f"{device} {fault}", device, building, fault, severity)


def test_metrics_need_a_bearer_token_of_any_role(api: Api) -> None:
    for token in (None, "wrong"):
        res = api.get("/metrics", token=token)
        assert res.status_code == 401
        assert res.json()["error"]["code"] == "unauthorized"
        assert res.headers["www-authenticate"] == "Bearer"
    assert api.get("/metrics").status_code == 200  # the fixture's token is a viewer's


def test_ticket_alert_http_and_status_figures(api: Api) -> None:
    t = api.tickets
    # P1 opened 5 h ago: 4 h SLA, so overdue. Its alert is FIRING.
    t.start_alert(
        NewAlert("a" * 64, "lift_fault", "riverside", "A", "el-1", "fault_code", "critical"),
        AlertState.FIRING,
        NOW - timedelta(hours=5),
        5.0,
        req("el-1", "A", "elevator_fault", "critical"),
    )
    # A PENDING alert opens no ticket.
    t.start_alert(
        NewAlert("b" * 64, "low_voltage", "riverside", "A", "pm-1", "voltage_a", "minor"),
        AlertState.PENDING,
        NOW - timedelta(minutes=1),
        190.0,
    )
    t.open_or_add_occurrence(req("pm-2", "B", "power_quality", "major"), NOW - timedelta(hours=2))
    done = t.open_or_add_occurrence(
        req("wm-1", "B", "water_leak", "minor"), NOW - timedelta(hours=9)
    )
    t.resolve_ticket(done.id, NOW - timedelta(hours=1), "wang")

    assert api.get("/api/v1/tickets").status_code == 200
    assert api.get("/api/v1/tickets", token=None).status_code == 401
    assert api.get("/api/v1/tickets/999").status_code == 404
    assert api.get("/no/such/page/42").status_code == 404

    m = scrape(api.client)

    assert [sample(m, "facmon_tickets_open", priority=p) for p in ("P1", "P2", "P3")] == [1, 1, 0]
    assert [sample(m, "facmon_tickets_overdue", priority=p) for p in ("P1", "P2", "P3")] == [
        1,
        0,
        0,
    ]
    assert sample(m, "facmon_alerts_unresolved", severity="critical", state="FIRING") == 1
    assert sample(m, "facmon_alerts_unresolved", severity="minor", state="PENDING") == 1
    # Zero series for the severities the rules use, so "== 0" alert expressions work.
    assert sample(m, "facmon_alerts_unresolved", severity="critical", state="PENDING") == 0
    assert sample(m, "facmon_ticket_db_up") == 1

    # Route templates, never raw paths; a path no route serves is "unmatched".
    def requests(route: str, status: str) -> float:
        return sample(m, "facmon_http_requests_total", route=route, method="GET", status=status)

    assert requests("/api/v1/tickets", "200") == 1
    assert requests("/api/v1/tickets", "401") == 1
    assert requests("/api/v1/tickets/{ticket_id}", "404") == 1
    assert requests("unmatched", "404") == 1
    assert not any("/999" in dict(labels).get("route", "") for _, labels in m)
    count = sample(
        m, "facmon_http_request_duration_seconds_count", route="/api/v1/tickets", method="GET"
    )
    assert count == 2
    inf = sample(
        m,
        "facmon_http_request_duration_seconds_bucket",
        route="/api/v1/tickets",
        method="GET",
        le="+Inf",
    )
    assert inf == 2

    # From the fixture's status(): {"store": {"up": True, "outbox_depth": 0}}.
    assert sample(m, "facmon_status_ok") == 1
    assert sample(m, "facmon_store_up") == 1
    assert sample(m, "facmon_store_outbox_depth") == 0

    # The scrape itself is counted on the next one.
    again = scrape(api.client)
    assert sample(again, "facmon_http_requests_total", route="/metrics", method="GET", status="200")


def test_each_app_has_its_own_registry_and_failures_show_as_zero(tmp_path: Path) -> None:
    db = tmp_path / "tickets.db"
    tickets = TicketStore(f"sqlite:///{db}")
    store = EmbeddedStore(":memory:")

    def broken() -> dict[str, Any]:
        raise RuntimeError("status check failed")

    try:
        a = create_app(site_config(), store, tickets, tokens={TOKEN: "admin"}, clock=lambda: NOW)
        b = create_app(site_config(), store, tickets, tokens={"other": "viewer"}, status=broken)
        with TestClient(a) as ca, TestClient(b) as cb:
            ca.get("/health")
            ca.get("/health")
            ma, mb = scrape(ca), scrape(cb, token="other")
            health = {"route": "/health", "method": "GET", "status": "200"}
            assert sample(ma, "facmon_http_requests_total", **health) == 2
            assert ("facmon_http_requests_total", frozenset(health.items())) not in mb
            assert ("facmon_status_ok", frozenset()) not in ma  # no status callable at all
            assert sample(mb, "facmon_status_ok") == 0
            assert sample(mb, "facmon_ticket_db_up") == 1

            # The ticket database goes away: the scrape still answers, with db_up 0.
            tickets.close()
            db.unlink()
            mb = scrape(cb, token="other")
            assert sample(mb, "facmon_ticket_db_up") == 0
            assert not any(name == "facmon_tickets_open" for name, _ in mb)
    finally:
        tickets.close()
        store.close()


def test_openmetrics_when_the_scraper_asks_for_it(api: Api) -> None:
    res = api.client.get(
        "/metrics",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/openmetrics-text; version=1.0.0",
        },
    )
    assert res.headers["content-type"].startswith("application/openmetrics-text")
    # The OpenMetrics parser has no type hints.
    families = {f.name: f for f in openmetrics_families(res.text)}  # type: ignore[no-untyped-call]
    assert families["facmon_http_requests"].type == "counter"
    assert families["facmon_tickets_open"].type == "gauge"


def test_status_figures_flatten_two_levels_of_numbers() -> None:
    assert status_figures(
        {
            "store": {"backend": "embedded", "up": False, "outbox_depth": 7, "last_error": None},
            "alerts": {"evaluation_errors": 2},
            "mqtt": {"connected": True, "bad": {"site/a/b": {"json": 3}}, "unknown_devices": {}},
            "uptime_s": 12.5,
            "ratio": float("nan"),
        }
    ) == {
        "store_up": 0.0,
        "store_outbox_depth": 7.0,
        "alerts_evaluation_errors": 2.0,
        "mqtt_connected": 1.0,
        "uptime_s": 12.5,
    }


# -- pagination -------------------------------------------------------------------------------
def test_tickets_pages_have_a_total_and_a_next_link_that_keeps_the_filters(api: Api) -> None:
    made = [
        api.tickets.open_or_add_occurrence(
            req(f"pm-{i}", "A", "power_quality", "major"), NOW - timedelta(minutes=10 - i)
        )
        for i in range(5)
    ]
    api.tickets.open_or_add_occurrence(req("wm-1", "B", "water_leak", "minor"), NOW)

    first = api.get("/api/v1/tickets", status="open", building="A", limit=2).json()
    assert (first["total"], first["limit"], first["offset"]) == (5, 2, 0)
    assert first["next"] == "/api/v1/tickets?status=open&building=A&limit=2&offset=2"

    seen = [t["id"] for t in first["items"]]
    link = first["next"]
    pages = 1
    while link is not None:
        page = api.client.get(link, headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert page["total"] == 5
        seen += [t["id"] for t in page["items"]]
        link = page["next"]
        pages += 1
    assert pages == 3
    assert seen == [t.id for t in reversed(made)]  # newest first, each once

    exact = api.get("/api/v1/tickets", building="A", limit=5).json()
    assert len(exact["items"]) == 5 and exact["next"] is None
    past = api.get("/api/v1/tickets", offset=50).json()
    assert (past["items"], past["total"], past["next"]) == ([], 6, None)

    for params, name in [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
    ]:
        res = api.client.get(
            "/api/v1/tickets", params=params, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert res.status_code == 400
        assert res.json()["error"]["details"][0]["parameter"] == name
