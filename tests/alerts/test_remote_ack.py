"""A10 across processes: a latched alert acknowledged by another writer of the ticket
database (an API-only facmon, a direct write) resolves in the engine that evaluates the stream,
at its next tick, without a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts import AlertEngine, AlertState, TicketStore
from tests.alerts.test_engine import r, site_config

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
RULE = {
    "id": "trapped",
    "name": "困人",
    "metric": "entrapment",
    "select": {"kinds": ["elevator"]},
    "above": 0,
    "severity": "critical",
    "fault_class": "entrapment",
    "latched": True,
}


def test_acknowledged_elsewhere_resolves_at_the_next_tick(db_url: str) -> None:
    cfg = site_config(rules=[RULE])
    live, other = TicketStore(db_url), TicketStore(db_url)
    try:
        engine = AlertEngine(cfg, live)
        engine.evaluate([r("el-1", "entrapment", 1, T0)], T0)
        t1 = T0 + timedelta(minutes=5)
        engine.evaluate([r("el-1", "entrapment", 0, t1)], t1)
        [alert] = engine.unresolved()
        assert alert.state is AlertState.RECOVERING  # latched: waits for a person
        ticked = engine.tick(t1 + timedelta(seconds=1))
        assert [x for x in ticked if x.rule_id == "trapped"] == []

        # Another process acknowledges the return to normal.
        current = other.unresolved_alert(alert.fingerprint)
        assert current is not None
        other.acknowledge_alert(current, "li-na", t1 + timedelta(minutes=1))

        t2 = t1 + timedelta(minutes=1, seconds=1)
        engine.evaluate([r("el-1", "entrapment", 0, t2)], t2)
        [tr] = [x for x in engine.tick(t2) if x.rule_id == "trapped"]
        assert tr.after is AlertState.RESOLVED
        assert all(a.rule_id != "trapped" for a in engine.unresolved())
    finally:
        live.close()
        other.close()
