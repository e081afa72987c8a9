"""Water section: use and cost, leak episodes and their estimated loss, unaccounted water;
leak bars (minimum night flow per night against the threshold, or loss per building)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING

from reports.context import ReportContext
from reports.monthly.charts import chart
from reports.monthly.i18n import Tr
from reports.monthly.model import Chart, Column, Figure, SectionView, Series, Table
from reports.monthly.sections import SectionInput
from reports.monthly.sections._common import figure, percent
from reports.period import Period

if TYPE_CHECKING:  # imported when the section is built: a missing module costs this section only
    from reports.water import LeakEpisodeOut, WaterMeterOut, WaterReport

MAX_EPISODES = 5  # rows of the episode table on a page; the JSON keeps them all


# The site-wide report has every meter, building and leak: fetched once, read by every page.
PER_BUILDING = False


def fetch(rc: ReportContext, period: Period, building: str | None) -> WaterReport:
    from reports.water import water_report

    return water_report(rc, period, building=building)


def view(rep: WaterReport, inp: SectionInput) -> SectionView:
    tr = inp.tr
    cur = rep.currency
    b = inp.building
    meters = [m for m in rep.meters if b is None or m.building == b]
    bo = next((x for x in rep.buildings if x.building == b), None)
    if not meters or (b is not None and bo is None):
        return SectionView(
            key="water", title=tr("section.water"), available=True, notes=[tr("water.no_meters")]
        )
    total = bo.total_m3 if bo is not None else rep.total_m3
    cost = bo.cost if bo is not None else rep.cost
    loss = bo.leak_loss_m3 if bo is not None else rep.leak_loss_m3
    loss_cost = bo.leak_cost if bo is not None else rep.leak_cost
    episodes = [e for e in rep.leaks if b is None or e.building == b]
    still_open = sum(1 for e in episodes if e.open)
    figures: list[Figure] = [
        figure(tr, "water.total", tr("water.total"), total, "m3"),
        figure(tr, "water.cost", tr("water.cost"), cost, cur, digits=0),
        figure(
            tr,
            "water.leaks",
            tr("water.leaks"),
            len(episodes),
            "",
            digits=0,
            detail=tr("water.open_count", n=still_open) if still_open else None,
            status="bad" if episodes else "ok",
        ),
        figure(
            tr,
            "water.loss",
            tr("water.loss"),
            loss,
            "m3",
            detail=tr.qty(loss_cost, cur, 0) if loss_cost else None,
            status="bad" if loss > 0 else None,
        ),
    ]
    unaccounted = bo.unaccounted_m3 if bo is not None else None
    if unaccounted is not None and bo is not None:
        figures.append(
            figure(
                tr,
                "water.unaccounted",
                tr("water.unaccounted"),
                unaccounted,
                "m3",
                detail=tr("water.share", share=tr.pct(percent(bo.unaccounted_share))),
            )
        )
    notes = [
        tr(
            "water.rule",
            night=rep.night_window,
            rolling=tr.num(rep.rolling_min, 0),
            n=rep.leak_nights,
        )
    ]
    if not episodes:
        notes.insert(0, tr("water.no_leaks"))
    if inp.building is None:
        charts = [_loss_chart(tr, rep)]
        tables: list[Table] = []
    else:
        charts = [_mnf_chart(tr, rep, meters)]
        tables = [_episodes(tr, episodes, cur)] if episodes else []
    return SectionView(
        key="water",
        title=tr("section.water"),
        available=True,
        figures=figures,
        charts=charts,
        tables=tables,
        notes=notes,
    )


def _mnf_chart(tr: Tr, rep: WaterReport, meters: list[WaterMeterOut]) -> Chart:
    """Per night, the summed MNF of the mains (a night a main has no figure stays empty)."""
    mains = [m for m in meters if m.main]
    per_night: dict[date, list[float | None]] = defaultdict(list)
    for m in mains:
        for n in m.nights:
            per_night[n.night].append(n.mnf_m3h)
    nights = sorted(per_night)
    values: list[float | None] = []
    for d in nights:
        vs = per_night[d]
        known = [v for v in vs if v is not None]
        values.append(sum(known) if len(known) == len(mains) else None)
    threshold = rep.threshold_m3h * max(len(mains), 1)
    return chart(
        tr,
        key="water.mnf",
        kind="bar",
        title=tr("water.chart_mnf"),
        x_label=tr("axis.night"),
        y_label=tr("water.y_mnf"),
        unit="m3/h",
        categories=[d.isoformat() for d in nights],
        series=[Series(key="mnf", name=tr("water.mnf"), values=values)],
        target=threshold,
        target_label=tr("water.threshold", value=tr.qty(threshold, "m3/h", 2)),
        better="lower",
        additive=False,
        digits=2,
    )


def _loss_chart(tr: Tr, rep: WaterReport) -> Chart:
    return chart(
        tr,
        key="water.loss",
        kind="bar",
        title=tr("water.chart_loss"),
        x_label=tr("axis.building"),
        y_label=tr("water.y_loss"),
        unit="m3",
        categories=[b.name for b in rep.buildings],
        series=[
            Series(
                key="loss", name=tr("water.loss"), values=[b.leak_loss_m3 for b in rep.buildings]
            )
        ],
    )


def _episodes(tr: Tr, episodes: list[LeakEpisodeOut], cur: str) -> Table:
    return Table(
        key="water.episodes",
        title=tr("water.episodes"),
        columns=[
            Column(key="meter", label=tr("water.meter"), digits=0),
            Column(key="start", label=tr("water.start"), digits=0),
            Column(key="end", label=tr("water.end"), digits=0),
            Column(key="nights", label=tr("water.nights"), digits=0),
            Column(key="mean_mnf", label=tr("water.mnf"), unit="m3/h", digits=2),
            Column(key="loss", label=tr("water.loss"), unit="m3", digits=1),
            Column(key="cost", label=tr("water.loss_cost"), unit=cur, digits=0),
        ],
        rows=[
            [
                e.name,
                tr.day(e.start_night),
                tr.day(e.end_night) if e.end_night is not None else tr("water.open"),
                e.nights_in_period,
                e.mean_mnf_m3h,
                e.loss_m3,
                e.cost,
            ]
            for e in episodes[:MAX_EPISODES]
        ],
    )
