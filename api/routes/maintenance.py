"""GET /api/v1/reports/maintenance: repair KPIs from the ticket database."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.context import Context
from api.params import END_HELP, MONTH_HELP, START_HELP, known_building, report_period
from reports.maintenance import MaintenanceReport, maintenance_report


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
        month: Annotated[str | None, Query(description=MONTH_HELP, examples=["2024-03"])] = None,
        start: Annotated[str | None, Query(description=START_HELP)] = None,
        end: Annotated[str | None, Query(description=END_HELP)] = None,
        building: Annotated[str | None, Query(description="Only this building")] = None,
    ) -> MaintenanceReport:
        period = report_period(ctx, month, start, end)
        building = known_building(ctx, building)
        return maintenance_report(ctx.reports, period, building=building)

    return r
