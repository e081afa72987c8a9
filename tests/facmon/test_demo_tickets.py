"""The demo's back-filled history goes through the real alert engine, and a simulated
maintenance team works the tickets it opens: the maintenance report of a back-filled month has
tickets, on-time and response figures, and the uptime report finds the technicians' arrivals at
entrapments. Lifts only and 40 days of history, so a back-fill takes seconds."""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.engine import AlertEngine
from alerts.tickets import SYSTEM_ACTOR, TicketDetail, TicketStatus, TicketStore
from config import SiteConfig
from config.models import ThresholdRule
from facmon.demo import (
    OPEN_DAYS,
    POLLED_METRICS,
    AlertReplay,
    _catch_up,
    _first_start,
    demo_config,
    demo_params,
    measure_day,
)
from reports.context import ReportContext
from reports.maintenance import maintenance_report
from reports.period import Period
from reports.uptime import uptime_report
from simulator import ElevatorParams, SimulatedBuilding, default_params
from simulator.technicians import ENGINEERS, LIFT_TECHNICIANS
from store.columnar import ReadingBatch
from store.embedded import EmbeddedStore

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)  # Monday 3 March, 14:00 in Shanghai
HISTORY = timedelta(days=40)  # from 22 January: February is a whole back-filled month
FEBRUARY = Period.month(2025, 2, SH)
RULE_METRIC = {"elevator_fault": "fault_code", "entrapment": "entrapment"}


def _lifts(data_dir: Path) -> SiteConfig:
    cfg = demo_config(data_dir, measure_day(NOW, SH))
    return cfg.model_copy(update={"devices": [d for d in cfg.devices if d.kind == "elevator"]})


def _sim(cfg: SiteConfig) -> SimulatedBuilding:
    ids = {d.id for d in cfg.devices}
    params = {k: v for k, v in demo_params(cfg, measure_day(NOW, SH)).items() if k in ids}
    return SimulatedBuilding(cfg, params=params, seed=1)


def _state(history: timedelta) -> dict[str, object]:
    return {
        "history_start": (NOW - history).isoformat(),
        "recent_start": (NOW - min(history, timedelta(days=5))).isoformat(),
        "seed": 1,
    }


@dataclass
class Backfilled:
    cfg: SiteConfig
    store: EmbeddedStore
    tickets: TicketStore
    rc: ReportContext
    details: list[TicketDetail]


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    tmp = tmp_path_factory.mktemp("demo-tickets")
    cfg = _lifts(tmp)
    store = EmbeddedStore(tmp / "readings.duckdb")
    tickets = TicketStore(f"sqlite:///{tmp / 'tickets.db'}")
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert _first_start(_sim(cfg), store, _state(HISTORY), NOW, tickets) == NOW
        summary = next(line for line in out.getvalue().splitlines() if "Alert history" in line)
        assert "steps by the maintenance team" in summary and "refused" not in summary
        page = tickets.list_tickets(limit=500)
        details = [d for t in page.items if (d := tickets.get_ticket(t.id)) is not None]
        yield Backfilled(
            cfg, store, tickets, ReportContext(cfg, store, tickets, lambda: NOW), details
        )
    finally:
        tickets.close()
        store.close()


def test_tickets_open_at_the_times_the_faults_happened(backfilled: Backfilled) -> None:
    details = backfilled.details
    classes = {d.ticket.fault_class for d in details}
    assert {"elevator_fault", "entrapment"} <= classes
    assert len(details) >= 10
    start = NOW - HISTORY
    samples = {
        m: backfilled.store.series_arrays(m, start, NOW) for m in ("fault_code", "entrapment")
    }
    from_alerts = [d for d in details if d.ticket.source_alert_id is not None]
    assert from_alerts
    for d in from_alerts:
        t = d.ticket
        assert start <= t.created_at <= NOW
        created = [e for e in d.events if e.kind == "created"]
        assert [e.at for e in created] == [t.created_at] and created[0].who == SYSTEM_ACTOR
        # Opened by the stored sample that tripped the rule, at that sample's time.
        times, values = samples[RULE_METRIC[t.fault_class]][t.device]
        at = int(t.created_at.timestamp() * 1_000_000)
        hit = times == at
        assert hit.any(), t
        assert values[hit][0] > 0, t

    people = {*LIFT_TECHNICIANS, *ENGINEERS, backfilled.cfg.oncall.people[0].name}
    for d in details:
        ats = [e.at for e in d.events]
        assert ats == sorted(ats)
        assert d.ticket.created_at <= ats[0] and ats[-1] <= NOW
        assert {e.who for e in d.events} - {SYSTEM_ACTOR} <= people
        kinds = [e.kind for e in d.events]
        if d.ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            assert "accepted" in kinds and "arrived" in kinds and "resolved" in kinds
        if d.ticket.status is TicketStatus.CLOSED:
            closed = next(e for e in d.events if e.kind == "closed")
            assert closed.note.strip()  # T5: the verification note


def test_maintenance_report_of_a_backfilled_month(backfilled: Backfilled) -> None:
    rep = maintenance_report(backfilled.rc, FEBRUARY)
    assert rep.complete
    assert rep.opened.total >= 5
    assert rep.opened.by_priority["P1"] >= 1  # entrapments
    assert rep.timeliness.resolved >= 5
    assert rep.timeliness.on_time_rate is not None and 0 < rep.timeliness.on_time_rate <= 1
    assert rep.response.mtta_h is not None and rep.response.mtta_h < 1  # within minutes
    assert rep.response.unacknowledged == 0
    assert rep.repair_time.mttr_gross_h is not None and rep.repair_time.mttr_net_h is not None
    assert rep.repair_time.mttr_net_h <= rep.repair_time.mttr_gross_h
    assert {"elevator_fault", "entrapment"} <= {c.fault_class for c in rep.categories}

    # Over the whole history a few repairs come in late (parts on order, visits put off).
    whole = maintenance_report(
        backfilled.rc, Period.days_between(date(2025, 1, 22), date(2025, 3, 3), SH)
    )
    rate = whole.timeliness.on_time_rate
    assert rate is not None and 0 < rate < 1, whole.timeliness
    assert whole.repair_time.on_hold_h > 0


def test_uptime_rescue_times_come_from_the_technicians_arrival(backfilled: Backfilled) -> None:
    rep = uptime_report(backfilled.rc, FEBRUARY)
    trapped = [e for a in rep.assets for e in a.entrapments]
    assert trapped
    for e in trapped:
        assert e.response_from == "ticket" and e.ticket is not None, e
        assert 0 < e.response_min <= e.duration_min, e
    assert rep.site.entrapments == len(trapped)


def test_the_last_day_is_still_being_worked_on(backfilled: Backfilled) -> None:
    open_ = [d.ticket for d in backfilled.details if d.ticket.is_open]
    recent = NOW - timedelta(days=OPEN_DAYS)
    assert any(t.created_at >= recent for t in open_)
    week_ago = NOW - timedelta(days=7)
    assert all(t.created_at >= week_ago for t in open_), open_
    backlog = maintenance_report(backfilled.rc, Period.month(2025, 3, SH)).backlog
    assert backlog.open == len(open_)


def test_a_restart_opens_no_ticket_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _lifts(tmp_path)
    state = _state(timedelta(days=10))
    store = EmbeddedStore(tmp_path / "readings.duckdb")
    tickets = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    try:
        _first_start(_sim(cfg), store, state, NOW, tickets)
        before = {t.number: t for t in tickets.list_tickets(limit=500).items}
        assert before

        # The demo restarted two hours later: the models are replayed and the two hours are
        # written and evaluated, nothing before them again.
        last = max(r.time for r in store.latest(metrics=["fault_code"]))
        later = NOW + timedelta(hours=2)
        assert _catch_up(_sim(cfg), store, state, later, last, tickets) == later
        after = tickets.list_tickets(limit=500).items
        assert {t.number for t in after} >= set(before)
        for t in after:
            if t.number not in before:
                assert NOW < t.created_at <= later, t
        keys = [(t.device, t.fault_class, t.created_at) for t in after]
        assert len(keys) == len(set(keys))

        # A first start that finds tickets (an earlier one that did not finish) leaves them.
        n = len(after)
        fresh = EmbeddedStore(tmp_path / "again.duckdb")
        try:
            _first_start(_sim(cfg), fresh, _state(timedelta(days=1)), NOW, tickets)
        finally:
            fresh.close()
        assert tickets.list_tickets(limit=1).total == n
        assert "not replayed again" in capsys.readouterr().out
    finally:
        tickets.close()
        store.close()


def test_the_replay_skips_only_samples_that_cannot_move_an_alert(tmp_path: Path) -> None:
    """Every 15-second lift state through one engine, and through the replay's filter into
    another: the same tickets and events at the same times, also for a rule with ``for`` and
    ``keep_firing_for`` timers."""
    cfg = _lifts(tmp_path)
    timed = ThresholdRule.model_validate(
        {
            "id": "lift-fault-lasting",
            "name": "Lift fault lasting 2 minutes",
            "metric": "fault_code",
            "select": {"kinds": ["elevator"]},
            "above": 0,
            "for": "2m",
            "keep_firing_for": "5m",
            "fault_class": "lasting_fault",
        }
    )
    cfg = cfg.model_copy(update={"rules": [*cfg.rules, timed]})
    params = {
        d.id: replace(p, faults_per_week=20.0)  # a fault every few hours
        for d in cfg.devices
        if isinstance(p := default_params(cfg)[d.id], ElevatorParams)
    }
    sim = SimulatedBuilding(cfg, params=params, seed=3)
    start = NOW - timedelta(days=3)
    batches = [
        b
        for b in sim.history(start, NOW, timedelta(hours=1), frozenset(), POLLED_METRICS)
        if isinstance(b, ReadingBatch)
    ]

    every = TicketStore("sqlite://")
    filtered = TicketStore("sqlite://")
    try:
        engine = AlertEngine(cfg, every)
        readings = sorted(
            (r for b in batches for r in b if r.metric in ("fault_code", "entrapment")),
            key=lambda r: r.time,
        )
        for t, group in itertools.groupby(readings, key=lambda r: r.time):
            engine.evaluate(list(group), now=t)
        replay = AlertReplay(cfg, AlertEngine(cfg, filtered))
        try:
            for b in batches:
                replay.take(b)
                replay.flush()
        finally:
            replay.close()

        def history(store: TicketStore) -> list[tuple[object, ...]]:
            out: list[tuple[object, ...]] = []
            for t in store.list_tickets(limit=500).items:
                d = store.get_ticket(t.id)
                assert d is not None
                events = tuple((e.kind, e.at) for e in d.events)
                out.append((t.device, t.fault_class, t.created_at, t.occurrences, events))
            return out

        got, want = history(filtered), history(every)
        assert {h[1] for h in want} == {"elevator_fault", "entrapment", "lasting_fault"}
        assert got == want
        assert replay.evaluated < len(readings) / 20
        assert [(a.fingerprint, a.state, a.started_at) for a in replay.engine.unresolved()] == [
            (a.fingerprint, a.state, a.started_at) for a in engine.unresolved()
        ]
    finally:
        every.close()
        filtered.close()
