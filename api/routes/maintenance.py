"""GET /api/v1/reports/maintenance: repair KPIs from the ticket database."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from api.context import Context
from api.errors import invalid_parameter
from reports.maintenance import MaintenanceReport, maintenance_report
from reports.period import Period

_DAY_HELP = "Local date YYYY-MM-DD"


def _day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise invalid_parameter(name, f"{text!r} is not a date as YYYY-MM-DD") from None


def period_of(ctx: Context, month: str | None, start: str | None, end: str | None) -> Period:
    """``month``, or ``start`` and ``end`` (local days, end exclusive), or the current month."""
    if month is not None:
        if start is not None or end is not None:
            raise invalid_parameter("month", "give either month or start and end, not both")
        try:
            return Period.parse_month(month, ctx.tz)
        except ValueError as e:
            raise invalid_parameter("month", str(e)) from None
    if start is None and end is None:
        today = ctx.clock().astimezone(ctx.tz).date()
        return Period.month(today.year, today.month, ctx.tz)
    if start is None or end is None:
        raise invalid_parameter("end" if end is None else "start", "give both start and end")
    first, stop = _day("start", start), _day("end", end)
    if stop <= first:
        raise invalid_parameter("end", "must be after start")
    return Period.days_between(first, stop, ctx.tz)


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])

    @r.get(
        "/reports/maintenance",
        response_model=MaintenanceReport,
        summary="Repair KPIs: on-time rate, MTTA, MTTR, backlog, repeat repairs",
        description=(
            "From the ticket database, replayed as it stood at the period end (now, for a "
            "period still running). Timeliness and repair time count repairs resolved in the "
            "period; a reopened ticket is a new repair with its own due time."
        ),
    )
    def maintenance(
        month: Annotated[
            str | None,
            Query(description="Month as YYYY-MM; default the current month", examples=["2024-03"]),
        ] = None,
        start: Annotated[str | None, Query(description=f"First day ({_DAY_HELP})")] = None,
        end: Annotated[
            str | None, Query(description=f"Day after the last ({_DAY_HELP}), exclusive")
        ] = None,
        building: Annotated[str | None, Query(description="Only this building")] = None,
    ) -> MaintenanceReport:
        period = period_of(ctx, month, start, end)
        if building is not None and building not in ctx.buildings:
            raise invalid_parameter("building", f"unknown building {building!r}")
        return maintenance_report(ctx.reports, period, building=building)

    return r
