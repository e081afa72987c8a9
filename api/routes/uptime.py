"""GET /api/v1/reports/uptime: time-weighted availability of elevators and other assets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.context import Context
from api.params import END_HELP, MONTH_HELP, START_HELP, known_building, report_period
from reports.uptime import UptimeReport, uptime_report


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])

    @r.get(
        "/reports/uptime",
        response_model=UptimeReport,
        summary="Availability per elevator, intact rates per building and site",
        description=(
            "Time is UP, DOWN, PLANNED or UNKNOWN per asset from service mode, fault code and "
            "entrapment; each sample covers at most gap_polls x the poll interval, and "
            "uncovered time is UNKNOWN (never up, never down). A = up / (up + down) with "
            "bounds, coverage, MTBF, MTTR, downtime by cause and entrapment rescue times. A "
            "period still running ends now."
        ),
    )
    def uptime(
        month: Annotated[str | None, Query(description=MONTH_HELP, examples=["2024-03"])] = None,
        start: Annotated[str | None, Query(description=START_HELP)] = None,
        end: Annotated[str | None, Query(description=END_HELP)] = None,
        building: Annotated[str | None, Query(description="Only this building")] = None,
    ) -> UptimeReport:
        period = report_period(ctx, month, start, end)
        return uptime_report(ctx.reports, period, building=known_building(ctx, building))

    return r
