"""The uptime report: the domain.md test vector, fleet intact rates and entrapment rescue.

The lifts poll every hour here, so with the default gap_polls = 3 a sample covers at most 3 h.
April 2024 has 30 days = 720 h. el-1 (building A), one sample of each metric per hour:

    hours      service_mode  fault_code  entrapment   state
    100-101    7 (out)       21          0            DOWN, fault class door_lock
    200-207    2 (insp.)     0           0            PLANNED (inspection entered from UP)
    300-301    7 (out)       0           0            DOWN, out_of_service
    500-501    7 (out)       12          1            DOWN, entrapment
    600-607    no samples: the 599 h sample covers 599-602, so 602-608 = 6 h UNKNOWN
    otherwise  1 (normal)    0           0            UP

    up 700 h, down 6 h in 3 faults, planned 8 h, unknown 6 h  (domain.md)
    A = 700/706 = 99.150 %, A_low = 700/712 = 98.315 %, A_high = 706/712 = 99.157 %,
    coverage = 714/720 = 99.17 %, MTBF = 700/3 = 233.33 h, MTTR = 6/3 = 2 h.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from alerts.tickets import TicketRequest, TicketStore
from config.models import SiteConfig
from config.reporting import UptimeSettings
from reports.context import ReportContext
from reports.period import Period
from reports.uptime import UptimeReport, state_timeline, uptime_report
from store.base import SeriesArrays, Store
from store.reading import Reading, to_us
from tests.alerts.conftest import _pg_schema
from tests.fixtures.stores import StoreFactory

SH = ZoneInfo("Asia/Shanghai")
APRIL = Period.month(2024, 4, SH)
T0 = APRIL.start
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
AFTER_APRIL = datetime(2024, 5, 2, 9, 0, tzinfo=SH)


def _lift(id_: str, building: str, poll: str = "1h") -> dict[str, Any]:
    return {
        "id": id_,
        "name": f"{building}座 {id_}",
        "kind": "elevator",
        "location": {"building": building, "floor": "B1"},
        "source": {"type": "modbus_tcp", "host": "10.0.0.9", "profile": "elevator_gbt24476"},
        "poll_interval": poll,
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
                _lift("el-1", "A"),
                _lift("el-2", "B"),
                _lift("el-3", "B"),
                {
                    "id": "pm-1",
                    "name": "总表",
                    "kind": "power_meter",
                    "location": {"building": "A"},
                    "source": {
                        "type": "modbus_tcp",
                        "host": "10.0.0.5",
                        "profile": "generic_power_meter_3p",
                    },
                },
            ],
            "reports": {"uptime": {"fault_classes": {21: "door_lock"}}},
        }
    )


def state(device: str, t: datetime, mode: int, fault: int = 0, trapped: int = 0) -> list[Reading]:
    return [
        Reading(t, device, "service_mode", float(mode)),
        Reading(t, device, "fault_code", float(fault)),
        Reading(t, device, "entrapment", float(trapped)),
    ]


def vector_month(device: str = "el-1") -> list[Reading]:
    out: list[Reading] = []
    for h in range(720):
        t = T0 + h * H
        if 600 <= h < 608:
            continue
        if h in (100, 101):
            out += state(device, t, 7, 21)
        elif 200 <= h < 208:
            out += state(device, t, 2)
        elif h in (300, 301):
            out += state(device, t, 7)
        elif h in (500, 501):
            out += state(device, t, 7, 12, trapped=1)
        else:
            out += state(device, t, 1)
    return out


@pytest.fixture
def tickets(tmp_path: Path) -> Iterator[TicketStore]:
    ts = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    yield ts
    ts.close()


def report(
    store: Store, tickets: TicketStore, now: datetime, building: str | None = None
) -> UptimeReport:
    rc = ReportContext(site(), store, tickets, clock=lambda: now)
    return uptime_report(rc, APRIL, building=building)


def pct(x: float | None, digits: int = 3) -> float:
    assert x is not None
    return round(100 * x, digits)


def test_the_domain_vector_on_each_backend(
    store_factory: StoreFactory, tickets: TicketStore
) -> None:
    store = store_factory()
    store.write(vector_month())
    rep = report(store, tickets, AFTER_APRIL, building="A")
    assert rep.complete and rep.period == "2024-04"
    assert rep.start.isoformat() == "2024-04-01T00:00:00+08:00"
    assert rep.end.isoformat() == "2024-05-01T00:00:00+08:00"
    (a,) = rep.assets  # the power meter reports no state: not an asset here
    assert a.device == "el-1"
    assert (a.window_h, a.up_h, a.down_h, a.planned_h, a.unknown_h) == (720, 700, 6, 8, 6)
    assert pct(a.availability) == 99.150
    assert pct(a.availability_low) == 98.315
    assert pct(a.availability_high) == 99.157
    assert pct(a.coverage, 2) == 99.17
    assert (a.failures, a.restorations) == (3, 3)
    assert a.mtbf_h == 233.333
    assert a.mttr_h == 2.0
    assert not a.insufficient_data and a.in_good_order
    assert a.planned_by_reason == {"inspection": 8.0}
    assert [(d.cause, d.hours) for d in a.downtime_by_cause] == [
        ("door_lock", 2.0),
        ("entrapment", 2.0),
        ("out_of_service", 2.0),
    ]
    (trap,) = a.entrapments
    assert trap.start.isoformat() == "2024-04-21T20:00:00+08:00"  # hour 500
    assert trap.end is not None and trap.end.isoformat() == "2024-04-21T22:00:00+08:00"
    # No ticket with an arrival: the rescue is taken to be the end of the entrapment.
    assert (trap.duration_min, trap.response_min, trap.response_from) == (
        120.0,
        120.0,
        "entrapment_end",
    )
    assert trap.over_limit and trap.ticket is None
    assert rep.site.intact_rate_count == 1.0 and pct(rep.site.intact_rate_time) == 99.150


def test_fleet_intact_rates_time_weighted_and_count_based(
    store_factory: StoreFactory, tickets: TicketStore
) -> None:
    store = store_factory()
    # el-2 (B): out of service for one whole day -> A = 696/720 = 96.667 %, below 98 %.
    # el-3 (B): never reported -> all unknown, insufficient data, not in good order.
    el2: list[Reading] = []
    for h in range(720):
        el2 += state("el-2", T0 + h * H, 7 if 48 <= h < 72 else 1)
    store.write(vector_month() + el2)
    rep = report(store, tickets, AFTER_APRIL)
    by = {a.device: a for a in rep.assets}
    assert list(by) == ["el-1", "el-2", "el-3"]
    assert pct(by["el-2"].availability) == 96.667 and not by["el-2"].in_good_order
    assert by["el-2"].failures == 1 and by["el-2"].mttr_h == 24.0
    el3 = by["el-3"]
    assert el3.unknown_h == 720 and el3.coverage == 0.0 and el3.insufficient_data
    assert el3.availability is None and el3.availability_low == 0.0
    assert not el3.in_good_order

    a, b = rep.buildings
    assert (a.building, a.assets, a.in_good_order, a.intact_rate_count) == ("A", 1, 1, 1.0)
    assert a.meets_target_count and a.meets_target_time
    assert (b.building, b.assets, b.in_good_order, b.insufficient_data) == ("B", 2, 0, 1)
    assert b.intact_rate_count == 0.0 and pct(b.intact_rate_time) == 96.667
    site_ = rep.site
    # Count-based: 1 of 3 lifts in good order; time-weighted: (700 + 696) / (706 + 720).
    assert (site_.assets, site_.in_good_order) == (3, 1)
    assert pct(site_.intact_rate_count) == 33.333
    assert pct(site_.intact_rate_time) == 97.896
    assert site_.meets_target_count is False and site_.meets_target_time is False
    assert site_.failures == 4 and site_.entrapments == 1 and site_.entrapments_over_limit == 1


def test_a_running_month_ends_now(store_factory: StoreFactory, tickets: TicketStore) -> None:
    store = store_factory()
    store.write(vector_month())  # includes samples after "now": they are not read
    rep = report(store, tickets, datetime(2024, 4, 10, 0, 0, tzinfo=SH), building="A")
    assert not rep.complete and rep.end.isoformat() == "2024-04-10T00:00:00+08:00"
    (a,) = rep.assets
    # 216 h: the door fault (2 h) and the inspection (8 h) so far, nothing unknown.
    assert (a.window_h, a.up_h, a.down_h, a.planned_h, a.unknown_h) == (216, 206, 2, 8, 0)
    assert (a.failures, a.restorations, a.entrapments) == (1, 1, [])
    assert pct(a.coverage) == 100.0


@pytest.fixture(params=["sqlite", "postgresql"])
def ticket_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TicketStore]:
    if request.param == "sqlite":
        ts = TicketStore(f"sqlite:///{tmp_path / 'rescue.db'}")
        yield ts
        ts.close()
        return
    with _pg_schema() as url:
        ts = TicketStore(url)
        yield ts
        ts.close()


def test_rescue_time_is_the_first_arrival_on_a_ticket_of_the_lift(
    embedded_store_factory: Callable[[], Store], ticket_db: TicketStore
) -> None:
    store = embedded_store_factory()
    day = datetime(2024, 4, 3, 0, 0, tzinfo=SH)
    trapped_at = day + 9 * H  # 09:00: stuck between floors; freed at 09:50
    rows: list[Reading] = []
    for h in range(24):
        if h != 9:
            rows += state("el-2", day + h * H, 1)
    rows += state("el-2", trapped_at, 7, 12, trapped=1)
    rows += state("el-2", trapped_at + 50 * MIN, 1)
    # Another lift's arrival in the same minutes must not count for el-2.
    rows += state("el-1", day + 9 * H, 7, 12, trapped=1)
    rows += state("el-1", day + 10 * H, 1)
    store.write(rows)

    other = ticket_db.open_or_add_occurrence(
        TicketRequest("1号梯困人", "el-1", "A", "entrapment", "critical"), day + 9 * H + MIN
    )
    ticket_db.accept_ticket(other.id, day + 9 * H + 2 * MIN, "zhao")
    ticket_db.record_arrival(other.id, day + 9 * H + 5 * MIN, "zhao")
    wo = ticket_db.open_or_add_occurrence(
        TicketRequest("2号梯困人", "el-2", "B", "entrapment", "critical"), trapped_at + MIN
    )
    ticket_db.accept_ticket(wo.id, trapped_at + 3 * MIN, "wang")
    ticket_db.record_arrival(wo.id, trapped_at + 20 * MIN, "wang")

    rep = report(store, ticket_db, AFTER_APRIL)
    by = {a.device: a for a in rep.assets}
    (first,) = by["el-1"].entrapments
    assert (first.response_min, first.ticket) == (5.0, other.number)
    el2 = by["el-2"]
    (trap,) = el2.entrapments
    assert trap.start.isoformat() == "2024-04-03T09:00:00+08:00"
    assert trap.end is not None and trap.end.isoformat() == "2024-04-03T09:50:00+08:00"
    assert (trap.duration_min, trap.response_min, trap.response_from) == (50.0, 20.0, "ticket")
    assert trap.ticket == wo.number and not trap.over_limit
    assert [(d.cause, d.hours) for d in el2.downtime_by_cause] == [("entrapment", 0.833)]
    assert rep.site.entrapments == 2 and rep.site.entrapments_over_limit == 0


# -- the classification rules, on hand-made timelines (no store) -------------------------------
S = UptimeSettings(fault_classes={21: "door_lock"})
P0 = datetime(2024, 4, 1, 0, 0, tzinfo=SH)


def timeline(
    mode: list[tuple[float, float]] | None,
    fault: list[tuple[float, float]] | None,
    trap: list[tuple[float, float]] | None,
    hours: float = 10,
) -> list[tuple[float, float, str, str]]:
    def pts(xs: list[tuple[float, float]] | None) -> SeriesArrays | None:
        if xs is None:
            return None
        t = np.array([to_us(P0 + h * H) for h, _ in xs], dtype=np.int64)
        return t, np.array([v for _, v in xs], dtype=np.float64)

    spans = state_timeline([pts(mode), pts(fault), pts(trap)], 3 * H, P0, P0 + hours * H, S)
    return [((s.start - P0) / H, (s.end - P0) / H, s.state, s.cause) for s in spans]


def every_hour(*values: float) -> list[tuple[float, float]]:
    return [(float(h), v) for h, v in enumerate(values)]


def test_inspection_after_a_fault_is_the_repair_and_stays_down() -> None:
    mode = every_hour(1, 7, 2, 2, 1, 2, 1)
    fault = every_hour(0, 21, 0, 0, 0, 0, 0)
    assert timeline(mode, fault, every_hour(*[0] * 7), hours=7) == [
        (0, 1, "up", ""),
        (1, 4, "down", "door_lock"),  # the inspection at 2-4 repairs the door fault
        (4, 5, "up", ""),
        (5, 6, "planned", "inspection"),  # entered from service: planned maintenance
        (6, 7, "up", ""),
    ]


def test_special_modes_are_planned_by_reason_and_unknown_codes_unknown() -> None:
    mode = every_hour(3, 4, 5, 6, 0, 9, 1)
    assert timeline(mode, every_hour(*[0] * 7), every_hour(*[0] * 7), hours=7) == [
        (0, 1, "planned", "fire_return"),
        (1, 2, "planned", "firefighter"),
        (2, 3, "planned", "emergency_power"),
        (3, 4, "planned", "earthquake"),
        (4, 6, "unknown", ""),  # 0 = unknown, 9 = not a code of the profile
        (6, 7, "up", ""),
    ]


def test_a_time_is_known_only_where_the_deciding_metrics_are_covered() -> None:
    # Mode normal all along; the fault code stops at 2 h (covers to 5 h); entrapment 255
    # (unknown) at 7 h. Entrapment = 1 decides DOWN alone, even with the mode uncovered.
    mode = [(0.0, 1.0), (3.0, 1.0), (6.0, 1.0)]
    fault = [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (6.0, 0.0)]
    trap = [(0.0, 0.0), (3.0, 0.0), (6.0, 0.0), (7.0, 255.0), (8.0, 0.0), (9.5, 1.0)]
    assert timeline(mode, fault, trap, hours=12) == [
        (0, 5, "up", ""),
        (5, 6, "unknown", ""),  # fault code not covered
        (6, 7, "up", ""),
        (7, 8, "unknown", ""),  # entrapment 255
        (8, 9, "up", ""),
        (9, 9.5, "unknown", ""),  # mode (6 h) and fault code (6 h) covered to 9 h only
        (9.5, 12, "down", "entrapment"),
    ]


def test_a_metric_the_device_does_not_report_does_not_decide() -> None:
    # No service mode and no entrapment register: the fault code alone decides.
    fault = every_hour(0, 0, 31, 0)
    assert timeline(None, fault, None, hours=4) == [
        (0, 2, "up", ""),
        (2, 3, "down", "fault_31"),
        (3, 4, "up", ""),
    ]
    assert timeline(None, None, None, hours=4) == [(0, 4, "unknown", "")]
