"""GET /api/v1/reports/uptime and /api/v1/reports/water over a real store and ticket database.

Now is 3 March 2024 12:00 in Asia/Shanghai (tests/api/conftest.py), so March is still running
and its report window is 1 March 00:00 - 3 March 12:00 = 60 h.

el-1 (A, polled hourly): a sample of each state metric every hour from 28 Feb, normal except a
door fault (code 21) from 2 March 10:00 to 12:00: up 58 h, down 2 h, A = 58/60 = 96.667 %.

wm-1 (B, main, polled hourly, volume only, from 28 Feb) runs at 1 m3/h around the clock;
wm-2 (its sub-meter) at 0.75 m3/h from 08:00 to 20:00. To 3 March 12:00: main 24 + 24 + 12 =
60 m3, sub 9 + 9 + 3 = 21 m3, unaccounted 39 m3 = 65 %. wm-1 never reaches zero at night: the
report looks back before March and finds the leak opened on the night of 29 Feb (second night
without zero flow), started on 28 Feb. MNF 1 m3/h; 3 of its 5 nights are in March:
loss = (1 - 0) x 24 h x 3 = 72 m3, at 4.50 CNY/m3 = 324.00.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from api import create_app
from store.embedded import EmbeddedStore
from store.reading import Reading
from tests.api.conftest import NOW, TOKEN, Api, site_config

SH = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
START = datetime(2024, 2, 28, 0, 0, tzinfo=SH)


def _device(id_: str, kind: str, building: str, profile: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "name": f"{id_} 名称",
        "kind": kind,
        "location": {"building": building, "floor": "B1"},
        "source": {"type": "modbus_tcp", "host": "10.0.0.5", "unit_id": 3, "profile": profile},
        "poll_interval": "1h",
        **extra,
    }


def _readings() -> list[Reading]:
    out: list[Reading] = []
    fault_from = datetime(2024, 3, 2, 10, tzinfo=SH)
    t = START
    main, sub = 100.0, 20.0
    while t <= NOW:
        down = fault_from <= t < fault_from + 2 * H
        out += [
            Reading(t, "el-1", "service_mode", 7.0 if down else 1.0),
            Reading(t, "el-1", "fault_code", 21.0 if down else 0.0),
            Reading(t, "el-1", "entrapment", 0.0),
            Reading(t, "wm-1", "volume", main, "m3"),
            Reading(t, "wm-2", "volume", sub, "m3"),
        ]
        main += 1.0
        sub += 0.75 if 8 <= t.hour < 20 else 0.0
        t += H
    return out


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    cfg = site_config(
        devices=[
            _device("el-1", "elevator", "A", "elevator_gbt24476"),
            _device("wm-1", "water_meter", "B", "generic_water_meter"),
            _device("wm-2", "water_meter", "B", "generic_water_meter", parent="wm-1"),
        ],
        reports={"water": {"price_per_m3": 4.5}},
    )
    store = EmbeddedStore(":memory:")
    store.write(_readings())
    tickets = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    app = create_app(cfg, store, tickets, tokens={TOKEN: "viewer"}, clock=lambda: NOW)
    with TestClient(app) as client:
        yield Api(client, store, tickets, cfg)
    tickets.close()
    store.close()


def test_uptime_of_the_running_month(api: Api) -> None:
    resp = api.get("/api/v1/reports/uptime", month="2024-03")
    assert resp.status_code == 200, resp.text
    rep = resp.json()
    assert (rep["period"], rep["complete"]) == ("2024-03", False)
    assert rep["start"] == "2024-03-01T00:00:00+08:00" and rep["end"] == "2024-03-03T12:00:00+08:00"
    (a,) = rep["assets"]
    assert a["device"] == "el-1" and a["building"] == "A"
    assert (a["window_h"], a["up_h"], a["down_h"], a["unknown_h"]) == (60, 58, 2, 0)
    assert round(100 * a["availability"], 3) == 96.667 and a["coverage"] == 1.0
    assert (a["failures"], a["restorations"], a["mttr_h"]) == (1, 1, 2.0)
    assert a["downtime_by_cause"] == [{"cause": "fault_21", "hours": 2.0}]
    assert a["in_good_order"] is False  # below the 98 % target
    assert rep["site"]["intact_rate_count"] == 0.0
    assert [b["building"] for b in rep["buildings"]] == ["A"]


def test_uptime_between_dates_and_per_building(api: Api) -> None:
    rep = api.get("/api/v1/reports/uptime", start="2024-03-01", end="2024-03-02").json()
    assert rep["period"] == "2024-03-01..2024-03-01" and rep["complete"] is True
    (a,) = rep["assets"]
    assert (a["window_h"], a["up_h"], a["availability"]) == (24, 24, 1.0)
    other = api.get("/api/v1/reports/uptime", month="2024-03", building="B").json()
    assert other["assets"] == [] and other["site"]["assets"] == 0


def test_water_of_the_running_month(api: Api) -> None:
    resp = api.get("/api/v1/reports/water", month="2024-03")
    assert resp.status_code == 200, resp.text
    rep = resp.json()
    assert rep["end"] == "2024-03-03T12:00:00+08:00" and rep["night_window"] == "02:00-04:00"
    main, sub = rep["meters"]
    assert [d["m3"] for d in main["days"][:4]] == [24.0, 24.0, 12.0, None]
    assert (main["total_m3"], sub["total_m3"]) == (60.0, 21.0)
    assert [(n["mnf_m3h"], n["status"], n["source"]) for n in main["nights"]] == [
        (1.0, "high", "volume")
    ] * 3
    (b,) = rep["buildings"]
    assert (b["building"], b["total_m3"], b["unaccounted_m3"], b["unaccounted_share"]) == (
        "B",
        60.0,
        39.0,
        0.65,
    )
    (leak,) = rep["leaks"]
    assert (leak["device"], leak["start_night"], leak["opened_night"], leak["open"]) == (
        "wm-1",
        "2024-02-28",
        "2024-02-29",
        True,
    )
    assert (leak["nights"], leak["nights_in_period"]) == (5, 3)
    assert (leak["loss_m3"], leak["cost"]) == (72.0, 324.0)
    assert main["leak_open"] and sub["leak_open"] is False
    assert (rep["leak_loss_m3"], rep["leak_cost"], rep["cost"]) == (72.0, 324.0, 270.0)


@pytest.mark.parametrize("path", ["/api/v1/reports/uptime", "/api/v1/reports/water"])
@pytest.mark.parametrize(
    ("params", "parameter", "fragment"),
    [
        ({"month": "2024-13"}, "month", "YYYY-MM"),
        ({"month": "2024-03", "start": "2024-03-01"}, "month", "not both"),
        ({"start": "2024-03-01"}, "end", "give both"),
        ({"start": "1 March", "end": "2024-03-02"}, "start", "YYYY-MM-DD"),
        ({"start": "2024-03-02", "end": "2024-03-02"}, "end", "after start"),
        ({"start": "2020-01-01", "end": "2024-01-01"}, "end", "at most 366 days"),
        ({"month": "2024-03", "building": "Z"}, "building", "unknown building"),
    ],
)
def test_bad_parameters_are_clear_400s(
    api: Api, path: str, params: dict[str, str], parameter: str, fragment: str
) -> None:
    resp = api.get(path, **params)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_parameter"
    assert err["details"][0]["parameter"] == parameter
    assert fragment in err["message"]


def test_reports_need_a_token(api: Api) -> None:
    assert api.get("/api/v1/reports/uptime", token=None).status_code == 401
    assert api.get("/api/v1/reports/water", token=None).status_code == 401
