"""Savings section: avoided energy use, never a bare number.

Every savings figure is printed with the baseline fit behind it (n, R², CV(RMSE), NMBE), the
limit that applies and its verdict, and the savings uncertainty; a building without a usable
baseline shows why instead of a number. The summary page lists each building's savings with
its fit, because a site total has no single fit of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reports.context import ReportContext
from reports.monthly.charts import chart
from reports.monthly.i18n import Tr
from reports.monthly.model import Chart, Column, FitQuality, SectionView, Series, Table
from reports.monthly.sections import SectionInput
from reports.monthly.sections._common import figure, percent
from reports.period import Period

if TYPE_CHECKING:  # imported when the section is built: a missing module costs this section only
    from reports.savings import BuildingSavings, SavingsReport

MAX_NOTES = 1  # warnings shown on the page; the JSON of the savings report has them all


# The site-wide report has one entry per building with a main meter: fetched once.
PER_BUILDING = False


def fetch(rc: ReportContext, period: Period, building: str | None) -> SavingsReport:
    from reports.savings import savings_report

    return savings_report(rc, period, building=building)


def view(rep: SavingsReport, inp: SectionInput) -> SectionView:
    tr = inp.tr
    if inp.building is None:
        return _site(tr, rep, inp.rc.config.site.currency)
    bs = next((b for b in rep.buildings if b.building == inp.building), None)
    if bs is None:
        return SectionView(
            key="savings",
            title=tr("section.savings"),
            available=True,
            notes=[tr("savings.no_buildings")],
        )
    return _building(tr, rep, bs, inp.rc.config.site.currency)


def fit_quality(tr: Tr, bs: BuildingSavings) -> FitQuality:
    unc = bs.uncertainty
    forms = [
        (tr(f"segment.{m.segment}") + " " if m.segment != "all" else "") + tr(f"form.{m.form}")
        for m in bs.model
    ]
    return FitQuality(
        n=bs.fit.n if bs.fit is not None else bs.baseline_days_used,
        r2=bs.fit.r2 if bs.fit is not None else None,
        cv_rmse=percent(bs.fit.cv_rmse) if bs.fit is not None else None,
        nmbe=percent(bs.fit.nmbe) if bs.fit is not None else None,
        cv_rmse_limit=percent(bs.limits.cv_rmse_max),
        nmbe_limit=percent(bs.limits.nmbe_abs_max),
        # The name without its parenthesis: the limits themselves are printed beside it.
        limit_name=bs.limits.name.split(" (")[0],
        verdict=bs.verdict,
        verdict_text=tr(f"verdict.{bs.verdict}"),
        uncertainty=unc.kwh if unc is not None else None,
        uncertainty_unit="kWh",
        confidence=percent(unc.confidence) if unc is not None else None,
        model="; ".join(forms) or None,
    )


def _building(tr: Tr, rep: SavingsReport, bs: BuildingSavings, cur: str) -> SectionView:
    q = fit_quality(tr, bs)
    notes = [
        tr(
            "savings.baseline_text",
            first=rep.baseline.first,
            last=rep.baseline.last,
            days=rep.baseline.days,
        )
    ]
    if bs.status != "ok" or bs.savings_kwh is None:
        why = "; ".join(bs.warnings[:MAX_NOTES]) or tr("section.no_data")
        notes.append(tr("savings.status_insufficient", why=why))
        return SectionView(
            key="savings",
            title=tr("section.savings"),
            available=True,
            fit=q,
            notes=notes,
            charts=[_chart(tr, bs)] if bs.daily else [],
        )
    detail = tr(
        "savings.saved_detail",
        unc=tr.qty(q.uncertainty, "kWh", 0),
        conf=tr.pct(q.confidence, 0),
        verdict=q.verdict_text,
    )
    figures = [
        figure(
            tr,
            "savings.saved",
            tr("savings.saved"),
            bs.savings_kwh,
            "kWh",
            digits=0,
            detail=detail,
            status="ok" if bs.verdict == "pass" else "warn",
        ),
        figure(
            tr,
            "savings.saved_pct",
            tr("savings.saved_pct"),
            percent(bs.savings_fraction),
            "%",
            detail=f"{tr('savings.cost')} {tr.qty(bs.savings_money, cur, 0)}"
            if bs.savings_money is not None
            else None,
        ),
        figure(
            tr,
            "savings.predicted_total",
            tr("savings.predicted_total"),
            bs.predicted_kwh,
            "kWh",
            digits=0,
        ),
        figure(
            tr,
            "savings.metered_total",
            tr("savings.metered_total"),
            bs.metered_kwh,
            "kWh",
            digits=0,
        ),
    ]
    notes.extend(bs.warnings[:MAX_NOTES])
    return SectionView(
        key="savings",
        title=tr("section.savings"),
        available=True,
        figures=figures,
        fit=q,
        charts=[_chart(tr, bs)],
        notes=notes,
    )


def _site(tr: Tr, rep: SavingsReport, cur: str) -> SectionView:
    if not rep.buildings:
        return SectionView(
            key="savings",
            title=tr("section.savings"),
            available=True,
            notes=[tr("savings.no_buildings")],
        )
    t = rep.total
    conf = tr.pct(percent(rep.confidence), 0)
    counted = [b for b in rep.buildings if b.savings_kwh is not None]
    figures = []
    if t.savings_kwh is not None:
        figures = [
            figure(
                tr,
                "savings.saved",
                tr("savings.saved"),
                t.savings_kwh,
                "kWh",
                digits=0,
                detail=f"± {tr.qty(t.uncertainty_kwh, 'kWh', 0)} · "
                + tr("savings.total_detail", conf=conf),
                # The total is only as good as its weakest building.
                status="ok" if all(b.verdict == "pass" for b in counted) else "warn",
            ),
            figure(
                tr, "savings.saved_pct", tr("savings.saved_pct"), percent(t.savings_fraction), "%"
            ),
            figure(tr, "savings.cost", tr("savings.cost"), t.savings_money, cur, digits=0),
        ]
    return SectionView(
        key="savings",
        title=tr("section.savings"),
        available=True,
        figures=figures,
        tables=[_per_building(tr, rep)],
        notes=[
            tr(
                "savings.baseline_text",
                first=rep.baseline.first,
                last=rep.baseline.last,
                days=rep.baseline.days,
            ),
            *_limits(tr, rep),
        ],
    )


def _limits(tr: Tr, rep: SavingsReport) -> list[str]:
    """The calibration limits the verdicts of the table were judged against, once each."""
    seen: dict[str, str] = {}
    for bs in rep.buildings:
        q = fit_quality(tr, bs)
        text = tr(
            "savings.limit_text",
            name=q.limit_name,
            cv=tr.pct(q.cv_rmse_limit, 0),
            nmbe=tr.pct(q.nmbe_limit, 0),
        )
        seen.setdefault(text, f"{tr('savings.limit')}: {text}")
    return list(seen.values())


def _per_building(tr: Tr, rep: SavingsReport) -> Table:
    rows: list[list[str | float | int | None]] = []
    for bs in rep.buildings:
        q = fit_quality(tr, bs)
        rows.append(
            [
                bs.name,
                bs.savings_kwh,
                q.uncertainty,
                q.n,
                q.r2,
                q.cv_rmse,
                q.nmbe,
                q.verdict_text,
            ]
        )
    return Table(
        key="savings.buildings",
        title=tr("savings.per_building"),
        columns=[
            Column(key="building", label=tr("report.building"), digits=0),
            Column(key="savings_kwh", label=tr("savings.saved"), unit="kWh", digits=0),
            Column(key="uncertainty_kwh", label="±", unit="kWh", digits=0),
            Column(key="n", label="n", digits=0),
            Column(key="r2", label="R²", digits=3),
            Column(key="cv_rmse", label="CV(RMSE)", unit="%", digits=1),
            Column(key="nmbe", label="NMBE", unit="%", digits=2),
            Column(key="verdict", label=tr("savings.verdict"), digits=0),
        ],
        rows=rows,
    )


def _chart(tr: Tr, bs: BuildingSavings) -> Chart:
    return chart(
        tr,
        key="savings.daily",
        kind="line",
        title=tr("savings.chart"),
        x_label=tr("axis.day"),
        y_label=tr("energy.y"),
        unit="kWh",
        categories=[d.day.isoformat() for d in bs.daily],
        series=[
            Series(
                key="predicted",
                name=tr("savings.predicted"),
                values=[d.predicted_kwh for d in bs.daily],
            ),
            Series(
                key="metered", name=tr("savings.metered"), values=[d.metered_kwh for d in bs.daily]
            ),
        ],
        digits=0,
    )
