"""Silences and maintenance windows: matching (pure), expiry and cancellation in the ticket
database (a SQLite file and PostgreSQL), the escalation hook, and the 0001 -> 0002 upgrade of
an existing database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from alerts import AlertEngine, AlertState, Matchers, Silence, SilenceStore, TicketStore, silenced
from alerts.silences import SilenceError, SilenceState, silence_for_ticket
from alerts.tickets import _MIGRATIONS, _TicketRow, is_shelved
from tests.alerts.test_engine import T0, r, site_config

H = timedelta(hours=1)


def _silence(id_: int, m: Matchers, start: int = 0, end: int = 2, **kw: Any) -> Silence:
    return Silence(
        id=id_,
        purpose="silence",
        matchers=m,
        starts_at=T0 + start * H,
        ends_at=T0 + end * H,
        created_by="li",
        comment="test",
        created_at=T0,
        **kw,
    )


def _lift(silences: list[Silence], now: datetime) -> Silence | None:
    """What silences a lift_fault on el-2 (building B, tag bank=east) at ``now``."""
    return silenced(
        silences,
        device="el-2",
        building="B",
        kind="elevator",
        tags={"bank": "east"},
        rule_id="lift_fault",
        fault_class="elevator_fault",
        now=now,
    )


@pytest.mark.parametrize(
    ("matchers", "hit"),
    [
        (Matchers(devices=("el-2",)), True),
        (Matchers(devices=("el-1", "pm-1")), False),
        (Matchers(kinds=("elevator",)), True),
        (Matchers(kinds=("power_meter",)), False),
        (Matchers(buildings=("B",)), True),
        (Matchers(buildings=("A",)), False),
        (Matchers(tags={"bank": "east"}), True),
        (Matchers(tags={"bank": "west"}), False),
        (Matchers(tags={"bank": "east", "zone": "1"}), False),  # every pair must match
        (Matchers(rule_ids=("lift_fault",)), True),
        (Matchers(rule_ids=("communication_loss",)), False),
        (Matchers(fault_classes=("elevator_fault",)), True),
        (Matchers(fault_classes=("power_quality",)), False),
        # Several matchers: all of them must match.
        (Matchers(buildings=("B",), fault_classes=("elevator_fault",)), True),
        (Matchers(buildings=("B",), fault_classes=("overtemp",)), False),
    ],
)
def test_matching_by_each_matcher(matchers: Matchers, hit: bool) -> None:
    s = _silence(1, matchers)
    assert (_lift([s], T0 + H) is s) is hit


def test_only_active_silences_count_and_the_longest_wins() -> None:
    m = Matchers(buildings=("B",))
    early = _silence(1, m, start=0, end=1)
    late = _silence(2, m, start=2, end=5)
    cancelled = _silence(3, m, start=0, end=9, cancelled_at=T0 + 90 * timedelta(minutes=1))

    def found(t: datetime) -> Silence | None:
        return _lift([early, late, cancelled], t)

    assert found(T0 - timedelta(seconds=1)) is None  # not started yet
    assert found(T0) is cancelled  # until it was cancelled it lasted longest
    assert found(T0 + 89 * timedelta(minutes=1)) is cancelled
    assert found(T0 + 90 * timedelta(minutes=1)) is None  # cancelled at 01:30
    assert found(T0 + 2 * H) is late
    assert found(T0 + 5 * H - timedelta(seconds=1)) is late
    assert found(T0 + 5 * H) is None  # the end is exclusive
    assert cancelled.state(T0) is SilenceState.ACTIVE
    assert cancelled.state(T0 + 2 * H) is SilenceState.CANCELLED
    assert late.state(T0) is SilenceState.PENDING and early.state(T0 + H).value == "EXPIRED"


def test_store_create_expire_cancel_and_list(tickets: TicketStore) -> None:
    store = SilenceStore(tickets)
    m = Matchers(devices=("el-1",), tags={"楼层": "地下一层"})
    a = store.create(
        m, starts_at=T0, ends_at=T0 + 2 * H, created_by=" li ", comment=" 年检 ", now=T0
    )
    b = store.create(
        Matchers(buildings=("A",)),
        starts_at=T0 + 3 * H,
        ends_at=T0 + 6 * H,
        created_by="li",
        comment="配电房检修",
        now=T0,
        purpose="maintenance",
    )
    assert (a.created_by, a.comment, a.purpose, a.matchers) == ("li", "年检", "silence", m)
    got = store.get(a.id)
    assert got == a and got.starts_at.tzinfo is not None  # JSON and times round-trip
    assert store.get(a.id + b.id + 99) is None

    assert [x.id for x in store.active(T0 + H)] == [a.id]
    assert store.active(T0 + 2 * H) == ()  # expired
    assert [x.id for x in store.active(T0 + 4 * H)] == [b.id]

    def ids(now_h: float, **kw: Any) -> list[int]:
        return [x.id for x in store.list(now=T0 + now_h * H, **kw).items]

    assert ids(1) == [b.id, a.id]  # newest first
    assert ids(1, states={SilenceState.PENDING}) == [b.id]
    assert ids(1, states={SilenceState.ACTIVE}) == [a.id]
    assert ids(2.5, states={SilenceState.EXPIRED}) == [a.id]
    assert ids(2.5, states={SilenceState.EXPIRED, SilenceState.PENDING}) == [b.id, a.id]
    assert ids(1, purpose="maintenance") == [b.id]
    assert ids(1, states=set()) == []
    page = store.list(now=T0, limit=1, offset=1)
    assert page.total == 2 and [x.id for x in page.items] == [a.id]

    # Cancelling a pending window ends it before it starts; the record stays.
    c = store.cancel(b.id, "zhao", T0 + H)
    assert (c.cancelled_at, c.cancelled_by) == (T0 + H, "zhao")
    assert c.state(T0 + 4 * H) is SilenceState.CANCELLED
    assert store.active(T0 + 4 * H) == ()
    assert ids(4, states={SilenceState.CANCELLED}) == [b.id]
    assert ids(4, states={SilenceState.PENDING, SilenceState.ACTIVE}) == []
    with pytest.raises(SilenceError, match="already cancelled"):
        store.cancel(b.id, "zhao", T0 + 2 * H)
    with pytest.raises(SilenceError, match="already expired"):
        store.cancel(a.id, "zhao", T0 + 2 * H)
    with pytest.raises(SilenceError) as e:
        store.cancel(999, "zhao", T0)
    assert e.value.missing


def test_store_refuses_silences_without_matcher_reason_or_a_sane_end(
    tickets: TicketStore,
) -> None:
    store = SilenceStore(tickets)
    ok: dict[str, Any] = {
        "starts_at": T0,
        "ends_at": T0 + H,
        "created_by": "li",
        "comment": "why",
        "now": T0,
        "max_duration": timedelta(days=1),
    }
    cases: list[tuple[Matchers, dict[str, Any], str]] = [
        (Matchers(), {}, "matchers"),  # a silence of everything
        (Matchers(kinds=("elevator",)), {"comment": " "}, "comment"),
        (Matchers(kinds=("elevator",)), {"created_by": ""}, "created_by"),
        (Matchers(kinds=("elevator",)), {"ends_at": T0}, "ends_at"),
        (Matchers(kinds=("elevator",)), {"now": T0 + H}, "ends_at"),  # already over
        (Matchers(kinds=("elevator",)), {"ends_at": T0 + timedelta(days=2)}, "ends_at"),
        (Matchers(kinds=("elevator",)), {"purpose": "holiday"}, "purpose"),
    ]
    for m, change, parameter in cases:
        with pytest.raises(SilenceError) as e:
            store.create(m, **{**ok, **change})
        assert e.value.parameter == parameter
    assert store.list(now=T0).total == 0


def test_silence_for_ticket_tells_escalation_why_a_chain_must_not_start(
    tickets: TicketStore,
) -> None:
    engine = AlertEngine(site_config(), tickets)
    out = engine.evaluate([r("el-2", "fault_code", 4, T0)], now=T0)
    ticket = out[0].ticket
    assert ticket is not None
    store = SilenceStore(tickets)
    cfg = site_config()

    def why(at_h: float) -> str | None:
        with tickets.sessions() as s:
            row = s.get(_TicketRow, ticket.id)
            assert row is not None
            return silence_for_ticket(s, cfg, row, T0 + at_h * H)

    assert why(0) is None
    # Other equipment, another rule: not covered.
    store.create(Matchers(devices=("el-1",)), starts_at=T0, ends_at=T0 + 9 * H,
                 created_by="li", comment="x", now=T0)  # fmt: skip
    store.create(Matchers(rule_ids=("east_bank_stuck",)), starts_at=T0, ends_at=T0 + 9 * H,
                 created_by="li", comment="x", now=T0)  # fmt: skip
    assert why(1) is None
    w = store.create(
        Matchers(tags={"bank": "east"}, fault_classes=("elevator_fault",)),
        starts_at=T0 + H,
        ends_at=T0 + 3 * H,
        created_by="李主管",
        comment="东区电梯年检",
        now=T0,
        purpose="maintenance",
    )
    assert why(0.5) is None  # not started yet
    # Site time (Asia/Shanghai) in the message: 13:00 is 05:00 UTC.
    assert why(1) == f"maintenance window {w.id} by 李主管 until 2024-03-01 13:00: 东区电梯年检"
    assert why(3) is None


def _alembic(conn: sa.Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def test_migration_0002_upgrades_an_existing_0001_database(db_url: str) -> None:
    raw = sa.create_engine(db_url)
    try:
        with raw.begin() as conn:
            command.upgrade(_alembic(conn), "0001")
            conn.execute(
                sa.text(
                    "INSERT INTO alerts (id, fingerprint, rule_id, site, building, device, "
                    "metric, state, severity, started_at, fired_at, cycles, chattering) VALUES "
                    "(1, 'fp1', 'lift_fault', 'riverside', 'A', 'el-1', 'fault_code', "
                    "'FIRING', 'critical', :t, :t, 0, false)"
                ),
                {"t": T0.replace(tzinfo=None) if raw.dialect.name == "sqlite" else T0},
            )
        with raw.begin() as conn:
            command.upgrade(_alembic(conn), "0002")
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0002"
            cols = {c["name"] for c in sa.inspect(conn).get_columns("alerts")}
            assert {"shelved_by", "shelved_reason", "shelved_at", "shelved_until"} <= cols
            assert "silences" in sa.inspect(conn).get_table_names()
    finally:
        raw.dispose()

    # Opening the store takes it the rest of the way; the old alert is kept and can be shelved.
    store = TicketStore(db_url)
    try:
        old = store.get_alert(1)
        assert old is not None and old.state is AlertState.FIRING and old.shelved_at is None
        a = store.shelve_alert(1, "li", "old alert", T0 + H, T0, max_shelve=timedelta(days=1))
        assert is_shelved(a, T0)
        s = SilenceStore(store).create(
            Matchers(devices=("el-1",)), starts_at=T0, ends_at=T0 + H, created_by="li",
            comment="x", now=T0,
        )  # fmt: skip
        assert SilenceStore(store).get(s.id) == s
    finally:
        store.close()
