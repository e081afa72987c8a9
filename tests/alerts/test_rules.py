"""One test per rule of ../shared/alerting-semantics.md that the engine and the ticket store
implement beyond the basics in test_engine.py: stepping time with ``now=``, never sleeping, on a
SQLite file and on the running PostgreSQL (``db_url``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from alerts import AlertEngine, AlertState, TicketStatus, TicketStore
from alerts.engine import AlertTransition
from tests.alerts.test_engine import T0, _device, r, site_config


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rule(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "cable_hot",
        "name": "电缆温度过高",
        "metric": "cable_temp",
        "select": {"devices": ["ts-1"]},
        "above": 80,
        "clear": 70,
        "severity": "major",
        "fault_class": "overtemp",
    }
    base.update(over)
    return base


def config(*rules: dict[str, Any], poll: str = "10s") -> Any:
    devices = [
        _device("ts-1", "sensor", "A", poll_interval=poll),
        _device("el-1", "elevator", "A", poll_interval=poll),
    ]
    return site_config(devices=devices, rules=list(rules))


@pytest.fixture
def tickets(db_url: str) -> Iterator[TicketStore]:
    store = TicketStore(db_url)
    yield store
    store.close()


def feed(engine: AlertEngine, t: float, *samples: tuple[str, str, float]) -> list[AlertTransition]:
    return engine.evaluate([r(d, m, v, at(t)) for d, m, v in samples], now=at(t))


def moves(out: list[AlertTransition]) -> list[tuple[str, AlertState, AlertState, bool]]:
    return [(x.rule_id, x.before, x.after, x.notify) for x in out]


def events(tickets: TicketStore, ticket_id: int) -> list[str]:
    detail = tickets.get_ticket(ticket_id)
    assert detail is not None
    return [e.kind for e in detail.events]


F, R, N, P, OFF, X = (
    AlertState.FIRING,
    AlertState.RECOVERING,
    AlertState.NODATA,
    AlertState.PENDING,
    AlertState.INACTIVE,
    AlertState.RESOLVED,
)


def test_A4_deadband_sets_the_default_clear_level(tickets: TicketStore) -> None:
    high = rule(clear=None, deadband=5)
    low = rule(id="cold", clear=None, above=None, below=10, deadband=2, fault_class="cold")
    engine = AlertEngine(config(high, low), tickets)
    assert moves(feed(engine, 0, ("ts-1", "cable_temp", 81))) == [("cable_hot", OFF, F, True)]
    assert feed(engine, 5, ("ts-1", "cable_temp", 76)) == []  # between 75 and 80: still firing
    assert moves(feed(engine, 10, ("ts-1", "cable_temp", 75))) == [("cable_hot", F, X, True)]
    assert moves(feed(engine, 15, ("ts-1", "cable_temp", 9))) == [("cold", OFF, F, True)]
    assert feed(engine, 20, ("ts-1", "cable_temp", 11.9)) == []
    assert moves(feed(engine, 25, ("ts-1", "cable_temp", 12))) == [("cold", F, X, True)]


def test_A5_keep_firing_for_recovers_and_a_retrip_continues_the_episode_quietly(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rule(keep_firing_for="5m")), tickets)
    first = feed(engine, 0, ("ts-1", "cable_temp", 85))
    assert moves(first) == [("cable_hot", OFF, F, True)] and first[0].ticket is not None

    out = feed(engine, 60, ("ts-1", "cable_temp", 65))
    assert moves(out) == [("cable_hot", F, R, False)]
    [alert] = tickets.unresolved_alerts()
    assert alert.state is R and alert.recovering_since == at(60)

    out = feed(engine, 120, ("ts-1", "cable_temp", 90))  # trips again while RECOVERING
    assert moves(out) == [("cable_hot", R, F, False)]
    assert out[0].ticket is None and out[0].alert_id == first[0].alert_id
    [ticket] = tickets.list_tickets().items
    assert ticket.occurrences == 1 and events(tickets, ticket.id) == ["created"]


def test_A6_recovering_resolves_once_the_clear_level_held_for_keep_firing_for(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rule(keep_firing_for="5m")), tickets)
    feed(engine, 0, ("ts-1", "cable_temp", 85))
    assert moves(feed(engine, 60, ("ts-1", "cable_temp", 65))) == [("cable_hot", F, R, False)]
    # A value between the levels breaks the hold: firing again, and the hold restarts.
    assert moves(feed(engine, 120, ("ts-1", "cable_temp", 75))) == [("cable_hot", R, F, False)]
    assert moves(feed(engine, 180, ("ts-1", "cable_temp", 60))) == [("cable_hot", F, R, False)]
    assert feed(engine, 479, ("ts-1", "cable_temp", 60)) == []
    out = feed(engine, 480, ("ts-1", "cable_temp", 60))
    assert moves(out) == [("cable_hot", R, X, True)]
    assert tickets.unresolved_alerts() == []
    [ticket] = tickets.list_tickets().items
    assert ticket.status is TicketStatus.NEW  # T4
    assert events(tickets, ticket.id) == ["created", "condition_cleared"]


def test_A6_tick_resolves_a_recovering_alert_between_samples(tickets: TicketStore) -> None:
    # Polled every minute, so the samples are not stale when the hold runs out.
    engine = AlertEngine(config(rule(keep_firing_for="30s"), poll="60s"), tickets)
    feed(engine, 0, ("ts-1", "cable_temp", 85), ("el-1", "device_up", 1))
    feed(engine, 60, ("ts-1", "cable_temp", 65), ("el-1", "device_up", 1))
    assert engine.tick(at(89)) == []
    out = engine.tick(at(90))
    assert moves(out) == [("cable_hot", R, X, True)] and out[0].at == at(90)
    assert engine.tick(at(91)) == []


def test_A8_missing_data_never_resolves_it_shows_nodata_after_stale_after(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rule()), tickets)  # poll 10s: stale after 20s
    feed(engine, 0, ("ts-1", "cable_temp", 85), ("el-1", "device_up", 1))
    for s in (10, 20, 30):  # the device answers, but cable_temp stopped coming
        feed(engine, s, ("ts-1", "device_up", 1), ("el-1", "device_up", 1))
        out = engine.tick(at(s))
        assert moves(out) == ([("cable_hot", F, N, False)] if s == 20 else []), s
    [alert] = tickets.unresolved_alerts()
    assert alert.state is N
    assert not engine.device_down("ts-1")
    # Data again, still hot: the same episode continues without a page or a ticket.
    out = feed(engine, 35, ("ts-1", "cable_temp", 86))
    assert moves(out) == [("cable_hot", N, F, False)] and out[0].alert_id == alert.id
    assert len(tickets.list_tickets().items) == 1


def test_A8_a_pending_condition_that_goes_silent_is_dropped(tickets: TicketStore) -> None:
    engine = AlertEngine(config(rule(**{"for": "60s"})), tickets)
    assert moves(feed(engine, 0, ("ts-1", "cable_temp", 85))) == [("cable_hot", OFF, P, False)]
    feed(engine, 15, ("ts-1", "device_up", 1), ("el-1", "device_up", 1))
    out = engine.tick(at(20))
    assert moves(out) == [("cable_hot", P, OFF, False)]
    assert tickets.unresolved_alerts() == [] and tickets.list_tickets().total == 0


def test_A8_a_silent_device_raises_exactly_one_communication_loss_alert_and_mutes_its_points(
    tickets: TicketStore,
) -> None:
    lift = rule(
        id="lift_fault",
        metric="fault_code",
        select={"kinds": ["elevator"]},
        above=0,
        clear=None,
        severity="critical",
        fault_class="elevator_fault",
    )
    engine = AlertEngine(config(lift), tickets)
    feed(engine, 0, ("el-1", "fault_code", 5), ("ts-1", "device_up", 1))
    for s in (10, 19):
        feed(engine, s, ("el-1", "device_up", 0), ("ts-1", "device_up", 1))
        assert engine.tick(at(s)) == []

    feed(engine, 20, ("ts-1", "device_up", 1))
    out = engine.tick(at(20))
    assert moves(out) == [
        ("communication_loss", OFF, F, True),
        ("lift_fault", F, N, False),
    ]
    comm = out[0]
    assert comm.device == "el-1" and comm.metric == "device_up" and comm.ticket is not None
    assert comm.ticket.fault_class == "communication_loss" and comm.ticket.priority == "P2"
    assert comm.ticket.title == "el-1 名称: 通信中断"
    assert engine.device_down("el-1") and not engine.device_down("ts-1")

    # Ticks and failed polls while it lasts add nothing: one alert per device.
    for s in (21, 30, 300):
        feed(engine, s, ("el-1", "device_up", 0), ("ts-1", "device_up", 1))
        assert engine.tick(at(s)) == []
    states = sorted((a.rule_id, a.state) for a in tickets.unresolved_alerts())
    assert states == [("communication_loss", F), ("lift_fault", N)]
    assert sorted(t.fault_class for t in tickets.list_tickets().items) == [
        "communication_loss",
        "elevator_fault",
    ]


def test_A8_device_up_zero_opens_communication_loss_without_waiting_for_a_tick(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rule()), tickets)
    feed(engine, 0, ("el-1", "device_up", 1))
    assert feed(engine, 10, ("el-1", "device_up", 0)) == []  # one failed poll is not a loss
    out = feed(engine, 20, ("el-1", "device_up", 0))
    assert moves(out) == [("communication_loss", OFF, F, True)]
    assert out[0].at == at(20) and math.isnan(out[0].value)


def test_A8_T4_the_device_answering_again_resolves_the_alert_and_its_ticket(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rule()), tickets)
    feed(engine, 0, ("ts-1", "cable_temp", 85), ("el-1", "device_up", 1))
    feed(engine, 20, ("el-1", "device_up", 1))
    out = engine.tick(at(20))
    assert moves(out) == [("communication_loss", OFF, F, True), ("cable_hot", F, N, False)]
    comm_ticket = out[0].ticket
    assert comm_ticket is not None

    out = feed(engine, 45, ("ts-1", "cable_temp", 60))
    assert moves(out) == [("communication_loss", F, X, True), ("cable_hot", N, X, True)]
    detail = tickets.get_ticket(comm_ticket.id)
    assert detail is not None
    assert detail.ticket.status is TicketStatus.RESOLVED and detail.ticket.resolved_at == at(45)
    assert [(e.kind, e.who) for e in detail.events] == [
        ("created", "facmon"),
        ("condition_cleared", "facmon"),
        ("resolved", "facmon"),
    ]
    assert "communication restored" in detail.events[-1].note
    # The overheating ticket is not an auto-resolve class: a note, still open.
    [hot] = [t for t in tickets.list_tickets().items if t.fault_class == "overtemp"]
    assert hot.status is TicketStatus.NEW
    assert events(tickets, hot.id) == ["created", "condition_cleared"]


def test_A9_severity_rises_within_an_episode_and_never_falls(db_url: str) -> None:
    stores: list[TicketStore] = []
    try:
        for severity, expect in (
            ("major", [("cable_hot", OFF, F, True)]),
            ("critical", [("cable_hot", F, F, True)]),  # rose: page again, ticket P1
            ("minor", []),  # would fall: stays critical
        ):
            stores.append(TicketStore(db_url))
            engine = AlertEngine(config(rule(severity=severity)), stores[-1])
            out = feed(engine, len(stores) * 10, ("ts-1", "cable_temp", 90))
            assert moves(out) == expect, severity
            assert [a.severity for a in engine.unresolved()] == [
                "major" if severity == "major" else "critical"
            ]
            stores[-1].close()
        store = TicketStore(db_url)
        stores.append(store)
        [ticket] = store.list_tickets().items
        assert ticket.priority == "P1" and ticket.due_at == ticket.created_at + timedelta(hours=4)
        assert events(store, ticket.id) == ["created", "priority_raised"]
    finally:
        for s in stores:
            s.close()


def test_A12_chattering_holds_the_episode_open_and_counts_its_cycles(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rule()), tickets)  # no keep_firing_for
    script = [
        (0, 85, [(OFF, F, True)]),
        (5, 65, [(F, X, True)]),  # cycle 1
        (10, 85, [(OFF, F, True)]),
        (15, 65, [(F, X, True)]),  # cycle 2
        (20, 85, [(OFF, F, True)]),
        (25, 65, [(F, R, False)]),  # cycle 3 within 60 s: chattering, held open
        (30, 85, [(R, F, False)]),
        (35, 65, [(F, R, False)]),
        (45, 65, []),
        (94, 65, []),
        (95, 65, [(R, X, True)]),  # quiet for a whole chatter window
    ]
    for s, v, expect in script:
        out = feed(engine, s, ("ts-1", "cable_temp", v))
        assert [(x.before, x.after, x.notify) for x in out] == expect, s
        if s == 35:
            [alert] = engine.unresolved()
            assert alert.chattering and alert.cycles == 2
    [ticket] = tickets.list_tickets().items
    assert ticket.occurrences == 3  # three episodes, not six


def test_A13_restart_keeps_a_recovering_episode_and_its_hold(db_url: str) -> None:
    cfg = config(rule(keep_firing_for="5m"))
    first = TicketStore(db_url)
    e1 = AlertEngine(cfg, first)
    a = feed(e1, 0, ("ts-1", "cable_temp", 85))[0]
    feed(e1, 60, ("ts-1", "cable_temp", 65))
    first.close()  # no shutdown step: what is on disk is all there is

    second = TicketStore(db_url)
    try:
        e2 = AlertEngine(cfg, second)
        [alert] = e2.unresolved()
        assert (alert.state, alert.recovering_since, alert.id) == (R, at(60), a.alert_id)
        assert feed(e2, 300, ("ts-1", "cable_temp", 65)) == []
        assert moves(feed(e2, 360, ("ts-1", "cable_temp", 65))) == [("cable_hot", R, X, True)]
        assert second.list_tickets().total == 1
    finally:
        second.close()


def test_A13_restart_during_communication_loss_raises_no_second_alert(db_url: str) -> None:
    cfg = config(rule())
    first = TicketStore(db_url)
    e1 = AlertEngine(cfg, first)
    feed(e1, 0, ("el-1", "device_up", 1), ("ts-1", "device_up", 1))
    feed(e1, 20, ("el-1", "device_up", 1))
    assert moves(e1.tick(at(20))) == [("communication_loss", OFF, F, True)]
    first.close()

    second = TicketStore(db_url)
    try:
        e2 = AlertEngine(cfg, second)
        assert e2.device_down("ts-1")
        # Silence is measured from start-up, and the restored alert is not raised again.
        feed(e2, 100, ("el-1", "device_up", 1))
        assert e2.tick(at(100)) == [] and e2.tick(at(119)) == []
        [comm] = second.unresolved_alerts()
        assert (comm.rule_id, comm.device, comm.state) == ("communication_loss", "ts-1", F)
        out = feed(e2, 119, ("ts-1", "device_up", 1))
        assert moves(out) == [("communication_loss", F, X, True)]
    finally:
        second.close()


def test_A10_acknowledging_changes_no_state_and_a_latched_alert_waits_for_it(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(config(rule(latched=True)), tickets)  # no keep_firing_for
    fired = feed(engine, 0, ("ts-1", "cable_temp", 85))[0]
    assert engine.acknowledge(fired.fingerprint, "wang", at(5)) is None
    [alert] = tickets.unresolved_alerts()
    assert (alert.state, alert.acked_by, alert.acked_at) == (F, "wang", at(5))

    # Cleared: visible until someone acknowledges the return to normal, however long it takes.
    assert moves(feed(engine, 10, ("ts-1", "cable_temp", 60))) == [("cable_hot", F, R, False)]
    for s in (20, 600, 3600):
        assert feed(engine, s, ("ts-1", "cable_temp", 60), ("el-1", "device_up", 1)) == []
        assert engine.tick(at(s)) == []
    out = engine.acknowledge(fired.fingerprint, "li", at(3601))
    assert out is not None and (out.before, out.after, out.notify) == (R, X, True)
    assert tickets.unresolved_alerts() == []
    assert fired.ticket is not None
    detail = tickets.get_ticket(fired.ticket.id)
    assert detail is not None
    assert [(e.kind, e.who) for e in detail.events] == [
        ("created", "facmon"),
        ("alert_acknowledged", "wang"),
        ("alert_acknowledged", "li"),
        ("condition_cleared", "facmon"),
    ]
    with pytest.raises(KeyError):
        engine.acknowledge(fired.fingerprint, "li", at(3602))


def test_A8_health_metrics_are_no_proof_of_life_but_rules_may_watch_them(
    tickets: TicketStore,
) -> None:
    slow = rule(id="slow", metric="poll_latency", select={}, clear=None, above=2, fault_class="net")
    engine = AlertEngine(config(slow), tickets)
    feed(engine, 0, ("ts-1", "device_up", 1), ("el-1", "device_up", 1))
    out = feed(engine, 15, ("ts-1", "poll_latency", 3), ("el-1", "device_up", 1))
    assert moves(out) == [("slow", OFF, F, True)]
    feed(engine, 20, ("ts-1", "consecutive_failures", 2), ("el-1", "device_up", 1))
    out = engine.tick(at(20))
    assert [(x.rule_id, x.device) for x in out] == [
        ("communication_loss", "ts-1"),
        ("slow", "ts-1"),
    ]
    assert [x.after for x in out] == [F, N]
