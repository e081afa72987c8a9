"""The demo's back-filled lift history, read by the uptime report: the last full month and the
current one are covered at the lifts' poll interval, so they show a real availability instead
of "insufficient data"; older history (15-minute steps) does not pretend to be covered."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from alerts.tickets import TicketStore
from facmon.demo import _first_start, _top_up, demo_config, measure_day, states_start
from reports.context import ReportContext
from reports.period import Period
from reports.uptime import STATE_METRICS, uptime_report
from simulator import SimulatedBuilding
from store.embedded import EmbeddedStore

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)  # Monday 3 March, 14:00 in Shanghai
BACKFILL_TOOK = timedelta(seconds=40)


def test_states_start_a_day_before_the_last_full_month() -> None:
    assert states_start(NOW, SH) == datetime(2025, 1, 31, tzinfo=SH)
    # 1 April 01:00 in Shanghai: March is the last full month.
    assert states_start(datetime(2025, 3, 31, 17, tzinfo=UTC), SH) == datetime(
        2025, 2, 28, tzinfo=SH
    )


def test_backfilled_months_have_real_availability(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path, measure_day(NOW, SH))
    lifts = [d for d in cfg.devices if d.kind == "elevator"]
    cfg = cfg.model_copy(update={"devices": lifts})  # the lifts alone: seconds, not a minute
    # 40 days: 15-minute archive, then the detailed window from 31 January (15-minute steps,
    # then 5-minute ones, lift states at every poll throughout).
    state = {
        "history_start": (NOW - timedelta(days=40)).isoformat(),
        "recent_start": (NOW - timedelta(days=5)).isoformat(),
    }
    store = EmbeddedStore(tmp_path / "readings.duckdb")
    tickets = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    try:
        sim = SimulatedBuilding(cfg, seed=1)
        assert _first_start(sim, store, state, NOW) == NOW
        # Then the 40 s the back-fill took, in two rounds, before the live collector starts.
        clock = iter([NOW + BACKFILL_TOOK, NOW + BACKFILL_TOOK + timedelta(seconds=2), NOW])
        _top_up(sim, store, NOW, clock=lambda: next(clock))
        live = NOW + BACKFILL_TOOK + timedelta(seconds=2)
        rc = ReportContext(cfg, store, tickets, clock=lambda: live)

        february = uptime_report(rc, Period.month(2025, 2, SH))
        march = uptime_report(rc, Period.month(2025, 3, SH))
        before = uptime_report(rc, Period.days_between(date(2025, 1, 24), date(2025, 1, 30), SH))
        samples = {m: store.series_arrays(m, NOW - timedelta(days=2), live) for m in STATE_METRICS}
        skipped = store.stats.extra.get("duplicates_skipped", 0)
    finally:
        tickets.close()
        store.close()

    assert february.complete and not march.complete
    for rep in (february, march):
        assert [a.device for a in rep.assets] == ["mall-elevator-1", "mall-elevator-2"]
        for a in rep.assets:
            assert a.coverage is not None and a.coverage >= 0.9, a
            assert a.unknown_h < 0.01, a  # every moment covered, the junction at NOW too
            assert not a.insufficient_data
            assert a.availability is not None and 0.98 <= a.availability <= 1.0, a
            assert a.up_h > 0.9 * a.window_h
        assert rep.site.coverage is not None and rep.site.coverage >= 0.9
    # Semi-monthly maintenance: one or two 1.5-hour windows per lift in February.
    for a in february.assets:
        assert a.planned_by_reason.keys() == {"inspection"}
        assert 1.5 <= a.planned_h <= 3.0, a
    # Before the detailed window the states are 15 minutes apart: honestly unknown.
    for a in before.assets:
        assert a.insufficient_data and a.coverage is not None and a.coverage < 0.1, a

    # Every poll from the 5-minute window through the top-up, 15 s apart, none twice.
    assert skipped == 0
    for metric, by_device in samples.items():
        assert set(by_device) == {"mall-elevator-1", "mall-elevator-2"}
        for t, _ in by_device.values():
            assert np.all(np.diff(t) == 15_000_000), metric
            assert t[-1] >= int((live - timedelta(seconds=15)).timestamp() * 1e6)
