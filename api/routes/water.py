"""GET /api/v1/reports/water: water use, minimum night flow, leak episodes and unaccounted water."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.context import Context
from api.params import END_HELP, MONTH_HELP, START_HELP, known_building, report_period
from reports.water import WaterReport, water_report


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])

    @r.get(
        "/reports/water",
        response_model=WaterReport,
        summary="Water use per meter and building, night flow, leaks, unaccounted water",
        description=(
            "Use per meter and local day from the volume counter; building totals from the "
            "mains, unaccounted water = main - sub-meters. Minimum night flow per meter and "
            "night, leak episodes (opened by high night flow or flow that never reaches zero, "
            "cleared by clean nights) with estimated loss and cost. A period still running "
            "ends now."
        ),
    )
    def water(
        month: Annotated[str | None, Query(description=MONTH_HELP, examples=["2024-03"])] = None,
        start: Annotated[str | None, Query(description=START_HELP)] = None,
        end: Annotated[str | None, Query(description=END_HELP)] = None,
        building: Annotated[str | None, Query(description="Only this building")] = None,
    ) -> WaterReport:
        period = report_period(ctx, month, start, end)
        return water_report(ctx.reports, period, building=known_building(ctx, building))

    return r
