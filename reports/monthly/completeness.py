"""Data completeness per meter: the share of the period's hours with at least one trusted sample.

Computed here rather than taken from the sections, so every page shows it for every meter even
when a section is not available: on the store's ``aggregate`` primitive, or, in a monthly
build, from the samples a section already read (the same count, see :func:`_hours_read`). Hours
are counted up to the report time: a month still running is not "incomplete" for the days yet
to come.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import numpy as np

from reports.context import ReportContext
from reports.monthly.model import MeterCompleteness
from reports.monthly.readcache import ReadCache
from reports.period import Period
from store.base import Windows
from store.reading import to_us

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
            counted = _hours_read(rc, metric, windows, ids)
            if counted is None:
                counted = _hours_aggregated(rc, metric, windows, ids)
            seen.update(counted)
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


def _hours_aggregated(
    rc: ReportContext, metric: str, windows: Windows, ids: list[str]
) -> Counter[str]:
    seen: Counter[str] = Counter()
    for wv in rc.store.aggregate(metric, windows, "last", ids):
        seen[wv.device] += 1
    return seen


def _hours_read(
    rc: ReportContext, metric: str, windows: Windows, ids: list[str]
) -> Counter[str] | None:
    """Hours with a sample, counted from samples the report already read; None if it did not.

    ``aggregate`` gives one value per device and non-empty window of the non-BAD samples, and
    ``series_arrays`` gives those samples: counting the windows the samples fall in is the same
    number without asking the store to aggregate a month of every meter again.
    """
    if not isinstance(rc.store, ReadCache):
        return None
    got = rc.store.cached(metric, windows.start, windows.end, ids)
    if got is None:
        return None
    start, every = to_us(windows.start), windows.every // timedelta(microseconds=1)
    seen: Counter[str] = Counter()
    for device, (t, _) in got.items():
        if len(t):
            k = (t - start) // every  # sorted: the windows are the changes of k, plus one
            seen[device] = int(np.count_nonzero(k[1:] != k[:-1])) + 1
    return seen
