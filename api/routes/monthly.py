"""GET /api/v1/reports/monthly: the monthly management report as JSON, CSV, HTML or PDF.

The report is built on request from the store and the ticket database (a month takes a second
or two; the PDF a few more) in a worker thread, so the event loop keeps serving.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.context import Context
from api.errors import invalid_parameter
from reports.monthly import FORMATS, MonthlyReport, build_monthly, render
from reports.monthly.i18n import LANGS
from reports.period import Period

_CONTENT: dict[str, Any] = {
    "application/json": {"schema": {"$ref": "#/components/schemas/MonthlyReport"}},
    "text/html": {"schema": {"type": "string"}},
    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
    "text/csv": {"schema": {"type": "string"}},
}


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])

    @r.get(
        "/reports/monthly",
        summary="Monthly management report (JSON, CSV, HTML or PDF)",
        description="A portfolio summary and one page per building: energy and cost, verified "
        "savings with their fit, elevator availability, water and leaks, maintenance, and data "
        "completeness per meter. A month still running is reported up to now. PDF and CSV come "
        "as attachments (Content-Disposition) named after the site, month and language.",
        response_class=Response,
        responses={200: {"model": MonthlyReport, "content": _CONTENT}},
    )
    def monthly(
        month: Annotated[str, Query(description="Month as YYYY-MM", examples=["2024-03"])],
        fmt: Annotated[str, Query(alias="format", description="json | csv | html | pdf")] = "json",
        lang: Annotated[
            str | None,
            Query(description="zh-CN | en; default: the site's language (site.language)"),
        ] = None,
    ) -> Response:
        try:
            period = Period.parse_month(month, ctx.tz)
        except ValueError as e:
            raise invalid_parameter("month", str(e)) from None
        if period.start > ctx.clock():
            raise invalid_parameter("month", f"{period.label} has not started yet")
        if fmt not in FORMATS:
            raise invalid_parameter("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
        language: str = lang if lang is not None else ctx.config.site.language
        if language not in LANGS:
            raise invalid_parameter("lang", f"{language!r} is not one of {', '.join(LANGS)}")
        report = build_monthly(ctx.reports, period, lang=language)
        out = render(report, fmt)
        headers: dict[str, str] = {"Content-Language": report.lang}
        if fmt in ("pdf", "csv"):
            headers["Content-Disposition"] = f'attachment; filename="{out.filename}"'
        return Response(out.body, media_type=out.content_type, headers=headers)

    return r
