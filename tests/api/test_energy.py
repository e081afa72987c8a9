"""The energy report: kWh per meter and local day in Asia/Shanghai, computed by hand.

pm-1 (building A), hourly-ish counter with a read glitch to 0 on 1 March:

    local time        kWh       step counted
    29 Feb 23:00   1000.00      (anchor before the report)
     1 Mar 00:00   1010.00      10 -> falls on 29 Feb, not in the report
     1 Mar 06:00   1040.00      30
     1 Mar 12:00      0.00      read glitch: skipped (comes back within the hour)
     1 Mar 12:30   1100.00      60 (from 1040)
     1 Mar 23:00   1200.00     100
     2 Mar 00:00   1210.00      10 -> 1 Mar
     2 Mar 12:00   1300.00      90
     2 Mar 23:00   1350.00      50
     3 Mar 01:00   1370.00      20 over 2 h: 10 on 2 Mar, 10 after the report

    1 Mar = 30 + 60 + 100 + 10 = 200 kWh;  2 Mar = 90 + 50 + 10 = 150 kWh.
    (Taking the 0 as a reset would have counted 1100 kWh more on 1 Mar.)

pm-2 (building B) reports on 1 Mar only: 500 -> 524 = 24 kWh; 2 Mar has no data.
pm-3 (building B) wraps its uint32 register (0.01 kWh, so at 42 949 672.96 kWh) on 2 Mar:
    42 949 670.00 -> 2.96 = 5.92 kWh, using the rollover of its profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from api import create_app
from store.embedded import EmbeddedStore
from store.reading import Reading
from tests.api.conftest import NOW, TOKEN, Api, site_config

SH = ZoneInfo("Asia/Shanghai")


def local(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=SH)


def kwh(device: str, t: datetime, v: float) -> Reading:
    return Reading(t, device, "energy_import", v, "kWh")


def with_readings(api: Api) -> Api:
    api.store.write(
        [
            kwh("pm-1", local(29, 23, month=2), 1000.0),
            kwh("pm-1", local(1, 0), 1010.0),
            kwh("pm-1", local(1, 6), 1040.0),
            kwh("pm-1", local(1, 12), 0.0),
            kwh("pm-1", local(1, 12, 30), 1100.0),
            kwh("pm-1", local(1, 23), 1200.0),
            kwh("pm-1", local(2, 0), 1210.0),
            kwh("pm-1", local(2, 12), 1300.0),
            kwh("pm-1", local(2, 23), 1350.0),
            kwh("pm-1", local(3, 1), 1370.0),
            kwh("pm-2", local(1, 8), 500.0),
            kwh("pm-2", local(1, 20), 524.0),
            kwh("pm-3", local(2, 10), 42_949_670.0),
            kwh("pm-3", local(2, 14), 2.96),
        ]
    )
    return api


@pytest.fixture
def energy_api(api: Api) -> Api:
    return with_readings(api)


def test_kwh_per_meter_per_local_day_with_totals_and_quality(energy_api: Api) -> None:
    resp = energy_api.get("/api/v1/reports/energy", start="2024-03-01", end="2024-03-03")
    assert resp.status_code == 200, resp.text
    rep = resp.json()
    assert rep["start"] == "2024-03-01T00:00:00+08:00" and rep["end"] == "2024-03-03T00:00:00+08:00"
    assert (rep["every"], rep["windows"], rep["unit"]) == ("1d", 2, "kWh")
    meters = {m["device"]: m for m in rep["meters"]}
    assert list(meters) == ["pm-1", "pm-2", "pm-3"]  # power meters only

    pm1 = meters["pm-1"]
    assert [w["start"] for w in pm1["windows"]] == [
        "2024-03-01T00:00:00+08:00",
        "2024-03-02T00:00:00+08:00",
    ]
    assert [w["kwh"] for w in pm1["windows"]] == pytest.approx([200.0, 150.0])
    assert pm1["total_kwh"] == pytest.approx(350.0)
    assert [w["glitches"] for w in pm1["windows"]] == [1, 0]
    assert [w["samples"] for w in pm1["windows"]] == [4, 3]
    assert (pm1["glitches"], pm1["resets"], pm1["rollovers"]) == (1, 0, 0)
    assert pm1["completeness"] == 1.0

    pm2 = meters["pm-2"]
    assert [w["kwh"] for w in pm2["windows"]] == [pytest.approx(24.0), None]
    assert pm2["completeness"] == 0.5 and pm2["total_kwh"] == pytest.approx(24.0)

    pm3 = meters["pm-3"]
    assert [w["kwh"] for w in pm3["windows"]] == [None, pytest.approx(5.92)]
    assert (pm3["rollovers"], pm3["resets"]) == (1, 0)

    buildings = {b["building"]: b for b in rep["buildings"]}
    a = buildings["A"]
    assert (a["name"], a["total_kwh"], a["meters"], a["mains"]) == ("A座", 350.0, 1, ["pm-1"])
    assert a["kwh_per_m2"] == pytest.approx(350 / 20000, abs=1e-4)
    assert a["cost"] is None and a["daily"] == []  # month= sections stay empty for start/end
    assert buildings["B"]["total_kwh"] == pytest.approx(29.92) and buildings["B"]["meters"] == 2
    assert rep["total_kwh"] == pytest.approx(379.92)


def test_hourly_windows_and_filters(energy_api: Api) -> None:
    rep = energy_api.get(
        "/api/v1/reports/energy", start="2024-03-01", end="2024-03-02", every="1h", device="pm-1"
    ).json()
    assert rep["windows"] == 24 and [m["device"] for m in rep["meters"]] == ["pm-1"]
    hours = [w["kwh"] for w in rep["meters"][0]["windows"]]
    assert hours[:6] == pytest.approx([5.0] * 6)  # 30 kWh spread over 00:00-06:00
    # Windows are rounded to Wh; the total is summed before rounding.
    assert rep["meters"][0]["total_kwh"] == 200.0
    assert sum(hours) == pytest.approx(200.0, abs=0.0005 * 24)

    rep = energy_api.get(
        "/api/v1/reports/energy", start="2024-03-01", end="2024-03-03", building="B"
    ).json()
    assert [m["device"] for m in rep["meters"]] == ["pm-2", "pm-3"]
    assert [b["building"] for b in rep["buildings"]] == ["B"]


def test_datetimes_with_and_without_offset(energy_api: Api) -> None:
    # 1 Mar 00:00-12:00 local, written three ways.
    for start, end in [
        ("2024-03-01T00:00:00", "2024-03-01T12:00:00"),
        ("2024-02-29T16:00:00Z", "2024-03-01T04:00:00Z"),
        ("2024-03-01T00:00:00+08:00", "2024-03-01T12:00:00+08:00"),
    ]:
        rep = energy_api.get(
            "/api/v1/reports/energy", start=start, end=end, every="1h", device="pm-1"
        ).json()
        assert rep["start"] == "2024-03-01T00:00:00+08:00", start
        assert rep["windows"] == 12
        # 30 (00-06) + 60 of the 06:00-12:30 step spread over 6.5 h, 6 h of it before noon.
        assert rep["meters"][0]["total_kwh"] == pytest.approx(30 + 60 * 6 / 6.5, abs=1e-3)


def test_a_meter_without_data_is_null_not_zero(api: Api) -> None:
    rep = api.get("/api/v1/reports/energy", start="2024-03-01", end="2024-03-02").json()
    assert [m["total_kwh"] for m in rep["meters"]] == [None, None, None]
    assert [m["completeness"] for m in rep["meters"]] == [0.0, 0.0, 0.0]
    assert rep["total_kwh"] is None


def test_window_limit(api: Api) -> None:
    ok = api.get("/api/v1/reports/energy", start="2024-01-01", end="2024-02-22", every="15m")
    assert ok.status_code == 200 and ok.json()["windows"] == 4992
    too_many = api.get("/api/v1/reports/energy", start="2024-01-01", end="2024-02-23", every="15m")
    assert too_many.status_code == 400
    assert "5000" in too_many.json()["error"]["message"]


# -- month= : the energy and cost report --------------------------------------------------------
FLAT_HALF = {
    "id": "flat",
    "name": "单一电价",
    "versions": [{"effective_from": "2024-01-01", "prices": {"flat": 0.5}}],
}


@pytest.fixture
def tariff_api(tmp_path: Path) -> Iterator[Api]:
    """The energy_api readings on a site with one flat 0.5 CNY/kWh tariff, at the same NOW."""
    cfg = site_config(tariffs=[FLAT_HALF])
    store = EmbeddedStore(":memory:")
    tickets = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    app = create_app(cfg, store, tickets, tokens={TOKEN: "viewer"}, clock=lambda: NOW)
    with TestClient(app) as client:
        yield with_readings(Api(client, store, tickets, cfg))
    tickets.close()
    store.close()


def test_month_report_runs_until_now_with_cost(tariff_api: Api) -> None:
    # NOW is 3 March 12:00 local. pm-1: 200 + 150 + 10 (half of the 2 h step 23:00-01:00) = 360.
    resp = tariff_api.get("/api/v1/reports/energy", month="2024-03")
    assert resp.status_code == 200, resp.text
    rep = resp.json()
    assert (rep["month"], rep["complete"], rep["every"], rep["windows"]) == (
        "2024-03",
        False,
        "1d",
        3,
    )
    assert rep["end"] == "2024-03-03T12:00:00+08:00"
    pm1 = rep["meters"][0]
    assert [w["kwh"] for w in pm1["windows"]] == pytest.approx([200.0, 150.0, 10.0])
    assert pm1["windows"][2]["end"] == "2024-03-03T12:00:00+08:00"
    assert (pm1["glitches"], pm1["cost"]["energy"]) == (1, 180.0)
    a, b = rep["buildings"]
    assert (a["total_kwh"], a["cost"]["total"], a["cost"]["fixed"]) == (360.0, 180.0, 0.0)
    assert b["total_kwh"] == pytest.approx(29.92) and b["cost"]["total"] == pytest.approx(14.96)
    assert rep["total_cost"] == pytest.approx(194.96) and rep["currency"] == "CNY"
    assert [d["kwh"] for d in a["daily"]] == pytest.approx([200.0, 150.0, 10.0])
    # February has no data: the comparison is there, with nulls.
    assert [(c["month"], c["kwh"], c["kwh_change_pct"]) for c in rep["comparisons"]] == [
        ("2024-02", None, None),
        ("2023-03", None, None),
    ]

    weekly = tariff_api.get("/api/v1/reports/energy", month="2024-03", every="1w", building="B")
    assert weekly.status_code == 200, weekly.text
    assert [m["device"] for m in weekly.json()["meters"]] == ["pm-2", "pm-3"]
    assert weekly.json()["meters"][1]["windows"][0]["rollovers"] == 1


@pytest.mark.parametrize(
    ("params", "parameter", "text"),
    [
        ({"month": "2024-03", "start": "2024-03-01"}, "month", "not month and start"),
        ({"month": "2024-03", "end": "2024-04-01"}, "month", "not month and end"),
        ({"month": "2024-13"}, "month", "YYYY-MM"),
        ({"month": "March"}, "month", "YYYY-MM"),
        ({"month": "2024-03", "every": "15m"}, "every", "need start/end"),
        ({"month": "2024-03", "device": "pm-1"}, "device", "start/end only"),
        ({"month": "2024-03", "building": "Z"}, "building", "unknown building"),
        ({}, "start", "'start' and 'end': required: give start and end, or month=YYYY-MM"),
        ({"start": "2024-03-01"}, "end", "or month=YYYY-MM"),
        ({"start": "2024-03-01", "end": "2024-04-01", "every": "1mo"}, "every", "need month="),
    ],
)
def test_month_and_start_end_errors(
    api: Api, params: dict[str, str], parameter: str, text: str
) -> None:
    resp = api.get("/api/v1/reports/energy", **params)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_parameter"
    assert err["details"][0]["parameter"] == parameter
    assert text in err["message"]


def test_openapi_documents_month_with_an_example(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/api/v1/reports/energy"]["get"]["parameters"]}
    assert params["month"]["schema"]["examples"] == ["2024-03"]
    assert params["every"]["schema"]["enum"] == ["15m", "1h", "1d", "1w", "1mo"]
    assert not params["start"]["required"]
