"""The energy and cost report, computed by hand from readings written to a real store.

Site (Asia/Shanghai): building A (20 000 m2) with main meter pm-main (B1) and its sub-meter
pm-sub (3F, tenant T1); building B with pm-b, which never reports. One tariff for all buildings:
Guangdong 2021 from ../shared/domain.md (flat 0.60, peak 1.02, valley 0.228, sharp 1.275 in
Jul-Sep; constant 1 kWh/h costs 14.364 CNY a March day), plus 100 CNY a month and 32 CNY per kW
of the month's highest 15-minute mean.

March 2024, the month scenario (readings every 15 minutes, 1 Mar 00:00 .. 1 Apr 00:00):

* pm-main draws 1 kWh/h, plus 2 kWh more in 5 Mar 14:00-14:15 (peak band). Its uint32 register
  (0.01 kWh: wraps at R = 42 949 672.96 kWh) starts at R - 99.9 and wraps on 5 Mar at 04:00.
  On 20 Mar the 10:00 reading is 0.0 (a read glitch: 10:15 is back on track).
      kWh   = 31 x 24 + 2 = 746
      bands = valley 31 x 8 = 248, flat 31 x 9 = 279, peak 31 x 7 + 2 = 219
      cost  = 31 x 14.364 + 2 x 1.02 = 445.284 + 2.04 = 447.324 (energy)
      peak  = (0.25 + 2) kWh x 4 = 9 kW at 5 Mar 14:00 -> demand 9 x 32 = 288
      total = 447.324 + 100 + 288 = 835.324
      completeness = 2975 / 2976 intervals with a trusted sample (the 10:00 one was the glitch)
* pm-sub draws 0.5 kWh/h: 372 kWh, 31 x 14.364 / 2 = 222.642 CNY -- inside pm-main's 746.
* February (hourly readings): pm-main 1 kWh/h, 29 days = 696 kWh;
      cost = 29 x 14.364 + 100 + 1 kW x 32 = 416.556 + 132 = 548.556
      change: kWh (746 - 696) / 696 = +7.18 %; cost (835.324 - 548.556) / 548.556 = +52.28 %
* Budget A 2024-03: 800 kWh and 800 CNY -> 746 / 800 = 93.25 %, 835.324 / 800 = 104.42 %.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.tickets import TicketStore
from config.models import SiteConfig
from reports.context import ReportContext
from reports.energy import EnergyReport, energy_report
from reports.period import Period
from store.base import Store
from store.reading import Reading
from tests.api.conftest import site_config

SH = ZoneInfo("Asia/Shanghai")
R = 42_949_672.96  # 2**32 x 0.01 kWh: the energy register of generic_power_meter_3p
Q = timedelta(minutes=15)
H = timedelta(hours=1)
StoreFactory = Callable[[], Store]

GUANGDONG: dict[str, Any] = {
    "id": "gd-2021",
    "name": "广东 一般工商业 2021",
    "versions": [
        {
            "effective_from": "2021-10-01",
            "prices": {"flat": 0.60, "peak": 1.02, "valley": 0.228, "sharp": 1.275},
            "periods": [
                {"band": "valley", "hours": ["00:00-08:00"]},
                {"band": "peak", "hours": ["10:00-12:00", "14:00-19:00"]},
                {"band": "sharp", "hours": ["11:00-12:00", "15:00-17:00"], "months": [7, 8, 9]},
            ],
            "fixed_per_month": 100.0,
            "demand_per_kw_month": 32.0,
        }
    ],
}


def meter(id_: str, building: str, floor: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "name": f"{id_} 电表",
        "kind": "power_meter",
        "location": {"building": building, "floor": floor, **extra.pop("location", {})},
        "source": {
            "type": "modbus_tcp",
            "host": "10.0.0.5",
            "unit_id": 3,
            "profile": "generic_power_meter_3p",
        },
        **extra,
    }


def config(**overrides: Any) -> SiteConfig:
    data: dict[str, Any] = {
        "devices": [
            meter("pm-main", "A", "B1"),
            meter("pm-sub", "A", "3F", parent="pm-main", location={"tenant": "T1"}),
            meter("pm-b", "B", "B1"),
        ],
        "rules": [],
        "tariffs": [GUANGDONG],
        "reports": {
            "energy": {"budgets": [{"building": "A", "month": "2024-03", "kwh": 800, "cost": 800}]}
        },
    }
    data.update(overrides)
    return site_config(**data)


@pytest.fixture
def tickets(tmp_path: Path) -> Iterator[TicketStore]:
    t = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    yield t
    t.close()


def local(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=SH)


def counter(
    device: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    kw: Callable[[datetime], float],
    first: float = 0.0,
    wrap: float | None = None,
) -> list[Reading]:
    """Readings every ``step`` from start to end inclusive; ``kw(t)`` is the load after t."""
    out: list[Reading] = []
    v = first
    t = start
    while t <= end:
        out.append(Reading(t, device, "energy_import", v, "kWh"))
        v += kw(t) * (step / H)
        if wrap is not None and v >= wrap:
            v -= wrap
        t += step
    return out


def march_scenario(store: Store) -> None:
    def main_kw(t: datetime) -> float:
        return 1.0 + (8.0 if t == local(3, 5, 14) else 0.0)  # +2 kWh in that quarter hour

    feb = counter("pm-main", local(2, 1), local(3, 1), H, lambda t: 1.0, first=R - 99.9 - 696)
    march = counter("pm-main", local(3, 1), local(4, 1), Q, main_kw, first=R - 99.9, wrap=R)
    glitch_at = local(3, 20, 10)
    march = [
        Reading(r.time, r.device, r.metric, 0.0, r.unit) if r.time == glitch_at else r
        for r in march
    ]
    sub = counter("pm-sub", local(3, 1), local(4, 1), Q, lambda t: 0.5, first=5000.0)
    store.write(feb[:-1] + march + sub)  # feb's last reading is march's first


def report(store: Store, tickets: TicketStore, period: Period, now: datetime, **kw: Any) -> Any:
    cfg = kw.pop("cfg", None) or config()
    rc = ReportContext(cfg, store, tickets, clock=lambda: now)
    rep = energy_report(rc, period, **kw)
    assert isinstance(rep, EnergyReport)
    return rep.model_dump(mode="json")


MARCH = Period.month(2024, 3, SH)
APRIL_2 = datetime(2024, 4, 2, tzinfo=UTC)


def test_month_with_rollover_and_glitch_on_both_backends(
    store_factory: StoreFactory, tickets: TicketStore
) -> None:
    store = store_factory()
    march_scenario(store)
    rep = report(store, tickets, MARCH, APRIL_2)

    assert (rep["month"], rep["complete"], rep["currency"], rep["every"]) == (
        "2024-03",
        True,
        "CNY",
        "1d",
    )
    assert rep["start"] == "2024-03-01T00:00:00+08:00" and rep["end"] == "2024-04-01T00:00:00+08:00"
    assert rep["windows"] == 31

    meters = {m["device"]: m for m in rep["meters"]}
    main = meters["pm-main"]
    assert main["total_kwh"] == pytest.approx(746.0, abs=1e-3)
    assert (main["glitches"], main["rollovers"], main["resets"]) == (1, 1, 0)
    assert main["completeness"] == pytest.approx(2975 / 2976, abs=1e-4)
    day5, day20 = main["windows"][4], main["windows"][19]
    assert day5["start"] == "2024-03-05T00:00:00+08:00"
    assert (day5["kwh"], day5["rollovers"], day5["completeness"]) == (
        pytest.approx(26.0, abs=1e-3),
        1,
        1.0,
    )
    assert (day20["kwh"], day20["glitches"]) == (pytest.approx(24.0, abs=1e-3), 1)
    assert day20["completeness"] == pytest.approx(95 / 96, abs=1e-4)
    assert main["peak_demand"] == {"kw": pytest.approx(9.0), "at": "2024-03-05T14:00:00+08:00"}

    cost = main["cost"]
    assert {b["band"]: b["kwh"] for b in cost["bands"]} == pytest.approx(
        {"peak": 219.0, "flat": 279.0, "valley": 248.0}, abs=1e-3
    )
    assert {b["band"]: b["cost"] for b in cost["bands"]} == pytest.approx(
        {"peak": 223.38, "flat": 167.4, "valley": 56.544}, abs=0.005
    )
    assert cost["energy"] == pytest.approx(447.324, abs=0.005)
    assert cost["fixed"] is None and cost["demand"] is None  # charges are the building's

    sub = meters["pm-sub"]
    assert sub["total_kwh"] == pytest.approx(372.0, abs=1e-3) and sub["parent"] == "pm-main"
    assert sub["cost"]["energy"] == pytest.approx(222.642, abs=0.005)
    assert sub["completeness"] == 1.0
    assert meters["pm-b"]["total_kwh"] is None and meters["pm-b"]["completeness"] == 0.0

    # The building counts its main only: the sub-meter's 372 kWh are inside the 746.
    a, b = rep["buildings"]
    assert (a["building"], a["mains"], a["sub_meters"]) == ("A", ["pm-main"], ["pm-sub"])
    assert a["total_kwh"] == pytest.approx(746.0, abs=1e-3)
    assert a["kwh_per_m2"] == pytest.approx(746 / 20000, abs=1e-4)
    assert a["peak_demand"]["kw"] == pytest.approx(9.0)
    assert a["cost"]["energy"] == pytest.approx(447.324, abs=0.005)
    assert a["cost"]["fixed"] == pytest.approx(100.0)
    assert (a["cost"]["demand_kw"], a["cost"]["demand"]) == (pytest.approx(9.0), 288.0)
    assert a["cost"]["total"] == pytest.approx(835.324, abs=0.005)
    assert b["total_kwh"] is None and b["cost"]["total"] is None
    assert rep["total_kwh"] == pytest.approx(746.0, abs=1e-3)
    assert rep["total_cost"] == pytest.approx(835.324, abs=0.005)

    # Daily series of the building (drawn as charts in the monthly report).
    assert len(a["daily"]) == 31
    d5 = a["daily"][4]
    assert d5["day"] == "2024-03-05" and d5["kwh"] == pytest.approx(26.0, abs=1e-3)
    assert d5["cost"] == pytest.approx(14.364 + 2.04, abs=0.005)
    assert {x["band"]: x["kwh"] for x in d5["bands"]} == pytest.approx(
        {"peak": 9.0, "flat": 9.0, "valley": 8.0}, abs=1e-3
    )

    # Floors sum leaf meters; tenants their topmost tagged meter.
    assert [(f["building"], f["floor"], f["kwh"]) for f in rep["floors"]] == [
        ("A", "3F", pytest.approx(372.0, abs=1e-3)),
        ("B", "B1", None),
    ]
    assert rep["tenants"] == [
        {
            "tenant": "T1",
            "kwh": pytest.approx(372.0, abs=1e-3),
            "cost": 222.64,
            "meters": ["pm-sub"],
        }
    ]

    # Comparisons: February had 696 kWh and cost 548.556; March 2023 has no data.
    prev, last_year = a["comparisons"]
    assert (prev["against"], prev["month"]) == ("previous_month", "2024-02")
    assert prev["kwh"] == pytest.approx(696.0, abs=1e-3)
    assert prev["cost"] == pytest.approx(548.556, abs=0.005)
    assert prev["kwh_change_pct"] == pytest.approx(7.18)
    assert prev["cost_change_pct"] == pytest.approx(52.28)
    assert (last_year["month"], last_year["kwh"], last_year["cost"]) == ("2023-03", None, None)
    assert last_year["kwh_change_pct"] is None and last_year["cost_change_pct"] is None
    assert rep["comparisons"][0]["kwh"] == pytest.approx(696.0, abs=1e-3)

    assert a["budget"] == {
        "month": "2024-03",
        "kwh": 800.0,
        "cost": 800.0,
        "actual_kwh": pytest.approx(746.0, abs=1e-3),
        "actual_cost": pytest.approx(835.32),
        "kwh_used_pct": 93.25,
        "cost_used_pct": 104.42,
        "month_elapsed_pct": 100.0,
    }
    assert b["budget"] is None


def test_base_load_is_the_night_on_weekdays_and_all_of_the_weekend(
    embedded_store_factory: Callable[[], Store], tickets: TicketStore
) -> None:
    # 4-10 March 2024 is Monday..Sunday. Weekdays: 0.5 kW from 00:00 to 06:00, 3 kW after;
    # the weekend: 1 kW all day. Base load (night hours 00:00-06:00 by default):
    #   (5 x 6 h x 0.5 + 2 x 24 h x 1) kWh / (5 x 6 + 48) h = 63 / 78 = 0.8077 kW
    # Energy: 5 x (6 x 0.5 + 18 x 3) + 48 = 333 kWh; peak 3 kW at 06:00 on Monday.
    def kw(t: datetime) -> float:
        lt = t.astimezone(SH)
        if lt.weekday() >= 5:
            return 1.0
        return 0.5 if lt.hour < 6 else 3.0

    store = embedded_store_factory()
    store.write(counter("pm-main", local(3, 4), local(3, 11), H, kw, first=100.0))
    week = Period(date(2024, 3, 4), date(2024, 3, 10), SH)
    rep = report(store, tickets, week, APRIL_2, every="week")
    main = rep["meters"][0]
    assert main["base_load_kw"] == pytest.approx(63 / 78, abs=1e-3)
    assert main["total_kwh"] == pytest.approx(333.0)
    assert main["peak_demand"] == {"kw": 3.0, "at": "2024-03-04T06:00:00+08:00"}
    assert [w["kwh"] for w in main["windows"]] == [pytest.approx(333.0)]
    a = rep["buildings"][0]
    assert a["base_load_kw"] == pytest.approx(63 / 78, abs=1e-3)
    # Not a month: no fixed or demand charge, no comparisons, no budget.
    assert a["cost"]["fixed"] is None and a["comparisons"] == [] and a["budget"] is None
    assert rep["month"] is None and rep["comparisons"] == []

    # Evening base hours too (a configured second span): weekday 22:00-24:00 at 3 kW joins.
    #   (15 + 5 x 2 x 3 + 48) / (30 + 10 + 48) = 93 / 88 = 1.0568 kW
    cfg = config(reports={"energy": {"base_load_hours": ["00:00-06:00", "22:00-24:00"]}})
    rep = report(store, tickets, week, APRIL_2, cfg=cfg)
    assert rep["meters"][0]["base_load_kw"] == pytest.approx(93 / 88, abs=1e-3)


def test_a_running_month_ends_now_and_compares_like_for_like(
    embedded_store_factory: Callable[[], Store], tickets: TicketStore
) -> None:
    # 1 kWh/h from 1 Feb to 4 Mar. At 3 Mar 12:00 the March report covers 60 h = 60 kWh and
    # compares with 1 Feb 00:00 - 3 Feb 12:00 (60 kWh too), not with all of February.
    store = embedded_store_factory()
    store.write(counter("pm-main", local(2, 1), local(3, 4), H, lambda t: 1.0))
    now = local(3, 3, 12)
    rep = report(store, tickets, MARCH, now, every="week")
    assert rep["end"] == "2024-03-03T12:00:00+08:00" and rep["complete"] is False
    assert [(w["start"], w["end"]) for w in rep["meters"][0]["windows"]] == [
        ("2024-03-01T00:00:00+08:00", "2024-03-03T12:00:00+08:00")
    ]
    a = rep["buildings"][0]
    assert a["total_kwh"] == pytest.approx(60.0)
    assert [d["day"] for d in a["daily"]] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    prev = a["comparisons"][0]
    assert prev["end"] == "2024-02-03T12:00:00+08:00"
    assert prev["kwh"] == pytest.approx(60.0) and prev["kwh_change_pct"] == 0.0
    assert prev["cost_change_pct"] == 0.0
    assert a["budget"]["month_elapsed_pct"] == pytest.approx(60 / 744 * 100, abs=0.01)


def test_weeks_and_months_as_windows(
    embedded_store_factory: Callable[[], Store], tickets: TicketStore
) -> None:
    store = embedded_store_factory()
    store.write(counter("pm-main", local(3, 1), local(4, 1), H, lambda t: 1.0))
    rep = report(store, tickets, MARCH, APRIL_2, every="week")
    # ISO weeks from Monday, clipped to the month: 1 Mar is a Friday.
    assert [w["start"][:10] for w in rep["meters"][0]["windows"]] == [
        "2024-03-01",
        "2024-03-04",
        "2024-03-11",
        "2024-03-18",
        "2024-03-25",
    ]
    assert [w["kwh"] for w in rep["meters"][0]["windows"]] == pytest.approx(
        [72.0, 168.0, 168.0, 168.0, 168.0]
    )
    rep = report(store, tickets, MARCH, APRIL_2, every="month")
    assert rep["every"] == "1mo" and rep["windows"] == 1
    assert rep["meters"][0]["windows"][0]["kwh"] == pytest.approx(744.0)


def test_without_a_tariff_there_is_energy_but_no_cost(
    embedded_store_factory: Callable[[], Store], tickets: TicketStore
) -> None:
    store = embedded_store_factory()
    store.write(counter("pm-main", local(3, 1), local(3, 2), H, lambda t: 1.0))
    rep = report(store, tickets, MARCH, APRIL_2, cfg=config(tariffs=[]), building="A")
    a = rep["buildings"][0]
    assert [b["building"] for b in rep["buildings"]] == ["A"]
    assert a["total_kwh"] == pytest.approx(24.0)
    assert a["cost"]["tariff"] is None and a["cost"]["total"] is None and a["cost"]["bands"] == []
    assert rep["total_cost"] is None
    assert a["daily"][0]["cost"] is None and a["daily"][2]["kwh"] is None  # no data: null


def test_no_change_is_claimed_against_a_partly_recorded_month(
    embedded_store_factory: Callable[[], Store], tickets: TicketStore
) -> None:
    # February has data only from 26 Feb (4 of 29 days): its total is shown with its
    # completeness, but a +600% "change" against it would mislead, so the change is null.
    store = embedded_store_factory()
    store.write(counter("pm-main", local(2, 26), local(4, 1), H, lambda t: 1.0))
    rep = report(store, tickets, MARCH, local(4, 2))
    prev = rep["buildings"][0]["comparisons"][0]
    assert prev["kwh"] == pytest.approx(4 * 24.0)
    assert prev["completeness"] == pytest.approx(4 / 29, abs=0.002)
    assert prev["kwh_change_pct"] is None and prev["cost_change_pct"] is None
    site_prev = rep["comparisons"][0]
    assert site_prev["completeness"] == 0.0  # building B's main meter has no data at all
    assert site_prev["kwh_change_pct"] is None
