"""Devices, latest readings and tickets through the API, over real stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alerts import AlertEngine
from store.reading import Quality, Reading
from tests.api.conftest import NOW, Api


def test_devices_with_location_source_and_live_status(api: Api) -> None:
    api.store.write(
        [
            Reading(NOW - timedelta(seconds=5), "pm-1", "device_up", 1.0),
            Reading(NOW - timedelta(seconds=8), "el-1", "device_up", 0.0),
            Reading(NOW - timedelta(minutes=10), "pm-2", "device_up", 1.0),  # 60 polls ago
        ]
    )
    resp = api.get("/api/v1/devices")
    assert resp.status_code == 200
    items = {d["id"]: d for d in resp.json()["items"]}
    assert list(items) == ["pm-1", "pm-2", "pm-3", "el-1", "wm-1"]  # config order
    pm1 = items["pm-1"]
    assert pm1["name"] == "pm-1 名称" and pm1["kind"] == "power_meter"
    assert pm1["location"] == {"building": "A", "floor": "B1", "tenant": None}
    assert pm1["tags"] == {"panel": "1#"}
    assert pm1["source"] == {
        "type": "modbus_tcp",
        "host": "10.0.0.5",
        "port": 502,
        "unit_id": 3,
        "profile": "generic_power_meter_3p",
        "poll_interval_s": 10.0,
    }
    assert pm1["status"] == {
        "state": "up",
        "last_seen": "2024-03-03T03:59:55Z",
        "age_s": 5.0,
        "stale": False,
    }
    assert items["el-1"]["status"]["state"] == "down"
    assert items["pm-2"]["status"]["state"] == "up" and items["pm-2"]["status"]["stale"] is True
    assert items["pm-3"]["status"] == {
        "state": "unknown",
        "last_seen": None,
        "age_s": None,
        "stale": True,
    }


def test_latest_readings_with_unit_quality_time_and_age(api: Api) -> None:
    t = NOW - timedelta(seconds=30)
    api.store.write(
        [
            Reading(t - timedelta(seconds=10), "pm-1", "voltage_a", 229.0, "V"),
            Reading(t, "pm-1", "voltage_a", 230.5, "V"),
            Reading(t, "pm-1", "energy_import", 1234.56, "kWh", Quality.UNCERTAIN),
            Reading(t, "pm-2", "voltage_a", 9999.0, "V", Quality.BAD),
            Reading(t, "el-1", "floor", 12.0, "floor"),
            Reading(t, "wm-1", "volume", 88.125, "m3"),
        ]
    )
    items = api.get("/api/v1/readings/latest").json()["items"]
    assert [(x["device"], x["metric"]) for x in items] == [
        ("el-1", "floor"),
        ("pm-1", "energy_import"),
        ("pm-1", "voltage_a"),
        ("pm-2", "voltage_a"),
        ("wm-1", "volume"),
    ]
    v = items[2]
    assert v == {
        "device": "pm-1",
        "building": "A",
        "kind": "power_meter",
        "metric": "voltage_a",
        "value": 230.5,
        "unit": "V",
        "quality": "GOOD",
        "time": "2024-03-03T03:59:30Z",
        "age_s": 30.0,
    }
    assert items[1]["quality"] == "UNCERTAIN" and items[3]["quality"] == "BAD"

    def pairs(**params: Any) -> list[tuple[str, str]]:
        resp = api.get("/api/v1/readings/latest", **params)
        assert resp.status_code == 200, resp.text
        return [(x["device"], x["metric"]) for x in resp.json()["items"]]

    assert pairs(device="pm-1", metric="voltage_a") == [("pm-1", "voltage_a")]
    assert pairs(kind="water_meter") == [("wm-1", "volume")]
    assert pairs(building="B") == [("pm-2", "voltage_a"), ("wm-1", "volume")]
    assert pairs(building="B", kind="elevator") == []
    assert pairs(metric=["floor", "volume"]) == [("el-1", "floor"), ("wm-1", "volume")]


def test_tickets_opened_by_alerts_listed_filtered_and_paginated(api: Api) -> None:
    engine = AlertEngine(api.config, api.tickets)
    t0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
    engine.evaluate([Reading(t0, "el-1", "fault_code", 31)], now=t0)
    t1 = t0 + timedelta(hours=1)
    engine.evaluate(
        [Reading(t1, "pm-2", "voltage_a", 180), Reading(t1, "pm-3", "voltage_a", 185)], now=t1
    )
    t2 = t0 + timedelta(hours=2)
    engine.evaluate([Reading(t2, "el-1", "fault_code", 0)], now=t2)

    page = api.get("/api/v1/tickets").json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
    assert [x["device"] for x in page["items"]] == ["pm-3", "pm-2", "el-1"]
    lift = page["items"][2]
    assert lift["title"] == "el-1 名称: 电梯故障"
    assert (lift["priority"], lift["status"], lift["building"]) == ("P1", "NEW", "A")
    assert lift["created_at"] == "2024-03-01T02:00:00Z"
    assert lift["due_at"] == "2024-03-01T06:00:00Z"
    assert lift["overdue"] is True  # NOW is two days later and nobody resolved it
    assert lift["number"].startswith("WO-") and lift["occurrences"] == 1

    second = api.get("/api/v1/tickets", limit=1, offset=1).json()
    assert second["total"] == 3 and [x["device"] for x in second["items"]] == ["pm-2"]
    assert [x["device"] for x in api.get("/api/v1/tickets", building="B").json()["items"]] == [
        "pm-3",
        "pm-2",
    ]
    assert api.get("/api/v1/tickets", device="el-1").json()["total"] == 1
    assert api.get("/api/v1/tickets", status="open").json()["total"] == 3
    assert api.get("/api/v1/tickets", status="closed,cancelled").json()["total"] == 0
    assert api.get("/api/v1/tickets", status="NEW").json()["total"] == 3

    detail = api.get(f"/api/v1/tickets/{lift['id']}").json()
    assert {k: v for k, v in detail.items() if k != "events"} == lift
    assert [(e["kind"], e["who"], e["at"]) for e in detail["events"]] == [
        ("created", "facmon", "2024-03-01T02:00:00Z"),
        ("condition_cleared", "facmon", "2024-03-01T04:00:00Z"),
    ]
    assert detail["status"] == "NEW"  # an alert resolving never closes its ticket

    resp = api.get("/api/v1/tickets/4242")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
