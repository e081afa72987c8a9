"""GET /api/v1/reports/savings: verified energy savings against a weather-normalised baseline.

Thin: parameters in, ``reports.savings.savings_report`` out. The reporting period is a month
(``month=YYYY-MM``) or ``start`` .. ``end`` (local dates, ``end`` exclusive like every other
report); without either it is the last full month. The baseline defaults as the report
explains (``reports.savings`` settings, else the 365 days before the reporting period).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.context import Context
from api.errors import ApiError
from api.params import day_span, known_building, report_period
from reports.savings import SavingsConfigError, SavingsReport, savings_report
from reports.weather import WeatherError

MAX_DAYS = 3 * 366  # per period: longer spans are a different question than "what did we save"
_DATE_HELP = "Local date (YYYY-MM-DD) in the site time zone"


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])

    @r.get(
        "/reports/savings",
        response_model=SavingsReport,
        summary="Energy savings against a weather-normalised baseline",
    )
    def savings(
        month: Annotated[
            str | None,
            Query(description="Reporting month YYYY-MM; default the last full month"),
        ] = None,
        start: Annotated[
            str | None, Query(description=f"{_DATE_HELP}: first reporting day")
        ] = None,
        end: Annotated[
            str | None, Query(description=f"{_DATE_HELP}: day after the reporting period")
        ] = None,
        baseline_start: Annotated[
            str | None, Query(description=f"{_DATE_HELP}: first baseline day")
        ] = None,
        baseline_end: Annotated[
            str | None, Query(description=f"{_DATE_HELP}: day after the baseline")
        ] = None,
        building: Annotated[str | None, Query(description="Only this building")] = None,
    ) -> SavingsReport:
        reporting = report_period(ctx, month, start, end, default="previous", max_days=MAX_DAYS)
        baseline = day_span(
            ctx, "baseline_start", baseline_start, "baseline_end", baseline_end, MAX_DAYS
        )
        building = known_building(ctx, building)
        try:
            return savings_report(ctx.reports, reporting, baseline=baseline, building=building)
        except WeatherError as e:  # a bad temperature CSV: the message names file and line
            raise ApiError(422, "invalid_weather_data", str(e)) from None
        except SavingsConfigError as e:
            raise ApiError(422, "invalid_config", str(e)) from None

    return r
