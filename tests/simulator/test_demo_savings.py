"""The demo's energy-saving measure, verified end to end: the simulated office block with its
roof sensor, 14 months of history in a real store, and the savings report of the month after
the measure against the saving the simulator is known to have made."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.tickets import TicketStore
from facmon.demo import SAVING_FRACTION, demo_config, demo_params, measure_day
from reports.context import ReportContext
from reports.period import Period, local_midnight
from reports.savings import savings_report
from simulator import PowerMeterParams, SimulatedBuilding
from simulator.models import PowerMeterModel
from simulator.noise import LocalClock
from store.embedded import EmbeddedStore

pytestmark = pytest.mark.slow

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 9, 5, 4, 0, tzinfo=UTC)  # 5 September: August is the last full month


def test_measure_day_is_before_the_last_full_month() -> None:
    assert measure_day(NOW, SH) == date(2025, 7, 7)  # 60 days before
    assert measure_day(datetime(2025, 8, 31, 12, tzinfo=UTC), SH) == date(2025, 7, 1)


def test_the_savings_report_finds_the_simulated_saving(tmp_path: Path) -> None:
    measure = measure_day(NOW, SH)
    cfg = demo_config(tmp_path, measure)
    keep = {"office-main-meter", "outdoor-temp"}
    cfg = cfg.model_copy(update={"devices": [d for d in cfg.devices if d.id in keep]})
    assert cfg.reports.savings.baseline_end == measure == cfg.reports.savings.reporting_start
    params = {k: v for k, v in demo_params(cfg, measure).items() if k in keep}
    office = params["office-main-meter"]
    assert isinstance(office, PowerMeterParams)
    assert office.saving_fraction == SAVING_FRACTION

    store = EmbeddedStore(tmp_path / "readings.duckdb")
    tickets = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    try:
        sim = SimulatedBuilding(cfg, params=params, seed=1)
        start = local_midnight(measure - timedelta(days=370), SH)
        metrics = {"energy_import", "outdoor_temperature"}
        store.write(
            [r for b in sim.history(start, NOW, timedelta(hours=1), metrics=metrics) for r in b]
        )
        august = Period.month(2025, 8, SH)
        rep = savings_report(ReportContext(cfg, store, tickets, lambda: NOW), august)
    finally:
        tickets.close()
        store.close()

    # The truth: the same meter without the measure, over the same month.
    clock = LocalClock(SH)
    with_measure = PowerMeterModel("office-main-meter", office, clock, seed=1)
    without = PowerMeterModel("office-main-meter", replace(office, saving_fraction=0.0), clock, 1)
    used = {}
    for name, model in (("with", with_measure), ("without", without)):
        model.advance(august.start.timestamp())
        e0 = model.energy_kwh()
        model.advance(august.end.timestamp())
        used[name] = model.energy_kwh() - e0
    true_saving = used["without"] - used["with"]

    (b,) = rep.buildings
    assert b.building == "office" and b.status == "ok"
    assert b.verdict == "pass"
    assert b.baseline_days_used == 365 and b.reporting_days_used == 31
    assert b.fit is not None and b.fit.cv_rmse < 0.05
    assert [m.segment for m in b.model] == ["weekday", "weekend"]
    assert b.uncertainty is not None and b.savings_kwh is not None
    assert abs(b.savings_kwh - true_saving) <= b.uncertainty.kwh
    assert b.metered_kwh == pytest.approx(used["with"], rel=1e-3)
    assert b.uncertainty.meets_g14
    assert b.savings_money is not None and b.savings_money > 0
