"""Maintenance section: ticket volume, repairs on time against the target, MTTR, backlog."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reports.context import ReportContext
from reports.monthly.i18n import Tr
from reports.monthly.model import Column, Figure, SectionView, Table
from reports.monthly.sections import SectionInput
from reports.monthly.sections._common import against, figure, percent
from reports.period import Period

if TYPE_CHECKING:  # imported when the section is built: a missing module costs this section only
    from reports.maintenance import MaintenanceReport


# The maintenance report does not break down by building: each page asks for its own.
PER_BUILDING = True


def fetch(rc: ReportContext, period: Period, building: str | None) -> MaintenanceReport:
    from reports.maintenance import maintenance_report

    return maintenance_report(rc, period, building=building)


def view(rep: MaintenanceReport, inp: SectionInput) -> SectionView:
    tr = inp.tr
    t = rep.timeliness
    rt = rep.repair_time
    figures: list[Figure] = [
        figure(tr, "maint.opened", tr("maint.opened"), rep.opened.total, "", digits=0),
        figure(tr, "maint.resolved", tr("maint.resolved"), t.resolved, "", digits=0),
        figure(
            tr,
            "maint.on_time",
            tr("maint.on_time"),
            percent(t.on_time_rate),
            "%",
            detail=tr("maint.on_time_detail", target=tr.pct(percent(t.target), 0)),
            status=against(t.on_time_rate, t.target),
        ),
        figure(
            tr,
            "maint.mttr",
            tr("maint.mttr"),
            rt.mttr_gross_h,
            "h",
            detail=tr("maint.mttr_net", net=tr.qty(rt.mttr_net_h, "h"))
            if rt.mttr_net_h is not None
            else None,
        ),
        figure(
            tr,
            "maint.open_end",
            tr("maint.open_end"),
            rep.backlog.open,
            "",
            digits=0,
            detail=tr("maint.overdue", n=rep.backlog.overdue) if rep.backlog.overdue else None,
            status="bad" if rep.backlog.overdue else None,
        ),
        figure(tr, "maint.repeats", tr("maint.repeats"), rep.repeats.repeat_repairs, "", digits=0),
    ]
    tables = [_categories(tr, rep)] if rep.categories and inp.building is not None else []
    return SectionView(
        key="maintenance",
        title=tr("section.maintenance"),
        available=True,
        figures=figures,
        tables=tables,
    )


def _categories(tr: Tr, rep: MaintenanceReport) -> Table:
    return Table(
        key="maint.categories",
        title=tr("maint.categories"),
        columns=[
            Column(key="fault_class", label=tr("maint.category"), digits=0),
            Column(key="opened", label=tr("maint.opened"), digits=0),
            Column(key="resolved", label=tr("maint.resolved"), digits=0),
            Column(key="on_time_rate", label=tr("maint.on_time_rate"), unit="%", digits=1),
            Column(key="mttr_gross_h", label=tr("maint.mttr"), unit="h", digits=1),
            Column(key="open_at_end", label=tr("maint.open_at_end"), digits=0),
        ],
        rows=[
            [
                c.fault_class,
                c.opened,
                c.resolved,
                percent(c.on_time_rate),
                c.mttr_gross_h,
                c.open_at_end,
            ]
            for c in rep.categories
        ],
    )
