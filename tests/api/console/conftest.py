"""A live facmon site for the browser tests: the real app under uvicorn over a real
EmbeddedStore and a SQLite ticket database, with tokens from the site config (so each has a
name) and a clock fixed at NOW."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts import AlertState, TicketStore
from alerts.tickets import NewAlert, TicketRecord, TicketRequest
from api import create_app
from store.embedded import EmbeddedStore
from store.reading import Reading
from tests.api.conftest import NOW, site_config
from tests.fixtures.browser import serve_app

VIEWER = "console-viewer-token"
TECH = "console-tech-token"
MANAGER = "console-manager-token"
GRAFANA = "https://grafana.example.com"
OPENED = NOW - timedelta(minutes=30)
_SERIAL = itertools.count(1)


@dataclass
class Site:
    url: str
    tickets: TicketStore
    store: EmbeddedStore

    def open_ticket(self) -> TicketRecord:
        """A lift fault firing on el-1, opening a NEW ticket the way the engine does. Each call
        uses a fault class of its own, so every test has its own ticket."""
        n = next(_SERIAL)
        new = NewAlert(f"fp-{n}", "lift_fault", "riverside", "A", "el-1", "fault_code", "critical")
        alert, _ = self.tickets.start_alert(new, AlertState.PENDING, OPENED, 5.0)
        _, ticket = self.tickets.fire_alert(
            alert,
            OPENED,
            5.0,
            TicketRequest("el-1 电梯故障", "el-1", "A", f"elevator_fault_{n}", "critical"),
        )
        return ticket

    def api(self, path: str, token: str = MANAGER) -> Any:
        resp = httpx.get(self.url + path, headers={"Authorization": f"Bearer {token}"})
        resp.raise_for_status()
        return resp.json()


def _readings() -> list[Reading]:
    def ago(seconds: float) -> datetime:
        return NOW - timedelta(seconds=seconds)

    out = [
        Reading(ago(5), "pm-1", "device_up", 1.0),
        Reading(ago(8), "el-1", "device_up", 0.0),
        Reading(ago(8), "el-1", "last_ok_age", 600.0, "s"),  # down for ten minutes
        Reading(ago(600), "pm-2", "device_up", 1.0),  # answered, but 60 polls ago
        Reading(ago(3), "wm-1", "device_up", 1.0),
    ]
    # pm-1's import counter over 1 March (site time): 2.5 kWh an hour.
    start = NOW - timedelta(days=2, hours=12)  # 2024-03-01T00:00+08:00
    out += [
        Reading(start + timedelta(hours=h), "pm-1", "energy_import", 1000.0 + 2.5 * h, "kWh")
        for h in range(25)
    ]
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp: Path = tmp_path_factory.mktemp("console")
    cfg = site_config(
        api={
            "tokens": [
                {"name": "大堂显示屏", "token": VIEWER, "role": "viewer"},
                {"name": "王师傅", "token": TECH, "role": "technician"},
                {"name": "李主管", "token": MANAGER, "role": "manager"},
            ]
        },
        grafana={"url": GRAFANA},  # never contacted: tickets only link to it
    )
    store = EmbeddedStore(tmp / "readings.duckdb")
    tickets = TicketStore(f"sqlite:///{tmp / 'tickets.db'}")
    store.write(_readings())
    app = create_app(cfg, store, tickets, clock=lambda: NOW)
    try:
        with serve_app(app) as url:
            yield Site(url, tickets, store)
    finally:
        tickets.close()
        store.close()
