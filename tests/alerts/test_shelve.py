"""Shelving alerts (A11 of ../shared/alerting-semantics.md) on a SQLite file and on PostgreSQL:
it needs a user, a reason and a bounded expiry, and a shelved alert is still evaluated and
recorded by a real AlertEngine."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from alerts import AlertEngine, AlertState, TicketStore
from alerts.tickets import AlertActionError, is_shelved
from config.models import Tickets
from tests.alerts.test_engine import T0, r, site_config

MAX = timedelta(hours=24)


def _fire(engine: AlertEngine) -> int:
    out = engine.evaluate([r("el-1", "fault_code", 5, T0)], now=T0)
    assert out[0].after is AlertState.FIRING
    return out[0].alert_id


def test_a11_shelving_needs_a_user_a_reason_and_a_bounded_expiry(tickets: TicketStore) -> None:
    alert_id = _fire(AlertEngine(site_config(), tickets))
    now = T0 + timedelta(minutes=5)
    cases = [
        (("", "door sensor flapping", now + timedelta(hours=1)), "who"),
        (("wang", "  ", now + timedelta(hours=1)), "reason"),
        (("wang", "flapping", now), "until"),  # no expiry in the future
        (("wang", "flapping", now - timedelta(minutes=1)), "until"),
        (("wang", "flapping", now + MAX + timedelta(seconds=1)), "until"),  # over the bound
    ]
    for (who, reason, until), parameter in cases:
        with pytest.raises(AlertActionError) as e:
            tickets.shelve_alert(alert_id, who, reason, until, now, max_shelve=MAX)
        assert e.value.parameter == parameter and not e.value.missing
    with pytest.raises(AlertActionError) as e:
        tickets.shelve_alert(alert_id + 99, "wang", "x", now + MAX, now, max_shelve=MAX)
    assert e.value.missing
    a = tickets.get_alert(alert_id)
    assert a is not None and a.shelved_at is None and not is_shelved(a, now)

    # Exactly the maximum is allowed.
    a = tickets.shelve_alert(alert_id, " wang ", " 门锁传感器误报 ", now + MAX, now, max_shelve=MAX)
    assert (a.shelved_by, a.shelved_reason) == ("wang", "门锁传感器误报")
    assert (a.shelved_at, a.shelved_until) == (now, now + MAX)
    assert is_shelved(a, now) and is_shelved(a, now + MAX - timedelta(seconds=1))
    assert not is_shelved(a, now + MAX)  # the expiry ends it by itself
    assert not is_shelved(a, now - timedelta(seconds=1))


def test_a11_a_shelved_alert_is_still_evaluated_and_recorded(tickets: TicketStore) -> None:
    engine = AlertEngine(site_config(), tickets)
    # cable_hot: above 80 for 60 s, clear at 70.
    out = engine.evaluate([r("ts-1", "cable_temp", 85, T0)], now=T0)
    assert [tr.after for tr in out] == [AlertState.PENDING]
    alert_id = out[0].alert_id
    shelved_until = T0 + timedelta(hours=8)
    tickets.shelve_alert(alert_id, "li", "sensor being replaced", shelved_until, T0, max_shelve=MAX)

    t1 = T0 + timedelta(seconds=61)
    out = engine.evaluate([r("ts-1", "cable_temp", 90, t1)], now=t1)
    assert [(tr.before, tr.after) for tr in out] == [(AlertState.PENDING, AlertState.FIRING)]
    assert out[0].alert_id == alert_id and out[0].ticket is not None  # the ticket is recorded
    a = tickets.get_alert(alert_id)
    assert a is not None and a.state is AlertState.FIRING and a.last_value == 90
    assert is_shelved(a, t1) and a.shelved_by == "li"  # the engine's writes keep the shelve

    t2 = t1 + timedelta(minutes=1)
    out = engine.evaluate([r("ts-1", "cable_temp", 60, t2)], now=t2)
    assert [tr.after for tr in out] == [AlertState.RESOLVED]
    a = tickets.get_alert(alert_id)
    assert a is not None and a.state is AlertState.RESOLVED and a.resolved_at == t2
    assert a.shelved_until == shelved_until
    # A resolved alert cannot be shelved (a new episode is a new alert).
    with pytest.raises(AlertActionError, match="resolved") as e:
        tickets.shelve_alert(alert_id, "li", "again", t2 + timedelta(hours=1), t2, max_shelve=MAX)
    assert e.value.parameter is None and not e.value.missing


def test_a11_shelve_and_unshelve_are_audited_on_the_ticket(tickets: TicketStore) -> None:
    engine = AlertEngine(site_config(), tickets)
    alert_id = _fire(engine)
    now = T0 + timedelta(minutes=2)
    a = tickets.shelve_alert(
        alert_id, "wang", "误报，等厂家", now + timedelta(hours=2), now, max_shelve=MAX
    )
    ticket_id = a.ticket_id
    assert ticket_id is not None
    with pytest.raises(AlertActionError, match="who"):
        tickets.unshelve_alert(alert_id, " ", now)
    later = now + timedelta(minutes=30)
    # Shelving again replaces the first shelve.
    a = tickets.shelve_alert(
        alert_id, "li", "longer", later + timedelta(hours=4), later, max_shelve=MAX
    )
    assert (a.shelved_by, a.shelved_at, a.shelved_until) == (
        "li",
        later,
        later + timedelta(hours=4),
    )
    end = later + timedelta(hours=1)
    a = tickets.unshelve_alert(alert_id, "zhao", end, note="厂家已到")
    assert not is_shelved(a, end) and a.shelved_until == end and a.shelved_by == "li"
    with pytest.raises(AlertActionError, match="not shelved"):
        tickets.unshelve_alert(alert_id, "zhao", end)
    with pytest.raises(AlertActionError) as e:
        tickets.unshelve_alert(alert_id + 99, "zhao", end)
    assert e.value.missing

    detail = tickets.get_ticket(ticket_id)
    assert detail is not None
    shelving = [(e.kind, e.who, e.at, e.note, e.alert_id) for e in detail.events[1:]]
    assert shelving == [
        (
            "alert_shelved",
            "wang",
            now,
            f"alert lift_fault shelved until {(now + 2 * timedelta(hours=1)).isoformat()}: "
            "误报，等厂家",
            alert_id,
        ),
        (
            "alert_shelved",
            "li",
            later,
            f"alert lift_fault shelved until {(later + timedelta(hours=4)).isoformat()}: longer",
            alert_id,
        ),
        ("alert_unshelved", "zhao", end, "alert lift_fault unshelved: 厂家已到", alert_id),
    ]


def test_list_alerts_filters_by_shelved_acknowledged_state_and_time(tickets: TicketStore) -> None:
    engine = AlertEngine(site_config(), tickets)
    el1 = _fire(engine)
    t1 = T0 + timedelta(minutes=10)
    el2 = engine.evaluate([r("el-2", "fault_code", 3, t1)], now=t1)[0].alert_id
    t2 = T0 + timedelta(minutes=20)
    pm1 = engine.evaluate([r("pm-1", "voltage_a", 190, t2)], now=t2)[0].alert_id
    t3 = T0 + timedelta(minutes=30)
    engine.evaluate([r("pm-1", "voltage_a", 220, t3)], now=t3)  # pm-1 resolves
    now = T0 + timedelta(hours=1)
    tickets.shelve_alert(el2, "wang", "test run", now + timedelta(hours=1), now, max_shelve=MAX)
    el1_rec = tickets.get_alert(el1)
    assert el1_rec is not None
    tickets.acknowledge_alert(el1_rec, "li", now)

    def ids(**kw: Any) -> list[int]:
        return [a.id for a in tickets.list_alerts(now=now, **kw).items]

    assert ids() == [pm1, el2, el1]  # newest episode first
    assert ids(shelved=True) == [el2]
    assert ids(shelved=False) == [pm1, el1]
    assert ids(acknowledged=True) == [el1] and ids(acknowledged=False) == [pm1, el2]
    assert ids(states={AlertState.RESOLVED}) == [pm1]
    assert ids(severities={"critical"}) == [el2, el1]
    assert ids(building="B") == [el2] and ids(device="pm-1") == [pm1]
    assert ids(rule_id="low_voltage") == [pm1]
    # Overlap with [since, until): pm-1's episode ended at t3.
    assert ids(since=t3 + timedelta(seconds=1)) == [el2, el1]
    assert ids(since=t3) == [pm1, el2, el1]
    assert ids(until=t1) == [el1] and ids(until=t1 + timedelta(seconds=1)) == [el2, el1]
    page = tickets.list_alerts(limit=2, offset=1)
    assert page.total == 3 and [a.id for a in page.items] == [el2, el1]
    # Later, the shelve has expired by itself.
    later = now + timedelta(hours=2)
    assert [a.id for a in tickets.list_alerts(shelved=True, now=later).items] == []
    with pytest.raises(ValueError, match="needs now"):
        tickets.list_alerts(shelved=True)


def test_max_shelve_is_configurable_and_bounded() -> None:
    assert Tickets().max_shelve == timedelta(hours=24)
    assert Tickets.model_validate({"max_shelve": "4h"}).max_shelve == timedelta(hours=4)
    for bad in ("0s", "31d"):
        with pytest.raises(ValidationError, match="between 1m and 30d"):
            Tickets.model_validate({"max_shelve": bad})
    assert Tickets().max_silence == timedelta(days=30)
    assert "A11" in (Tickets.model_fields["max_shelve"].description or "")
