"""An API over a real EmbeddedStore (DuckDB in memory) and a real SQLite ticket database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from api import create_app
from config.models import SiteConfig
from store.embedded import EmbeddedStore

TOKEN = "test-token-viewer-3f9a"
NOW = datetime(2024, 3, 3, 4, 0, tzinfo=UTC)  # 12:00 on 3 March in Asia/Shanghai


def _device(id_: str, kind: str, building: str, profile: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "name": f"{id_} 名称",
        "kind": kind,
        "location": {"building": building, "floor": "B1"},
        "source": {"type": "modbus_tcp", "host": "10.0.0.5", "unit_id": 3, "profile": profile},
        "poll_interval": "10s",
        **extra,
    }


def site_config(**overrides: Any) -> SiteConfig:
    data: dict[str, Any] = {
        "site": {"id": "riverside", "name": "滨江广场", "timezone": "Asia/Shanghai"},
        "buildings": [
            {"id": "A", "name": "A座", "floor_area_m2": 20000, "floors": 20},
            {"id": "B", "name": "B座", "floor_area_m2": 15000, "floors": 12},
        ],
        "devices": [
            _device("pm-1", "power_meter", "A", "generic_power_meter_3p", tags={"panel": "1#"}),
            _device("pm-2", "power_meter", "B", "generic_power_meter_3p"),
            _device("pm-3", "power_meter", "B", "generic_power_meter_3p"),
            _device("el-1", "elevator", "A", "elevator_gbt24476"),
            _device("wm-1", "water_meter", "B", "generic_water_meter"),
        ],
        "rules": [
            {
                "id": "lift_fault",
                "name": "电梯故障",
                "metric": "fault_code",
                "select": {"kinds": ["elevator"]},
                "above": 0,
                "severity": "critical",
                "fault_class": "elevator_fault",
            },
            {
                "id": "low_voltage",
                "name": "电压过低",
                "metric": "voltage_a",
                "select": {"kinds": ["power_meter"]},
                "below": 200,
                "severity": "minor",
                "fault_class": "power_quality",
            },
        ],
    }
    data.update(overrides)
    return SiteConfig.model_validate(data)


@dataclass
class Api:
    client: TestClient
    store: EmbeddedStore
    tickets: TicketStore
    config: SiteConfig

    def get(self, path: str, token: str | None = TOKEN, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.get(path, params=params, headers=headers)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    cfg = site_config()
    store = EmbeddedStore(":memory:")
    tickets = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    app = create_app(
        cfg,
        store,
        tickets,
        tokens={TOKEN: "viewer"},
        status=lambda: {"store": {"up": True, "outbox_depth": 0}},
        clock=lambda: NOW,
    )
    with TestClient(app) as client:
        yield Api(client, store, tickets, cfg)
    tickets.close()
    store.close()
