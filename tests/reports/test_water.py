"""The water report: a leak on a main that starts mid-month, a sub-meter, unaccounted water.

Building B, March 2024 (Asia/Shanghai), price 5.00 CNY/m3, allowance 0.1 m3/h.

wm-main (polled every 15 min): hourly volume, and flow samples every 15 min from 00:00 to
05:45 each night. Flow, in m3/h:
    2.0 from 08:00 to 20:00 every day (normal use);
    + 0.5 leaking from 10 March 12:00 to 20 March 12:00;
    + 1.0 on 15 March 02:00-02:30 (someone ran a tap: the rolling minimum ignores it).
wm-sub (parent wm-main, polled hourly, volume only): 1.0 from 08:00 to 20:00.

Use per day of wm-main: 24 m3 (days 1-9, 21-31), 30 (10 and 20: half a day of leak), 36
(11-14, 16-19), 36.5 (15) -> 864.5 m3 in March. wm-sub: 12 m3/day -> 372 m3.
Unaccounted = 864.5 - 372 = 492.5 m3 = 56.9693 % of the main.

Nights of wm-main (rolling 60 min in 02:00-04:00): 1-10 MNF 0 (clean); 11-20 MNF 0.5 > limit
max(0.05, 0.1 x 36/24 = 0.15) and the flow never reaches zero; 21, 22 clean.
Night 11 starts the run; night 12 is the second night without zero flow: the leak opens
(no_zero rule) before the third high night would have opened it. Nights 21 and 22 clear it:
it ends on night 20. 10 nights, mean MNF 0.5:
    loss = (0.5 - 0.1) x 24 h x 10 = 96 m3;  cost = 96 x 5.00 = 480.00 CNY.
wm-sub has no flow metric: its MNF comes from the hourly volume steps (0 at night).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from alerts.tickets import TicketStore
from config.models import SiteConfig
from config.reporting import WaterSettings
from reports.context import ReportContext
from reports.period import Period
from reports.water import (
    NightEval,
    NightStatus,
    WaterReport,
    reached_zero,
    rolling_minimum,
    track_leaks,
    volume_segments,
    water_report,
)
from store.base import Store
from store.reading import Reading, to_us
from tests.fixtures.stores import StoreFactory

SH = ZoneInfo("Asia/Shanghai")
MARCH = Period.month(2024, 3, SH)
Q = timedelta(minutes=15)
H = timedelta(hours=1)
LEAK = (datetime(2024, 3, 10, 12, tzinfo=SH), datetime(2024, 3, 20, 12, tzinfo=SH))
TAP = (datetime(2024, 3, 15, 2, tzinfo=SH), datetime(2024, 3, 15, 2, 30, tzinfo=SH))
AFTER = datetime(2024, 4, 2, 9, tzinfo=SH)


def _meter(id_: str, poll: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "name": f"B座 {id_}",
        "kind": "water_meter",
        "location": {"building": "B", "floor": "B1"},
        "source": {"type": "modbus_tcp", "host": "10.0.0.7", "profile": "generic_water_meter"},
        "poll_interval": poll,
        **extra,
    }


def site() -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": {"id": "riverside", "name": "滨江广场", "timezone": "Asia/Shanghai"},
            "buildings": [
                {"id": "A", "name": "A座", "floor_area_m2": 20000, "floors": 20},
                {"id": "B", "name": "B座", "floor_area_m2": 15000, "floors": 12},
            ],
            "devices": [
                _meter("wm-main", "15m"),
                _meter("wm-sub", "1h", parent="wm-main"),
            ],
            "reports": {"water": {"price_per_m3": 5.0, "allowance_m3h": 0.1}},
        }
    )


def main_flow(t: datetime) -> float:
    f = 2.0 if 8 <= t.hour < 20 else 0.0
    if LEAK[0] <= t < LEAK[1]:
        f += 0.5
    if TAP[0] <= t < TAP[1]:
        f += 1.0
    return f


def sub_flow(t: datetime) -> float:
    return 1.0 if 8 <= t.hour < 20 else 0.0


def readings() -> list[Reading]:
    """Volumes integrate the flows exactly: every change falls on a quarter hour."""
    out: list[Reading] = []
    t, end = MARCH.start, MARCH.end
    vol = {"wm-main": 1000.0, "wm-sub": 50.0}
    while t <= end:
        if t.minute == 0:
            out.append(Reading(t, "wm-main", "volume", vol["wm-main"], "m3"))
            out.append(Reading(t, "wm-sub", "volume", vol["wm-sub"], "m3"))
        if t.hour < 6 and t < end:
            out.append(Reading(t, "wm-main", "flow_rate", main_flow(t), "m3/h"))
        vol["wm-main"] += main_flow(t) * 0.25
        vol["wm-sub"] += sub_flow(t) * 0.25
        t += Q
    return out


@pytest.fixture
def tickets(tmp_path: Path) -> Iterator[TicketStore]:
    ts = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    yield ts
    ts.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    s = store_factory()
    s.write(readings())
    return s


def report(
    store: Store, tickets: TicketStore, now: datetime, period: Period = MARCH
) -> WaterReport:
    return water_report(ReportContext(site(), store, tickets, clock=lambda: now), period)


def day(n: int) -> date:
    return date(2024, 3, n)


def test_use_leak_and_unaccounted_water_over_a_month(store: Store, tickets: TicketStore) -> None:
    rep = report(store, tickets, AFTER)
    assert rep.complete and rep.period == "2024-03" and rep.currency == "CNY"
    main, sub = rep.meters
    assert (main.device, main.main, sub.device, sub.main, sub.parent) == (
        "wm-main",
        True,
        "wm-sub",
        False,
        "wm-main",
    )
    use = {d.day.day: d.m3 for d in main.days}
    assert [use[n] for n in (1, 9, 10, 11, 15, 19, 20, 21, 31)] == [
        24.0,
        24.0,
        30.0,
        36.0,
        36.5,
        36.0,
        30.0,
        24.0,
        24.0,
    ]
    assert main.total_m3 == 864.5 and sub.total_m3 == 372.0
    assert main.completeness == 1.0

    (b,) = rep.buildings
    assert b.building == "B" and b.total_m3 == 864.5  # mains only: the sub-meter is inside
    assert b.cost == 4322.5
    (u,) = b.unaccounted
    assert (u.main, u.sub_meters, u.main_m3, u.sub_m3) == ("wm-main", ["wm-sub"], 864.5, 372.0)
    assert u.unaccounted_m3 == 492.5 and b.unaccounted_m3 == 492.5
    assert round(100 * (b.unaccounted_share or 0), 4) == 56.9693

    nights = {n.night.day: n for n in main.nights}
    assert len(nights) == 31
    assert (nights[5].mnf_m3h, nights[5].status, nights[5].reached_zero) == (0.0, "clean", True)
    assert nights[5].source == "flow_rate" and nights[5].limit_m3h == 0.1
    assert (nights[11].mnf_m3h, nights[11].limit_m3h, nights[11].status) == (0.5, 0.15, "high")
    assert nights[11].reached_zero is False
    assert nights[15].mnf_m3h == 0.5  # the tap at 02:00-02:30 is outside the lowest hour
    assert [n for n in range(1, 32) if nights[n].leak_open] == list(range(12, 22))
    assert {n.status for n in sub.nights} == {"clean"}
    assert {n.source for n in sub.nights} == {"volume"}
    assert {n.mnf_m3h for n in sub.nights} == {0.0}

    (leak,) = rep.leaks
    assert (leak.device, leak.building, leak.opened_by) == ("wm-main", "B", "no_zero")
    assert (leak.start_night, leak.opened_night) == (day(11), day(12))
    assert (leak.end_night, leak.cleared_night, leak.open) == (day(20), day(22), False)
    assert (leak.nights, leak.nights_in_period) == (10, 10)
    assert (leak.mean_mnf_m3h, leak.peak_mnf_m3h, leak.allowance_m3h) == (0.5, 0.5, 0.1)
    assert leak.loss_m3 == 96.0 and leak.cost == 480.0
    assert (rep.leak_loss_m3, rep.leak_cost) == (96.0, 480.0)
    assert (b.leaks, b.leak_loss_m3, b.leak_cost) == (1, 96.0, 480.0)
    assert not main.leak_open and main.history_complete


def test_a_leak_open_before_the_period_is_found_by_looking_back(
    store: Store, tickets: TicketStore
) -> None:
    # 15-31 March: the leak started on night 11, before the period; 6 of its nights (15-20)
    # are in the period: loss = 0.4 x 24 x 6 = 57.6 m3, cost 288.00.
    late = Period(day(15), day(31), SH)
    rep = report(store, tickets, AFTER, late)
    main = rep.meters[0]
    assert main.nights[0].night == day(15) and main.nights[0].leak_open
    (leak,) = rep.leaks
    assert (leak.start_night, leak.opened_night, leak.end_night) == (day(11), day(12), day(20))
    assert (leak.nights, leak.nights_in_period) == (10, 6)
    assert leak.loss_m3 == 57.6 and leak.cost == 288.0


def test_a_leak_still_open_in_a_running_month(store: Store, tickets: TicketStore) -> None:
    # Now is 16 March 12:00: nights 11-16 so far, the leak is open.
    rep = report(store, tickets, datetime(2024, 3, 16, 12, tzinfo=SH))
    assert not rep.complete and rep.end.isoformat() == "2024-03-16T12:00:00+08:00"
    main = rep.meters[0]
    assert [n.night for n in main.nights] == [day(n) for n in range(1, 17)]
    assert main.leak_open
    (leak,) = rep.leaks
    assert (leak.open, leak.end_night, leak.nights, leak.nights_in_period) == (True, None, 6, 6)
    assert leak.loss_m3 == 57.6 and leak.cost == 288.0
    use = {d.day.day: d.m3 for d in main.days}
    assert use[16] == 14.0 and use[17] is None  # 16 March 00:00-12:00: 0.5 x 12 + 2 x 4


# -- the leak rule on hand-made nights ---------------------------------------------------------
def nights(*statuses: NightStatus) -> list[NightEval]:
    mnf = {"high": 0.5, "no_zero": 0.02, "clean": 0.0, "no_data": None}
    zero = {"high": None, "no_zero": False, "clean": True, "no_data": None}
    return [
        NightEval(date(2024, 5, 1) + timedelta(days=i), mnf[s], 0.05, zero[s], s, None)
        for i, s in enumerate(statuses)
    ]


def test_leak_rule_consecutive_nights_gaps_and_clearing() -> None:
    s = WaterSettings()
    # A gap breaks the run of high nights; one clean night does not clear; a night without
    # data keeps the leak open; two clean nights clear it.
    ns = nights(
        "high", "high", "no_data", "high", "high", "high", "clean", "high", "no_data", "clean",
        "clean",
    )  # fmt: skip
    runs, flags = track_leaks(ns, s)
    (run,) = runs
    assert (run.start.day, run.opened.day, run.opened_by) == (4, 6, "mnf")
    assert run.end is not None and run.cleared is not None
    assert (run.end.day, run.cleared.day) == (9, 11)
    assert [n.night.day for n in run.nights] == [4, 5, 6, 7, 8, 9]
    assert flags == [False] * 5 + [True] * 5 + [False]


def test_leak_rule_flow_that_never_reaches_zero() -> None:
    runs, flags = track_leaks(nights("clean", "no_zero", "no_zero", "no_zero"), WaterSettings())
    (run,) = runs
    assert (run.start.day, run.opened.day, run.opened_by, run.end) == (2, 3, "no_zero", None)
    assert flags == [False, False, True, True]


def test_night_flow_from_volume_skips_a_read_glitch() -> None:
    # Hourly counter 10 -> 10.5 -> (read glitch 0) -> 11.5 -> 12: the glitch is skipped as in
    # store.counters, so the 2-hour step 10.5 -> 11.5 is an even 0.5 m3/h, not a reset.
    t0 = datetime(2024, 5, 1, 1, tzinfo=SH)
    t = np.array([to_us(t0 + k * H) for k in range(5)], dtype=np.int64)
    v = np.array([10.0, 10.5, 0.0, 11.5, 12.0])
    segs = volume_segments((t, v), timedelta(hours=2), rollover=None)
    assert segs.rate.tolist() == [0.5, 0.5, 0.5]
    a = t0.timestamp()
    assert rolling_minimum(segs, a, a + 4 * 3600, 3600) == 0.5
    assert reached_zero(segs, a, a + 4 * 3600, timedelta(minutes=15)) is False
    # Steps longer than the rolling window say nothing about its lowest hour.
    assert len(volume_segments((t, v), timedelta(hours=1), rollover=None)) == 2
