"""Data completeness per meter: the share of the period's hours with at least one trusted sample.

Computed here, on the store's ``aggregate`` primitive, rather than taken from the sections, so
every page shows it for every meter even when a section is not available. Hours are counted up
to the report time: a month still running is not "incomplete" for the days yet to come.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from reports.context import ReportContext
from reports.monthly.model import MeterCompleteness
from reports.period import Period
from store.base import Windows

HOUR = timedelta(hours=1)
ELEVATOR_METRIC = "service_mode"  # the state every availability figure is computed from


def metric_of(rc: ReportContext, kind: str) -> str | None:
    if kind == "power_meter":
        return rc.config.reports.energy.metric
    if kind == "water_meter":
        return rc.config.reports.water.metric
    if kind == "elevator":
        return ELEVATOR_METRIC
    return None


def completeness(
    rc: ReportContext, period: Period, until: datetime, building: str | None = None
) -> list[MeterCompleteness]:
    """One row per power meter, water meter and elevator (of ``building``), in config order."""
    devices = [
        d
        for d in rc.config.devices
        if metric_of(rc, d.kind) is not None
        and (building is None or d.location.building == building)
    ]
    end = period.clipped(until)
    seen: Counter[str] = Counter()
    hours = 0
    if end > period.start:
        windows = Windows(period.start, end, HOUR)
        hours = len(windows.bounds())
        by_metric: dict[str, list[str]] = {}
        for d in devices:
            metric = metric_of(rc, d.kind)
            assert metric is not None
            by_metric.setdefault(metric, []).append(d.id)
        for metric, ids in by_metric.items():
            for wv in rc.store.aggregate(metric, windows, "last", ids):
                seen[wv.device] += 1
    rows: list[MeterCompleteness] = []
    for d in devices:
        metric = metric_of(rc, d.kind)
        assert metric is not None
        rows.append(
            MeterCompleteness(
                device=d.id,
                name=d.name,
                kind=d.kind,
                metric=metric,
                hours=hours,
                hours_with_data=seen[d.id],
                completeness=round(seen[d.id] / hours * 100, 2) if hours else None,
            )
        )
    return rows
