"""The monthly report as JSON, CSV, HTML or PDF.

JSON is the view model's dump. CSV is one long table (one row per figure, fit statistic, chart
point, table cell and meter) so it loads into a spreadsheet or pandas without knowing the
layout; it is UTF-8 with a byte-order mark because that is what makes Excel on a Chinese Windows
read it as UTF-8. HTML and PDF share one Jinja2 template; WeasyPrint prints the PDF on A4 with
the site name and month in the header and page numbers in the footer.
"""

from __future__ import annotations

import csv
import gc
import io
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from reports.monthly.charts import svg
from reports.monthly.i18n import Tr
from reports.monthly.model import (
    CellValue,
    Chart,
    Column,
    MeterCompleteness,
    MonthlyReport,
    Page,
    Table,
)

Format = Literal["html", "pdf", "csv", "json"]
FORMATS: tuple[Format, ...] = ("html", "pdf", "csv", "json")
CONTENT_TYPES: dict[Format, str] = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
# Debian's fonts-wqy-microhei: a CJK font WeasyPrint can embed (subset) into the PDF.
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
TEMPLATES = Path(__file__).parent / "templates"
CSV_HEADER = (
    "building_id",
    "building",
    "section",
    "type",
    "key",
    "label",
    "category",
    "value",
    "unit",
    "text",
)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    content_type: str
    filename: str


def check_format(fmt: str) -> Format:
    for f in FORMATS:
        if fmt == f:
            return f
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def filename(report: MonthlyReport, fmt: Format) -> str:
    return f"{report.site_id}-monthly-{report.month}-{report.lang}.{fmt}"


def render(report: MonthlyReport, fmt: str) -> Rendered:
    f = check_format(fmt)
    if f == "json":
        body = render_json(report)
    elif f == "csv":
        body = render_csv(report)
    elif f == "html":
        body = render_html(report).encode("utf-8")
    else:
        body = render_pdf(report)
    return Rendered(body, CONTENT_TYPES[f], filename(report, f))


# -- JSON -------------------------------------------------------------------------------------
def render_json(report: MonthlyReport) -> bytes:
    return report.model_dump_json(indent=2).encode("utf-8")


# -- CSV --------------------------------------------------------------------------------------
def _pages(report: MonthlyReport) -> list[Page]:
    return [report.summary, *report.buildings]


def render_csv(report: MonthlyReport) -> bytes:
    tr = Tr(report.lang, report.currency)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_HEADER)
    for page in _pages(report):
        where = [page.building or "", page.title]
        if page.overview is not None:
            _table_rows(w, where, "summary", page.overview, tr)
        for s in page.sections:
            if not s.available:
                w.writerow([*where, s.key, "not_available", s.key, s.title, "", "", "", s.reason])
                continue
            for f in s.figures:
                w.writerow(
                    [*where, s.key, "figure", f.key, f.label, "", _num(f.value), f.unit, f.text]
                )
            if s.fit is not None:
                q = s.fit
                for key, label, value, unit in (
                    ("n", tr("savings.n"), q.n, ""),
                    ("r2", tr("savings.r2"), q.r2, ""),
                    ("cv_rmse", tr("savings.cv_rmse"), q.cv_rmse, "%"),
                    ("nmbe", tr("savings.nmbe"), q.nmbe, "%"),
                    ("cv_rmse_limit", tr("savings.limit"), q.cv_rmse_limit, "%"),
                    ("nmbe_limit", tr("savings.limit"), q.nmbe_limit, "%"),
                    ("uncertainty", tr("savings.uncertainty"), q.uncertainty, q.uncertainty_unit),
                ):
                    w.writerow(
                        [
                            *where,
                            s.key,
                            "fit",
                            f"fit.{key}",
                            label,
                            q.limit_name,
                            _num(value),
                            unit,
                            "",
                        ]
                    )
                w.writerow(
                    [
                        *where,
                        s.key,
                        "fit",
                        "fit.verdict",
                        tr("savings.verdict"),
                        q.limit_name,
                        "",
                        "",
                        q.verdict_text,
                    ]
                )
            for c in s.charts:
                _chart_rows(w, where, s.key, c)
            for tb in s.tables:
                _table_rows(w, where, s.key, tb, tr)
        for m in page.completeness:
            w.writerow(
                [
                    *where,
                    "completeness",
                    "completeness",
                    f"completeness.{m.device}",
                    m.name,
                    m.metric,
                    _num(m.completeness),
                    "%",
                    f"{m.hours_with_data}/{m.hours} h",
                ]
            )
    return buf.getvalue().encode("utf-8-sig")


def _num(v: float | int | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(v) if isinstance(v, float) else str(v)


class _Rows(Protocol):
    def writerow(self, row: Iterable[object], /) -> object: ...


def _chart_rows(w: _Rows, where: list[str], section: str, c: Chart) -> None:
    for s in c.series:
        for cat, v in zip(c.categories, s.values, strict=False):
            w.writerow(
                [*where, section, "series", f"{c.key}.{s.key}", s.name, cat, _num(v), c.unit, ""]
            )


def _table_rows(w: _Rows, where: list[str], section: str, tb: Table, tr: Tr) -> None:
    for row in tb.rows:
        name = "" if row[0] is None else str(row[0])
        for col, v in zip(tb.columns[1:], row[1:], strict=False):
            value = _num(v) if not isinstance(v, str) else ""
            text = v if isinstance(v, str) else _cell(tr, v, col)
            w.writerow(
                [
                    *where,
                    section,
                    "table",
                    f"{tb.key}.{col.key}",
                    col.label,
                    name,
                    value,
                    col.unit or "",
                    text,
                ]
            )


# -- HTML -------------------------------------------------------------------------------------
def _cell(tr: Tr, v: CellValue, col: Column) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool) and col.digits == 0:
        return tr.num(v, 0)
    return tr.num(float(v), col.digits)


def css_string(text: str) -> Markup:
    """Text inside a CSS double-quoted string in a <style> element (where HTML escaping does
    not apply, so '<' is escaped the CSS way to keep '</style>' out)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return Markup(out.replace("<", "\\3C ").replace(">", "\\3E "))


def page_counter(tr: Tr) -> Markup:
    """CSS ``content`` for 'page N of M' in the report language."""
    template = tr("report.page", page="\0page\0", pages="\0pages\0")
    parts: list[str] = []
    for i, piece in enumerate(template.split("\0")):
        if i % 2:
            parts.append(f"counter({piece})")
        elif piece:
            parts.append(f'"{css_string(piece)}"')
    return Markup(" ".join(parts))


LOW_COMPLETENESS = 90.0  # % below which a meter's row is printed in red


@dataclass(frozen=True)
class MeterTables:
    """A building page's per-meter tables as printed.

    The energy section lists every power meter and the completeness block lists every meter
    again: on a building of fifty sub-meters that is a hundred rows, and the PDF's time grows
    with table cells. So the energy table also carries each power meter's completeness, and
    the completeness block lists only the meters that table does not (water meters, lifts).
    """

    energy: Table | None  # energy.meters with a completeness column, when merged
    low: frozenset[int]  # rows of ``energy`` with low completeness
    rest: list[MeterCompleteness]  # rows for the completeness block
    merged: bool


def meter_tables(page: Page, tr: Tr) -> MeterTables:
    energy = next((s for s in page.sections if s.key == "energy" and s.available), None)
    tb = None
    if energy is not None and page.building is not None:
        tb = next((t for t in energy.tables if t.key == "energy.meters" and t.row_keys), None)
    if tb is None or tb.row_keys is None or len(tb.row_keys) != len(tb.rows):
        return MeterTables(None, frozenset(), list(page.completeness), False)
    by_device = {m.device: m for m in page.completeness}
    rows: list[list[CellValue]] = []
    low: set[int] = set()
    for i, (key, row) in enumerate(zip(tb.row_keys, tb.rows, strict=True)):
        m = by_device.get(key)
        if m is None:
            rows.append([*row, None])
            continue
        # One cell rather than two: the hours only where some are missing.
        text = tr.pct(m.completeness)
        if m.hours_with_data != m.hours:
            text = tr("completeness.partial", pct=text, hours=f"{m.hours_with_data} / {m.hours}")
        rows.append([*row, text])
        if m.completeness is not None and m.completeness < LOW_COMPLETENESS:
            low.add(i)
    columns = [
        *tb.columns,
        Column(key="completeness.value", label=tr("completeness.value"), digits=1),
    ]
    merged = tb.model_copy(
        update={"title": tr("energy.meters_completeness"), "columns": columns, "rows": rows}
    )
    shown = set(tb.row_keys)
    rest = [m for m in page.completeness if m.device not in shown]
    return MeterTables(merged, frozenset(low), rest, len(rest) < len(page.completeness))


@cache
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: MonthlyReport, *, font_url: str | None = None) -> str:
    """The report as one HTML document. ``font_url`` adds an @font-face for the CJK font."""
    tr = Tr(report.lang, report.currency)
    template = _env().get_template("monthly.html.j2")
    pages = _pages(report)
    return template.render(
        r=report,
        pages=pages,
        meters=[meter_tables(p, tr) for p in pages],
        low_completeness=LOW_COMPLETENESS,
        tr=tr,
        t=tr,
        svg=lambda c, page: svg(c, tr, uid=f"{page}-{c.key}"),
        has_data=lambda c: any(v is not None for s in c.series for v in s.values),
        cell=lambda v, col: _cell(tr, v, col),
        css_string=css_string,
        page_counter=page_counter(tr),
        font_url=font_url,
        running=report.data_until.date() <= report.last_day,
    )


# -- PDF --------------------------------------------------------------------------------------
def render_pdf(report: MonthlyReport, *, font: Path = CJK_FONT) -> bytes:
    from weasyprint import HTML  # type: ignore[import-untyped]
    from weasyprint.text.fonts import FontConfiguration  # type: ignore[import-untyped]

    font_url = font.resolve().as_uri() if font.is_file() else None
    html = render_html(report, font_url=font_url)
    fonts = FontConfiguration()
    with _no_cyclic_gc():
        pdf: bytes = HTML(string=html, base_url=str(TEMPLATES)).write_pdf(font_config=fonts)
    return pdf


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while WeasyPrint works.

    A report of many meters is hundreds of thousands of live boxes and style dicts, and every
    collection walks them all: a tenth or more of the PDF's time went there. Reference counting
    still frees what it can; the cycles left are collected when the collector runs again.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
