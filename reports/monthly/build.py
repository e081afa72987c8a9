"""Assemble the monthly management report: a portfolio summary page, then one page per building.

Every page runs the same section adapters (energy, savings, availability, water, maintenance)
for its scope (``building=None`` on the summary) and shows data completeness per meter. A section
that cannot be built is shown as not available; the report itself always builds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from reports.context import ReportContext
from reports.monthly.completeness import completeness
from reports.monthly.i18n import Tr
from reports.monthly.model import (
    Column,
    Figure,
    MeterCompleteness,
    MonthlyReport,
    Page,
    SectionKey,
    SectionView,
    Table,
)
from reports.monthly.readcache import ReadCache
from reports.monthly.sections import Cache, Section, SectionInput, run, sections
from reports.period import Period

# done, total, what is being built now (e.g. "energy · A座")
ProgressFn = Callable[[int, int, str], None]

# Figures the summary's overview table shows per building, when the sections provide them.
OVERVIEW: tuple[str, ...] = (
    "energy.total",
    "energy.cost",
    "energy.intensity",
    "savings.saved",
    "uptime.availability",
    "water.total",
    "water.leaks",
    "maint.opened",
    "maint.on_time",
)


def build_monthly(
    rc: ReportContext,
    period: Period,
    *,
    lang: str,
    replace: Mapping[SectionKey, Section] | None = None,
    cache: Cache | None = None,
    progress: ProgressFn | None = None,
) -> MonthlyReport:
    """The monthly report of ``period`` in ``lang`` (zh-CN or en).

    ``replace`` swaps section adapters (tests, or a site's own section). ``cache`` keeps the
    section reports between builds of the same ``rc`` and ``period`` (e.g. one per language).
    ``progress`` is called before each section of each page.
    """
    tr = Tr(lang, rc.config.site.currency)
    now = rc.clock()
    until = period.clipped(now)
    chosen = sections(dict(replace) if replace else None)
    memo: Cache = {} if cache is None else cache
    scopes: list[str | None] = [None, *(b.id for b in rc.config.buildings)]
    total = len(scopes) * len(chosen)
    done = 0
    pages: list[Page] = []
    # The sections read the same month of the same meters again and again: within this build
    # each span is read from the store once.
    reads = ReadCache(rc.store)
    rc = dataclasses.replace(rc, store=reads)
    try:
        views_of: list[list[SectionView]] = []
        for scope in scopes:
            name = tr("report.summary") if scope is None else rc.buildings[scope].name
            views: list[SectionView] = []
            for section in chosen:
                if progress is not None:
                    progress(done, total, f"{section.key} · {name}")
                views.append(run(section, SectionInput(rc, period, scope, tr), memo))
                done += 1
            views_of.append(views)
        # Once for the site, after the sections: it counts from the samples they read when it
        # can. Each building's page shows its own devices' rows.
        rows = completeness(rc, period, now)
        for scope, views in zip(scopes, views_of, strict=True):
            name = tr("report.summary") if scope is None else rc.buildings[scope].name
            building = rc.buildings[scope] if scope is not None else None
            pages.append(
                Page(
                    building=scope,
                    title=name,
                    floor_area_m2=building.floor_area_m2 if building else _site_area(rc),
                    sections=views,
                    completeness=[
                        r
                        for r in rows
                        if scope is None or rc.devices[r.device].location.building == scope
                    ],
                )
            )
    finally:
        reads.close()
    if progress is not None:
        progress(total, total, "")
    summary, buildings = pages[0], pages[1:]
    summary = summary.model_copy(update={"overview": overview(tr, buildings)})
    site = rc.config.site
    return MonthlyReport(
        site_id=site.id,
        site_name=site.name,
        month=period.label,
        lang=tr.lang,
        title=f"{tr('report.title')} {tr.month(period.first)}",
        timezone=site.timezone,
        currency=site.currency,
        first_day=period.first,
        last_day=period.last,
        generated_at=now.astimezone(rc.tz),
        data_until=until.astimezone(rc.tz),
        summary=summary,
        buildings=buildings,
    )


def _site_area(rc: ReportContext) -> float:
    return sum(b.floor_area_m2 for b in rc.config.buildings)


def _figures(page: Page) -> dict[str, Figure]:
    return {f.key: f for s in page.sections for f in s.figures}


def _worst(rows: Sequence[MeterCompleteness]) -> float | None:
    known = [r.completeness for r in rows if r.completeness is not None]
    return min(known) if known else None


def overview(tr: Tr, pages: Sequence[Page]) -> Table:
    """One row per building: the headline figure of each section and the worst completeness."""
    figs = [_figures(p) for p in pages]
    columns = [Column(key="building", label=tr("report.building"), unit=None, digits=0)]
    keys: list[str] = []
    for key in OVERVIEW:
        sample = next((f[key] for f in figs if key in f), None)
        if sample is None:
            continue
        keys.append(key)
        digits = {"kWh": 0, "m3": 0, "": 0, "kWh/m2": 2}.get(sample.unit, 1)
        columns.append(Column(key=key, label=sample.label, unit=sample.unit, digits=digits))
    columns.append(
        Column(key="completeness.min", label=tr("completeness.worst"), unit="%", digits=1)
    )
    rows: list[list[str | float | int | None]] = []
    for page, f in zip(pages, figs, strict=True):
        row: list[str | float | int | None] = [page.title]
        row.extend(f[k].value if k in f else None for k in keys)
        row.append(_worst(page.completeness))
        rows.append(row)
    return Table(key="overview", title=tr("report.overview"), columns=columns, rows=rows)
