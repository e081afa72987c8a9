"""``grafana_url`` on tickets: the Grafana panel of the ticket's device, in the list and the
detail, over a real SQLite ticket database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from alerts.tickets import TicketRequest
from api import create_app
from config.models import SiteConfig
from dashboards import generate
from store.embedded import EmbeddedStore
from tests.api.conftest import NOW, TOKEN, site_config

GRAFANA = "https://grafana.example.com/"


@contextmanager
def _client(config: SiteConfig, tickets: TicketStore) -> Iterator[TestClient]:
    store = EmbeddedStore(":memory:")
    try:
        with TestClient(
            create_app(config, store, tickets, tokens={TOKEN: "viewer"}, clock=lambda: NOW)
        ) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            yield client
    finally:
        store.close()


@pytest.fixture
def tickets(tmp_path: Path) -> Iterator[TicketStore]:
    t = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    at = NOW - timedelta(hours=1)
    t.open_or_add_occurrence(TicketRequest("el-1 电梯故障", "el-1", "A", "lift", "critical"), at)
    # A device since removed from the config: its tickets stay, without a link.
    t.open_or_add_occurrence(TicketRequest("old 电压", "pm-old", "B", "power", "minor"), at)
    yield t
    t.close()


def test_tickets_link_to_their_devices_panel(tickets: TicketStore) -> None:
    config = site_config(grafana={"url": GRAFANA})
    with _client(config, tickets) as client:
        items = {t["device"]: t for t in client.get("/api/v1/tickets").json()["items"]}
        assert items["pm-old"]["grafana_url"] is None
        url = items["el-1"]["grafana_url"]
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}/" == GRAFANA
        assert parts.path == "/d/fm-riverside-elevators"
        query = parse_qs(parts.query)
        assert query["var-device"] == ["el-1"] and query["var-building"] == ["A"]
        # The linked panel is on the generated elevators dashboard.
        board = next(b for b in generate(config) if b.uid == "fm-riverside-elevators")
        assert int(query["viewPanel"][0]) in {p.id for p in board.all_panels()}
        detail = client.get(f"/api/v1/tickets/{items['el-1']['id']}").json()
        assert detail["grafana_url"] == url
        assert client.get(f"/api/v1/tickets/{items['pm-old']['id']}").json()["grafana_url"] is None


def test_without_grafana_url_there_is_no_link(tickets: TicketStore) -> None:
    with _client(site_config(), tickets) as client:
        items = client.get("/api/v1/tickets").json()["items"]
        assert [t["grafana_url"] for t in items] == [None, None]
        assert client.get(f"/api/v1/tickets/{items[0]['id']}").json()["grafana_url"] is None
        schema = client.get("/openapi.json").json()["components"]["schemas"]["TicketOut"]
        assert "grafana_url" in schema["properties"]
