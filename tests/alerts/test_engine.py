"""The alert engine against a real ticket database (SQLite file and PostgreSQL), stepping time
through ``now=``. Rule ids refer to ../shared/alerting-semantics.md."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from alerts import AlertEngine, AlertState, TicketStatus, TicketStore, fingerprint
from config.models import SiteConfig, ThresholdRule
from store.reading import Quality, Reading

T0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)


def _device(id_: str, kind: str, building: str, **extra: Any) -> dict[str, Any]:
    profile = {
        "power_meter": "generic_power_meter_3p",
        "elevator": "elevator_gbt24476",
        "sensor": "generic_power_meter_3p",
    }[kind]
    return {
        "id": id_,
        "name": f"{id_} 名称",
        "kind": kind,
        "location": {"building": building, "floor": "1F"},
        "source": {"type": "modbus_tcp", "host": "127.0.0.1", "profile": profile},
        **extra,
    }


def site_config(**overrides: Any) -> SiteConfig:
    data: dict[str, Any] = {
        "site": {"id": "riverside", "name": "滨江广场"},
        "buildings": [
            {"id": "A", "name": "A座", "floor_area_m2": 20000, "floors": 20},
            {"id": "B", "name": "B座", "floor_area_m2": 15000, "floors": 12},
        ],
        "devices": [
            _device("el-1", "elevator", "A"),
            _device("el-2", "elevator", "B", tags={"bank": "east"}),
            _device("pm-1", "power_meter", "A"),
            _device("pm-2", "power_meter", "B"),
            _device("ts-1", "sensor", "A"),
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
                "id": "cable_hot",
                "name": "电缆温度过高",
                "metric": "cable_temp",
                "select": {"devices": ["ts-1"]},
                "above": 80,
                "clear": 70,
                "for": "60s",
                "severity": "major",
                "fault_class": "overtemp",
            },
            {
                "id": "low_voltage",
                "name": "电压过低",
                "metric": "voltage_a",
                "select": {"kinds": ["power_meter"], "buildings": ["A"]},
                "below": 200,
                "clear": 210,
                "severity": "minor",
                "fault_class": "power_quality",
            },
            {
                "id": "east_bank_stuck",
                "name": "东区电梯停梯",
                "metric": "service_mode",
                "select": {"tags": {"bank": "east"}},
                "above": 1,
                "severity": "major",
                "fault_class": "elevator_fault",
            },
        ],
    }
    data.update(overrides)
    return SiteConfig.model_validate(data)


def r(
    device: str, metric: str, value: float, t: datetime, quality: Quality = Quality.GOOD
) -> Reading:
    return Reading(t, device, metric, value, quality=quality)


@pytest.fixture
def tickets(db_url: str) -> Iterator[TicketStore]:
    store = TicketStore(db_url)
    yield store
    store.close()


@pytest.fixture
def engine(tickets: TicketStore) -> AlertEngine:
    return AlertEngine(site_config(), tickets)


def _all_tickets(tickets: TicketStore) -> list[Any]:
    return list(tickets.list_tickets(limit=500).items)


def test_a1_for_zero_fires_at_once_and_opens_a_p1_ticket(
    engine: AlertEngine, tickets: TicketStore
) -> None:
    out = engine.evaluate([r("el-1", "fault_code", 12, T0)], now=T0)

    assert [(t.before, t.after) for t in out] == [(AlertState.INACTIVE, AlertState.FIRING)]
    tr = out[0]
    assert tr.rule_id == "lift_fault" and tr.device == "el-1" and tr.building == "A"
    assert tr.ticket is not None
    detail = tickets.get_ticket(tr.ticket.id)
    assert detail is not None
    t = detail.ticket
    assert t.number.startswith("WO-") and t.number == f"WO-{t.id:06d}"
    assert (t.priority, t.status, t.device, t.building) == ("P1", TicketStatus.NEW, "el-1", "A")
    assert t.fault_class == "elevator_fault" and t.title == "el-1 名称: 电梯故障"
    assert t.created_at == T0 and t.due_at == T0 + timedelta(hours=4)  # T1
    assert t.created_at.tzinfo is not None and t.created_at.utcoffset() == timedelta(0)
    assert t.source_alert_id == tr.alert_id
    assert [e.kind for e in detail.events] == ["created"]
    assert "fault_code = 12" in detail.events[0].note


def test_a1_a2_pending_never_opens_a_ticket_and_a_false_evaluation_ends_it(
    engine: AlertEngine, tickets: TicketStore
) -> None:
    out = engine.evaluate([r("ts-1", "cable_temp", 85, T0)], now=T0)
    assert [(t.before, t.after) for t in out] == [(AlertState.INACTIVE, AlertState.PENDING)]
    assert out[0].ticket is None and not out[0].notify
    assert [a.state for a in tickets.unresolved_alerts()] == [AlertState.PENDING]

    t1 = T0 + timedelta(seconds=30)
    out = engine.evaluate([r("ts-1", "cable_temp", 75, t1)], now=t1)  # below trip, above clear
    assert [(t.before, t.after) for t in out] == [(AlertState.PENDING, AlertState.INACTIVE)]
    assert tickets.unresolved_alerts() == []
    assert _all_tickets(tickets) == []

    # The `for` clock restarts from the next trip, not from the first one.
    t2 = T0 + timedelta(seconds=60)
    out = engine.evaluate([r("ts-1", "cable_temp", 85, t2)], now=t2)
    assert [t.after for t in out] == [AlertState.PENDING]
    assert _all_tickets(tickets) == []


def test_a3_pending_fires_once_the_condition_held_for_the_whole_duration(
    engine: AlertEngine, tickets: TicketStore
) -> None:
    for s in (0, 10, 30, 59):
        t = T0 + timedelta(seconds=s)
        out = engine.evaluate([r("ts-1", "cable_temp", 90, t)], now=t)
        assert [x.after for x in out] == ([AlertState.PENDING] if s == 0 else [])
    assert _all_tickets(tickets) == []

    t60 = T0 + timedelta(seconds=60)
    out = engine.evaluate([r("ts-1", "cable_temp", 90, t60)], now=t60)
    assert [(t.before, t.after) for t in out] == [(AlertState.PENDING, AlertState.FIRING)]
    [ticket] = _all_tickets(tickets)
    assert ticket.priority == "P2" and ticket.due_at == t60 + timedelta(hours=24)
    [alert] = tickets.unresolved_alerts()
    assert alert.started_at == T0 and alert.fired_at == t60 and alert.ticket_id == ticket.id


def test_a4_a5_t4_hysteresis_then_resolve_notes_the_ticket_but_never_closes_it(
    engine: AlertEngine, tickets: TicketStore
) -> None:
    # A for-less copy of the cable rule keeps this test about levels only.
    cfg = site_config()
    rules = [
        rule.model_copy(update={"for_": timedelta(0)}) if rule.id == "cable_hot" else rule
        for rule in cfg.rules
    ]
    engine = AlertEngine(cfg.model_copy(update={"rules": rules}), tickets)

    steps = [
        (85, AlertState.FIRING),
        (75, None),
        (80, None),
        (70.5, None),
        (70, AlertState.RESOLVED),
    ]
    for i, (v, expect) in enumerate(steps):
        t = T0 + timedelta(minutes=i)
        out = engine.evaluate([r("ts-1", "cable_temp", v, t)], now=t)
        assert [x.after for x in out] == ([expect] if expect else []), f"value {v}"

    [ticket] = _all_tickets(tickets)
    assert ticket.status is TicketStatus.NEW  # T4: resolving never closes the ticket
    detail = tickets.get_ticket(ticket.id)
    assert detail is not None
    assert [e.kind for e in detail.events] == ["created", "condition_cleared"]
    assert detail.events[1].at == T0 + timedelta(minutes=4)
    assert "condition cleared" in detail.events[1].note
    assert detail.ticket.updated_at == T0 + timedelta(minutes=4)
    assert tickets.unresolved_alerts() == []


def test_below_rule_and_its_clear_level(engine: AlertEngine) -> None:
    seq = [(205, None), (199, AlertState.FIRING), (205, None), (210, AlertState.RESOLVED)]
    for i, (v, expect) in enumerate(seq):
        t = T0 + timedelta(minutes=i)
        out = engine.evaluate([r("pm-1", "voltage_a", v, t)], now=t)
        assert [x.after for x in out] == ([expect] if expect else [])


def test_a7_d4_a_trip_after_resolve_is_a_new_episode_and_an_occurrence_on_the_open_ticket(
    engine: AlertEngine, tickets: TicketStore
) -> None:
    a = engine.evaluate([r("el-1", "fault_code", 3, T0)], now=T0)[0]
    engine.evaluate(
        [r("el-1", "fault_code", 0, T0 + timedelta(minutes=1))], now=T0 + timedelta(minutes=1)
    )
    t2 = T0 + timedelta(minutes=5)
    b = engine.evaluate([r("el-1", "fault_code", 7, t2)], now=t2)[0]

    assert b.before is AlertState.INACTIVE and b.after is AlertState.FIRING
    assert b.fingerprint == a.fingerprint and b.alert_id != a.alert_id  # A7
    assert a.ticket is not None and b.ticket is not None and b.ticket.id == a.ticket.id  # D4
    [ticket] = _all_tickets(tickets)
    assert ticket.occurrences == 2 and ticket.created_at == T0
    assert ticket.due_at == T0 + timedelta(hours=4)  # the SLA runs from the first episode
    detail = tickets.get_ticket(ticket.id)
    assert detail is not None
    assert [e.kind for e in detail.events] == ["created", "condition_cleared", "occurrence"]
    assert [e.alert_id for e in detail.events] == [a.alert_id, a.alert_id, b.alert_id]


def test_d4_two_rules_with_one_fault_class_share_the_ticket_and_raise_its_priority(
    engine: AlertEngine, tickets: TicketStore
) -> None:
    # el-2 matches both lift_fault (critical) and east_bank_stuck (major), both elevator_fault.
    out = engine.evaluate([r("el-2", "service_mode", 7, T0)], now=T0)
    assert [x.rule_id for x in out] == ["east_bank_stuck"]
    [ticket] = _all_tickets(tickets)
    assert ticket.priority == "P2" and ticket.due_at == T0 + timedelta(hours=24)

    t1 = T0 + timedelta(minutes=10)
    out = engine.evaluate([r("el-2", "fault_code", 42, t1)], now=t1)
    assert [x.rule_id for x in out] == ["lift_fault"]
    [ticket] = _all_tickets(tickets)
    assert ticket.occurrences == 2
    assert ticket.priority == "P1" and ticket.due_at == T0 + timedelta(hours=4)
    assert len(tickets.unresolved_alerts()) == 2


def test_selectors_pick_devices_by_kind_building_device_and_tag(engine: AlertEngine) -> None:
    batch = [
        r("pm-1", "voltage_a", 150, T0),  # power meter in A: low_voltage applies
        r("pm-2", "voltage_a", 150, T0),  # building B: excluded
        r("el-1", "service_mode", 7, T0),  # no east tag
        r("el-2", "service_mode", 7, T0),  # tagged bank=east
        r("ts-1", "fault_code", 9, T0),  # lift_fault is for elevators only
        r("unknown-dev", "fault_code", 9, T0),  # not in the config
    ]
    out = engine.evaluate(batch, now=T0)
    assert sorted((x.rule_id, x.device) for x in out) == [
        ("east_bank_stuck", "el-2"),
        ("low_voltage", "pm-1"),
    ]


def test_bad_quality_and_nan_are_ignored_missing_data_never_resolves(
    engine: AlertEngine, tickets: TicketStore
) -> None:
    assert engine.evaluate([r("el-1", "fault_code", 5, T0, Quality.BAD)], now=T0) == []
    assert tickets.unresolved_alerts() == []

    engine.evaluate([r("el-1", "fault_code", 5, T0)], now=T0)
    t1 = T0 + timedelta(seconds=10)
    assert engine.evaluate([r("el-1", "fault_code", 0, t1, Quality.BAD)], now=t1) == []
    assert engine.evaluate([r("el-1", "fault_code", float("nan"), t1)], now=t1) == []
    assert [a.state for a in tickets.unresolved_alerts()] == [AlertState.FIRING]

    # UNCERTAIN samples are still evaluated.
    t2 = T0 + timedelta(seconds=20)
    out = engine.evaluate([r("el-1", "fault_code", 0, t2, Quality.UNCERTAIN)], now=t2)
    assert [x.after for x in out] == [AlertState.RESOLVED]


def test_a_batch_is_evaluated_in_sample_order_and_late_samples_are_ignored(
    engine: AlertEngine,
) -> None:
    # One batch carrying four polls of the pending rule: 0s, 30s, 60s and a late 45s replay.
    batch = [
        r("ts-1", "cable_temp", 90, T0 + timedelta(seconds=60)),
        r("ts-1", "cable_temp", 90, T0),
        r("ts-1", "cable_temp", 90, T0 + timedelta(seconds=30)),
    ]
    out = engine.evaluate(batch, now=T0 + timedelta(seconds=61))
    assert [(x.after, x.at) for x in out] == [
        (AlertState.PENDING, T0),
        (AlertState.FIRING, T0 + timedelta(seconds=60)),
    ]
    late = [r("ts-1", "cable_temp", 20, T0 + timedelta(seconds=45))]
    assert engine.evaluate(late, now=T0 + timedelta(seconds=62)) == []


def test_restart_keeps_a_firing_alert_firing_without_a_second_ticket(db_url: str) -> None:
    first = TicketStore(db_url)
    e1 = AlertEngine(site_config(), first)
    e1.evaluate([r("el-1", "fault_code", 5, T0)], now=T0)
    e1.evaluate([r("ts-1", "cable_temp", 90, T0)], now=T0)  # PENDING
    first.close()

    second = TicketStore(db_url)
    try:
        e2 = AlertEngine(site_config(), second)
        assert sorted(a.state for a in e2.unresolved()) == [AlertState.FIRING, AlertState.PENDING]
        t1 = T0 + timedelta(seconds=60)
        out = e2.evaluate([r("el-1", "fault_code", 5, t1), r("ts-1", "cable_temp", 90, t1)], now=t1)
        # The firing alert stays firing silently; the pending timer resumed from T0 (A13).
        assert [(x.rule_id, x.before, x.after) for x in out] == [
            ("cable_hot", AlertState.PENDING, AlertState.FIRING)
        ]
        assert sorted(t.fault_class for t in _all_tickets(second)) == ["elevator_fault", "overtemp"]
        t2 = T0 + timedelta(seconds=70)
        out = e2.evaluate([r("el-1", "fault_code", 0, t2)], now=t2)
        assert [(x.rule_id, x.after) for x in out] == [("lift_fault", AlertState.RESOLVED)]
    finally:
        second.close()


def test_d2_two_engines_on_one_database_open_one_alert_and_one_ticket(db_url: str) -> None:
    s1, s2 = TicketStore(db_url), TicketStore(db_url)
    try:
        # Both start before anything fired, so the second one's memory says INACTIVE and it
        # tries to insert too: the unique index is what stops it.
        e1, e2 = AlertEngine(site_config(), s1), AlertEngine(site_config(), s2)
        breach = [r("el-1", "fault_code", 5, T0)]
        assert [x.after for x in e1.evaluate(breach, now=T0)] == [AlertState.FIRING]
        assert e2.evaluate(breach, now=T0) == []
        assert len(s1.unresolved_alerts()) == 1 and len(_all_tickets(s1)) == 1
        assert [a.state for a in e2.unresolved()] == [AlertState.FIRING]  # adopted

        # The second engine resolves it; the first one learns that when its write misses.
        t1 = T0 + timedelta(seconds=10)
        clear = [r("el-1", "fault_code", 0, t1)]
        assert [x.after for x in e2.evaluate(clear, now=t1)] == [AlertState.RESOLVED]
        assert e1.evaluate(clear, now=t1) == []
        assert e1.unresolved() == [] and s1.unresolved_alerts() == []
        detail = s1.get_ticket(_all_tickets(s1)[0].id)
        assert detail is not None
        assert [e.kind for e in detail.events] == ["created", "condition_cleared"]
    finally:
        s1.close()
        s2.close()


def test_d2_two_engines_racing_in_threads(db_url: str) -> None:
    stores = [TicketStore(db_url) for _ in range(4)]
    engines = [AlertEngine(site_config(), s) for s in stores]
    barrier = threading.Barrier(len(engines))
    results: list[Any] = []

    def run(e: AlertEngine) -> None:
        barrier.wait()
        results.append(e.evaluate([r("el-1", "fault_code", 5, T0)], now=T0))

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
        assert sum(len(x) for x in results) == 1
        assert len(stores[0].unresolved_alerts()) == 1
        [ticket] = _all_tickets(stores[0])
        assert ticket.occurrences == 1
    finally:
        for s in stores:
            s.close()


def test_d1_fingerprint_is_the_labels_not_the_values(engine: AlertEngine) -> None:
    a = engine.evaluate([r("el-1", "fault_code", 5, T0)], now=T0)[0]
    b = engine.evaluate([r("el-2", "fault_code", 9, T0)], now=T0)[0]
    assert a.fingerprint == fingerprint("lift_fault", "riverside", "A", "el-1", "fault_code")
    assert b.fingerprint == fingerprint("lift_fault", "riverside", "B", "el-2", "fault_code")
    assert a.fingerprint != b.fingerprint and len(a.fingerprint) == 64
    assert fingerprint("a", "bc", "x", "y", "z") != fingerprint("ab", "c", "x", "y", "z")


def test_one_info_line_per_transition(
    engine: AlertEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine.evaluate([r("el-1", "fault_code", 5, T0)], now=T0)
    engine.evaluate(
        [r("el-1", "fault_code", 5, T0 + timedelta(seconds=1))], now=T0 + timedelta(seconds=1)
    )
    engine.evaluate(
        [r("el-1", "fault_code", 0, T0 + timedelta(seconds=2))], now=T0 + timedelta(seconds=2)
    )
    info = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.INFO]
    assert len(info) == 2
    assert "INACTIVE -> FIRING" in info[0] and "el-1" in info[0] and "WO-" in info[0]
    assert "FIRING -> RESOLVED" in info[1]


def test_a_broken_database_is_logged_once_and_the_transition_happens_after_recovery(
    db_url: str, tickets: TicketStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine = AlertEngine(site_config(), tickets)
    raw = sa.create_engine(db_url)
    try:
        with raw.begin() as c:
            c.execute(sa.text("ALTER TABLE alerts RENAME TO alerts_away"))
        for s in range(3):
            t = T0 + timedelta(seconds=s)
            assert engine.evaluate([r("el-1", "fault_code", 5, t)], now=t) == []
        errors = [x for x in caplog.records if x.levelno == logging.ERROR]
        assert len(errors) == 1 and "unavailable" in errors[0].getMessage()

        with raw.begin() as c:
            c.execute(sa.text("ALTER TABLE alerts_away RENAME TO alerts"))
        t = T0 + timedelta(seconds=3)
        out = engine.evaluate([r("el-1", "fault_code", 5, t)], now=t)
        assert [(x.after, x.at) for x in out] == [(AlertState.FIRING, t)]
        assert any("available again" in x.getMessage() for x in caplog.records)
    finally:
        raw.dispose()


def test_a_clear_level_on_the_wrong_side_is_refused() -> None:
    # A clear level on the tripped side would resolve an alert while its condition holds.
    rule = site_config().rules[1].model_dump(by_alias=True)
    with pytest.raises(ValueError, match=r"clear \(90.0\) must not be above 'above'"):
        ThresholdRule.model_validate({**rule, "clear": 90.0})


def test_naive_now_is_refused(engine: AlertEngine) -> None:
    with pytest.raises(ValueError, match="aware"):
        engine.evaluate([], now=datetime(2024, 1, 1))
