"""Energy section: kWh, cost, intensity, comparisons, budget; daily bars and the TOU split."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import TYPE_CHECKING

from config.reporting import BANDS
from reports.context import ReportContext
from reports.monthly.charts import chart
from reports.monthly.i18n import Tr
from reports.monthly.model import Chart, Column, Figure, SectionView, Series, Table
from reports.monthly.sections import SectionInput
from reports.monthly.sections._common import figure
from reports.period import Period

if TYPE_CHECKING:  # imported when the section is built: a missing module costs this section only
    from reports.energy import BuildingOut, Comparison, DayOut, EnergyReport, MeterOut


# The site-wide report has every building's figures: fetched once, read by every page.
PER_BUILDING = False


def fetch(rc: ReportContext, period: Period, building: str | None) -> EnergyReport:
    from reports.energy import energy_report

    return energy_report(rc, period, every="day", building=building)


def view(rep: EnergyReport, inp: SectionInput) -> SectionView:
    tr = inp.tr
    cur = inp.rc.config.site.currency
    bo = next((b for b in rep.buildings if b.building == inp.building), None)
    if inp.building is not None and bo is None:
        raise LookupError(f"the energy report has no building {inp.building!r}")

    if bo is not None:
        total, cost, comparisons = bo.total_kwh, bo.cost, bo.comparisons
        area = bo.floor_area_m2
        intensity = bo.kwh_per_m2
        daily = [(d.day, d.kwh, _bands(d)) for d in bo.daily]
    else:
        total, cost, comparisons = rep.total_kwh, None, rep.comparisons
        area = sum(b.floor_area_m2 for b in inp.rc.config.buildings)
        intensity = None if total is None else total / area
        daily = _site_daily(rep)

    total_cost = cost.total if cost is not None else rep.total_cost
    figures: list[Figure] = [
        figure(tr, "energy.total", tr("energy.total"), total, "kWh", digits=0),
        figure(
            tr,
            "energy.cost",
            tr("energy.cost"),
            total_cost,
            cur,
            digits=0,
            detail=_cost_parts(tr, cur, bo),
        ),
        figure(tr, "energy.intensity", tr("energy.intensity"), intensity, "kWh/m2", digits=2),
    ]
    for c in comparisons:
        figures.append(_comparison(tr, c))
    if bo is not None and bo.budget is not None:
        b = bo.budget
        used, of, unit = (
            (b.kwh_used_pct, b.kwh, "kWh")
            if b.kwh_used_pct is not None
            else (b.cost_used_pct, b.cost, cur)
        )
        figures.append(
            figure(
                tr,
                "energy.budget",
                tr("energy.budget"),
                used,
                "%",
                detail=tr(
                    "energy.budget_used",
                    budget=tr.qty(of, unit, 0),
                    elapsed=tr.pct(b.month_elapsed_pct, 0),
                ),
                status=None if used is None else "ok" if used <= b.month_elapsed_pct else "bad",
            )
        )
    if bo is not None and bo.peak_demand is not None:
        figures.append(
            figure(
                tr,
                "energy.peak_demand",
                tr("energy.peak_demand"),
                bo.peak_demand.kw,
                "kW",
                detail=tr(
                    "energy.peak_at", at=_moment(tr, bo.peak_demand.at.astimezone(inp.rc.tz))
                ),
            )
        )
    if bo is not None and bo.base_load_kw is not None:
        figures.append(
            figure(tr, "energy.base_load", tr("energy.base_load"), bo.base_load_kw, "kW")
        )

    # Every day of the month on the axis, so a month still running reads as such.
    known = {d: (kwh, bands) for d, kwh, bands in daily}
    daily = [(d, *known.get(d, (None, {}))) for d in inp.period.days]
    charts = [_daily_chart(tr, daily)]
    notes: list[str] = []
    tou = _tou_chart(tr, daily)
    if tou is not None:
        charts.append(tou)
    else:
        notes.append(tr("energy.no_tariff"))
    # One meter's row would repeat the building's total: list meters only when there are several.
    meters = [m for m in rep.meters if m.building == inp.building]
    tables = [_meters(tr, meters, cur)] if len(meters) > 1 else []
    return SectionView(
        key="energy",
        title=tr("section.energy"),
        available=True,
        figures=figures,
        charts=charts,
        tables=tables,
        notes=notes,
    )


Day = tuple[date, float | None, dict[str, float]]


def _moment(tr: Tr, t: datetime) -> str:
    return f"{tr.day(t.date())} {t:%H:%M}"


def _bands(d: DayOut) -> dict[str, float]:
    return {u.band: u.kwh for u in d.bands}


def _site_daily(rep: EnergyReport) -> list[Day]:
    kwh: dict[date, list[float]] = defaultdict(list)
    bands: dict[date, dict[str, float]] = defaultdict(dict)
    days: list[date] = []
    for b in rep.buildings:
        for d in b.daily:
            if d.day not in bands:
                days.append(d.day)
                bands[d.day] = {}
            if d.kwh is not None:
                kwh[d.day].append(d.kwh)
            for u in d.bands:
                bands[d.day][u.band] = bands[d.day].get(u.band, 0.0) + u.kwh
    return [(d, sum(kwh[d]) if kwh[d] else None, bands[d]) for d in sorted(days)]


def _cost_parts(tr: Tr, cur: str, bo: BuildingOut | None) -> str | None:
    if bo is None or bo.cost is None or bo.cost.total is None:
        return None
    c = bo.cost
    if not c.fixed and not c.demand:
        return None
    return tr(
        "energy.cost_parts",
        energy=tr.qty(c.energy, cur, 0),
        fixed=tr.qty(c.fixed or 0.0, cur, 0),
        demand=tr.qty(c.demand or 0.0, cur, 0),
    )


def _comparison(tr: Tr, c: Comparison) -> Figure:
    key = "energy.vs_previous" if c.against == "previous_month" else "energy.vs_last_year"
    change = c.kwh_change_pct
    value = tr.qty(c.kwh, "kWh", 0)
    partial = c.kwh is not None and c.completeness is not None and change is None
    detail = (
        tr("energy.compared_partial", month=c.month, value=value, share=f"{c.completeness:.0%}")
        if partial
        else tr("energy.compared", month=c.month, value=value)
    )
    return figure(tr, key, tr(key), change, "%", detail=detail).model_copy(
        update={"text": tr.signed_pct(change)}
    )


def _daily_chart(tr: Tr, daily: list[Day]) -> Chart:
    return chart(
        tr,
        key="energy.daily",
        kind="bar",
        title=tr("energy.daily"),
        x_label=tr("axis.day"),
        y_label=tr("energy.y"),
        unit="kWh",
        categories=[d.isoformat() for d, _, _ in daily],
        series=[Series(key="kwh", name=tr("energy.kwh"), values=[v for _, v, _ in daily])],
        digits=0,
    )


def _tou_chart(tr: Tr, daily: list[Day]) -> Chart | None:
    used = [b for b in BANDS if any(bands.get(b) for _, _, bands in daily)]
    if not used:
        return None
    # Cheapest band at the bottom, the costly ones on top where the eye goes.
    order = [b for b in ("valley", "flat", "peak", "sharp") if b in used]
    return chart(
        tr,
        key="energy.tou",
        kind="stacked",
        title=tr("energy.tou"),
        x_label=tr("axis.day"),
        y_label=tr("energy.y"),
        unit="kWh",
        categories=[d.isoformat() for d, _, _ in daily],
        series=[
            Series(
                key=b,
                name=tr(f"band.{b}"),
                values=[bands.get(b) if v is not None else None for _, v, bands in daily],
            )
            for b in order
        ],
        digits=0,
    )


def _meters(tr: Tr, meters: list[MeterOut], cur: str) -> Table:
    return Table(
        key="energy.meters",
        title=tr("energy.meters"),
        columns=[
            Column(key="meter", label=tr("energy.meter"), digits=0),
            Column(key="kwh", label=tr("energy.kwh"), unit="kWh", digits=0),
            Column(key="cost", label=tr("energy.cost_col"), unit=cur, digits=0),
            Column(key="peak_kw", label=tr("energy.peak_col"), unit="kW", digits=1),
        ],
        rows=[
            [
                m.name,
                m.total_kwh,
                m.cost.total if m.cost is not None else None,
                m.peak_demand.kw if m.peak_demand is not None else None,
            ]
            for m in meters
        ],
        row_keys=[m.device for m in meters],
    )
