"""Communication loss of a whole gateway or serial bus (A8: one alert per device *or gateway*,
T4: it resolves itself when the gateway answers again), stepping time through ``now=`` against
a real ticket database (SQLite file and the running PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from alerts import AlertEngine, AlertState, TicketStatus, TicketStore
from alerts.engine import AlertTransition
from config.models import SiteConfig
from tests.alerts.test_engine import T0, _device, r, site_config

GATEWAY = {"type": "modbus_rtu_over_tcp", "host": "127.0.0.1", "port": 4001}
BEHIND = ("el-1", "el-2", "pm-1")  # the three units behind the gateway
F, N, OFF, X = AlertState.FIRING, AlertState.NODATA, AlertState.INACTIVE, AlertState.RESOLVED


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _behind(id_: str, kind: str, unit: int, building: str = "A") -> dict[str, Any]:
    profile = "elevator_gbt24476" if kind == "elevator" else "generic_power_meter_3p"
    return _device(
        id_,
        kind,
        building,
        poll_interval="10s",
        source={**GATEWAY, "unit_id": unit, "profile": profile},
    )


def config(language: str = "zh-CN") -> SiteConfig:
    lift = {
        "id": "lift_fault",
        "name": "电梯故障",
        "metric": "fault_code",
        "select": {"kinds": ["elevator"]},
        "above": 0,
        "severity": "critical",
        "fault_class": "elevator_fault",
    }
    return site_config(
        site={"id": "riverside", "name": "滨江广场", "language": language},
        devices=[
            _behind("el-1", "elevator", 1),
            _behind("el-2", "elevator", 2),
            _behind("pm-1", "power_meter", 3, building="B"),
            # Alone on its own connection: a gateway needs two units behind it.
            _device("ts-1", "sensor", "A", poll_interval="10s"),
        ],
        rules=[lift],
    )


@pytest.fixture
def tickets(db_url: str) -> Iterator[TicketStore]:
    store = TicketStore(db_url)
    yield store
    store.close()


def feed(engine: AlertEngine, t: float, *samples: tuple[str, str, float]) -> list[AlertTransition]:
    return engine.evaluate([r(d, m, v, at(t)) for d, m, v in samples], now=at(t))


def up(engine: AlertEngine, t: float, *devices: str, value: float = 1) -> list[AlertTransition]:
    return feed(engine, t, *((d, "device_up", value) for d in devices))


def moves(out: list[AlertTransition]) -> list[tuple[str, str, AlertState, AlertState]]:
    return [(x.rule_id, x.device, x.before, x.after) for x in out]


def test_all_devices_behind_a_gateway_silent_raise_one_gateway_alert_and_one_ticket(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(), tickets)
    # Last answers at different moments, as a collector working down the bus gives them.
    feed(engine, 0, ("el-1", "fault_code", 7), ("el-1", "device_up", 1), ("ts-1", "device_up", 1))
    up(engine, 3, "el-2")
    up(engine, 6, "pm-1")
    for s in range(7, 26):
        # Failed polls of every unit; ts-1, on a connection of its own, keeps answering.
        out = up(engine, s, *BEHIND, value=0) + up(engine, s, "ts-1") + engine.tick(at(s))
        # el-1 is stale from 20 s and el-2 from 23 s, but no neighbour answered after them:
        # that may be the gateway, so no alert of their own; only the fault code, missing
        # for its stale_after, shows NODATA, quietly.
        expected = [("lift_fault", "el-1", F, N)] if s == 20 else []
        assert moves(out) == expected and not any(x.notify for x in out), s
    out = up(engine, 26, *BEHIND, value=0)
    assert moves(out) == [("gateway_offline", "gateway:127.0.0.1:4001", OFF, F)]
    gw = out[0]
    assert gw.notify and gw.ticket is not None and gw.building == "A"  # two of three are in A
    assert gw.ticket.title == "网关 127.0.0.1:4001 通信中断（3 台设备）"
    assert (gw.ticket.fault_class, gw.ticket.priority) == ("gateway_offline", "P2")
    assert gw.ticket.device == "gateway:127.0.0.1:4001"
    detail = tickets.get_ticket(gw.ticket.id)
    assert detail is not None
    assert "el-1, el-2, pm-1" in detail.events[0].note
    assert all(engine.device_down(d) for d in BEHIND) and not engine.device_down("ts-1")

    # As long as it lasts: nothing more, least of all one communication-loss alert per device.
    for s in (27, 60, 600, 3600):
        assert up(engine, s, *BEHIND, value=0) + up(engine, s, "ts-1") + engine.tick(at(s)) == []
    states = sorted((a.rule_id, a.device, a.state) for a in tickets.unresolved_alerts())
    assert states == [
        ("gateway_offline", "gateway:127.0.0.1:4001", F),
        ("lift_fault", "el-1", N),
    ]
    assert sorted(t.fault_class for t in tickets.list_tickets().items) == [
        "elevator_fault",
        "gateway_offline",
    ]


def test_the_gateway_answering_again_resolves_its_alert_and_ticket(tickets: TicketStore) -> None:
    engine = AlertEngine(config(language="en"), tickets)
    up(engine, 0, *BEHIND, "ts-1")
    up(engine, 10, "ts-1")
    [gw] = engine.tick(at(20))
    assert gw.rule_id == "gateway_offline" and gw.ticket is not None
    assert gw.ticket.title == "gateway 127.0.0.1:4001 offline (3 devices)"

    up(engine, 30, "ts-1")
    # One unit answering proves the gateway works: resolved, the ticket too (T4).
    out = up(engine, 40, "el-2", "ts-1")
    assert moves(out) == [("gateway_offline", "gateway:127.0.0.1:4001", F, X)]
    assert out[0].notify
    detail = tickets.get_ticket(gw.ticket.id)
    assert detail is not None
    assert detail.ticket.status is TicketStatus.RESOLVED and detail.ticket.resolved_at == at(40)
    assert [(e.kind, e.who) for e in detail.events] == [
        ("created", "facmon"),
        ("condition_cleared", "facmon"),
        ("resolved", "facmon"),
    ]
    assert "el-2 behind 127.0.0.1:4001 answers again" in detail.events[-1].note

    # Its neighbours are not lost the moment after: their silence counts from the recovery.
    assert engine.tick(at(41)) == []
    up(engine, 45, "el-1")
    for s in (50, 55):
        up(engine, s, "el-1", "el-2", "ts-1")
        assert engine.tick(at(s)) == []
    # pm-1 really stays silent: now a fault of its own, while its neighbours answer.
    up(engine, 60, "el-1", "el-2", "ts-1")
    out = engine.tick(at(60))
    assert moves(out) == [("communication_loss", "pm-1", OFF, F)]
    assert out[0].ticket is not None and out[0].ticket.fault_class == "communication_loss"


def test_one_silent_device_behind_a_working_gateway_gets_its_own_alert(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(), tickets)
    up(engine, 0, *BEHIND)
    up(engine, 10, "el-2", "pm-1", "ts-1")
    assert up(engine, 10, "el-1", value=0) == []  # one failed poll is not a loss
    up(engine, 20, "el-2", "pm-1", "ts-1")
    # Its neighbours answered after it stopped: the gateway works, el-1 itself is lost.
    out = up(engine, 20, "el-1", value=0)
    assert moves(out) == [("communication_loss", "el-1", OFF, F)]
    assert out[0].ticket is not None and out[0].ticket.title == "el-1 名称: 通信中断"
    assert engine.device_down("el-1") and not engine.device_down("el-2")
    # The same for the device that has a connection of its own.
    up(engine, 30, "el-2", "pm-1")
    up(engine, 40, "el-2", "pm-1")
    assert engine.tick(at(39)) == []
    out = engine.tick(at(40))
    assert moves(out) == [("communication_loss", "ts-1", OFF, F)]
    assert [a.rule_id for a in tickets.unresolved_alerts()] == ["communication_loss"] * 2


def test_devices_lost_one_by_one_keep_their_alerts_and_the_rest_share_one(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(), tickets)
    up(engine, 0, *BEHIND, "ts-1")
    up(engine, 10, "el-2", "pm-1", "ts-1")
    up(engine, 20, "el-2", "pm-1", "ts-1")
    assert moves(engine.tick(at(20))) == [("communication_loss", "el-1", OFF, F)]
    # Then the gateway goes: el-2 and pm-1 last answered at 20 s.
    for s in (30, 39):
        up(engine, s, "ts-1")
        assert engine.tick(at(s)) == []
    up(engine, 40, "ts-1")
    out = engine.tick(at(40))
    assert moves(out) == [("gateway_offline", "gateway:127.0.0.1:4001", OFF, F)]
    assert sorted(t.fault_class for t in tickets.list_tickets().items) == [
        "communication_loss",
        "gateway_offline",
    ]
    # el-1 answering ends both: it proves the gateway and itself.
    out = up(engine, 50, "el-1")
    assert sorted(moves(out)) == [
        ("communication_loss", "el-1", F, X),
        ("gateway_offline", "gateway:127.0.0.1:4001", F, X),
    ]
    assert tickets.unresolved_alerts() == []


def test_a_restart_during_a_gateway_outage_raises_no_second_alert(db_url: str) -> None:
    first = TicketStore(db_url)
    e1 = AlertEngine(config(), first)
    up(e1, 0, *BEHIND, "ts-1")
    up(e1, 10, "ts-1")
    assert [x.rule_id for x in e1.tick(at(20))] == ["gateway_offline"]
    first.close()

    second = TicketStore(db_url)
    try:
        e2 = AlertEngine(config(), second)
        assert all(e2.device_down(d) for d in BEHIND)
        for s in (100, 120, 200):
            up(e2, s, "ts-1")
            assert e2.tick(at(s)) == []
        assert second.list_tickets().total == 1
        out = up(e2, 210, "pm-1")
        assert moves(out) == [("gateway_offline", "gateway:127.0.0.1:4001", F, X)]
    finally:
        second.close()


def test_devices_on_one_unit_of_one_connection_are_no_gateway(tickets: TicketStore) -> None:
    # Two devices read from the same unit (unit 1 of 127.0.0.1:502) are one device on the wire.
    cfg = site_config(
        devices=[
            _device("pm-1", "power_meter", "A", poll_interval="10s"),
            _device("pm-2", "power_meter", "A", poll_interval="10s"),
        ],
        rules=[],
    )
    engine = AlertEngine(cfg, tickets)
    out = engine.tick(at(0)) + engine.tick(at(20))
    assert sorted(moves(out)) == [
        ("communication_loss", "pm-1", OFF, F),
        ("communication_loss", "pm-2", OFF, F),
    ]


def test_gateway_offline_is_a_reserved_rule_id() -> None:
    bad = {
        "id": "gateway_offline",
        "name": "x",
        "metric": "device_up",
        "below": 1,
        "fault_class": "x",
    }
    with pytest.raises(ValidationError, match="reserved for the built-in gateway-offline"):
        site_config(rules=[bad])
