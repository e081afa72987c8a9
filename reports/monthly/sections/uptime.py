"""Availability section: time-weighted A with its bounds, intact rate, coverage, MTBF/MTTR,
entrapments; availability bars per elevator against the target."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from reports.context import ReportContext
from reports.monthly.charts import chart
from reports.monthly.i18n import Tr
from reports.monthly.model import Chart, Column, Figure, SectionView, Series, Table
from reports.monthly.sections import SectionInput
from reports.monthly.sections._common import against, figure, percent
from reports.period import Period

if TYPE_CHECKING:  # imported when the section is built: a missing module costs this section only
    from reports.uptime import AssetUptime, FleetUptime, UptimeReport


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


# The site-wide report has every asset and a fleet per building: fetched once.
PER_BUILDING = False


def fetch(rc: ReportContext, period: Period, building: str | None) -> UptimeReport:
    from reports.uptime import uptime_report

    return uptime_report(rc, period, building=building)


def view(rep: UptimeReport, inp: SectionInput) -> SectionView:
    tr = inp.tr
    if inp.building is None:
        fleet: FleetUptime | None = rep.site
        assets = rep.assets
    else:
        fleet = next((f for f in rep.buildings if f.building == inp.building), None)
        assets = [a for a in rep.assets if a.building == inp.building]
    if fleet is None or not assets:
        return SectionView(
            key="uptime",
            title=tr("section.uptime"),
            available=True,
            notes=[tr("uptime.no_assets")],
        )
    up, down, unknown = fleet.up_h, fleet.down_h, fleet.unknown_h
    a = _ratio(up, up + down)
    a_low = _ratio(up, up + down + unknown)
    a_high = _ratio(up + unknown, up + down + unknown)
    insufficient = fleet.coverage is None or fleet.coverage < rep.min_coverage
    bounds = tr("uptime.bounds", low=tr.pct(percent(a_low), 2), high=tr.pct(percent(a_high), 2))
    restorations = sum(x.restorations for x in assets)
    over = fleet.entrapments_over_limit
    figures: list[Figure] = [
        figure(
            tr,
            "uptime.availability",
            tr("uptime.availability"),
            percent(a),
            "%",
            digits=2,
            detail=tr("uptime.insufficient_detail", min=tr.pct(percent(rep.min_coverage), 0))
            if insufficient
            else bounds,
            status="warn" if insufficient else against(a, rep.target),
        ),
        figure(
            tr,
            "uptime.intact",
            tr("uptime.intact"),
            percent(fleet.intact_rate_count),
            "%",
            detail=tr("uptime.intact_detail", good=fleet.in_good_order, all=fleet.assets),
            status=against(fleet.intact_rate_count, rep.target),
        ),
        figure(
            tr,
            "uptime.coverage",
            tr("uptime.coverage"),
            percent(fleet.coverage),
            "%",
            status="warn" if insufficient else None,
        ),
        figure(tr, "uptime.failures", tr("uptime.failures"), fleet.failures, "", digits=0),
        figure(
            tr,
            "uptime.mtbf",
            tr("uptime.mtbf"),
            up / fleet.failures if fleet.failures else None,
            "h",
        ),
        figure(
            tr,
            "uptime.mttr",
            tr("uptime.mttr"),
            down / restorations if restorations else None,
            "h",
            detail=tr("uptime.restorations_detail", n=restorations) if restorations else None,
        ),
        figure(
            tr,
            "uptime.entrapments",
            tr("uptime.entrapments"),
            fleet.entrapments,
            "",
            digits=0,
            detail=tr("uptime.over_limit", n=over, limit=tr.num(rep.rescue_limit_min, 0))
            if over
            else None,
            status="bad" if over else None,
        ),
    ]
    # One lift's row would repeat the figures above: list assets only when there are several.
    tables = [_assets(tr, assets)] if inp.building is not None and len(assets) > 1 else []
    return SectionView(
        key="uptime",
        title=tr("section.uptime"),
        available=True,
        figures=figures,
        charts=[_chart(tr, rep, assets)],
        tables=tables,
    )


def _chart(tr: Tr, rep: UptimeReport, assets: list[AssetUptime]) -> Chart:
    values = [percent(x.availability) for x in assets]
    target = percent(rep.target)
    assert target is not None
    known = [v for v in values if v is not None]
    # Availability lives near 100 %: start the axis just below the lowest bar or the target so
    # that a miss of one point is visible, but never hide a bar entirely.
    floor = min([*known, target]) if known else target
    y_min = max(0.0, math.floor((floor - 2) / 5) * 5)
    return chart(
        tr,
        key="uptime.availability",
        kind="bar",
        title=tr("uptime.chart"),
        x_label=tr("axis.elevator"),
        y_label=tr("uptime.y"),
        unit="%",
        categories=[x.name for x in assets],
        series=[Series(key="availability", name=tr("uptime.availability"), values=values)],
        target=target,
        better="higher",
        y_min=y_min,
        y_max=100.0,
        additive=False,
        digits=2,
    )


def _assets(tr: Tr, assets: list[AssetUptime]) -> Table:
    return Table(
        key="uptime.assets",
        title=tr("uptime.assets"),
        columns=[
            Column(key="asset", label=tr("uptime.asset"), digits=0),
            Column(key="availability", label="A", unit="%", digits=2),
            Column(key="bounds", label=tr("uptime.bounds_col"), unit="%", digits=2),
            Column(key="coverage", label=tr("uptime.coverage"), unit="%", digits=1),
            Column(key="down_h", label=tr("uptime.down"), unit="h", digits=1),
            Column(key="planned_h", label=tr("uptime.planned"), unit="h", digits=1),
            Column(key="failures", label=tr("uptime.failures"), digits=0),
        ],
        rows=[
            [
                x.name,
                percent(x.availability),
                f"{tr.num(percent(x.availability_low), 2)} – "
                f"{tr.num(percent(x.availability_high), 2)}",
                percent(x.coverage),
                x.down_h,
                x.planned_h,
                x.failures,
            ]
            for x in assets
        ],
    )
