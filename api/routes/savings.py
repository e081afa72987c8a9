"""GET /api/v1/reports/savings: verified energy savings against a weather-normalised baseline.

Thin: parameters in, ``reports.savings.savings_report`` out. The reporting period is a month
(``month=YYYY-MM``) or ``start`` .. ``end`` (local dates, ``end`` exclusive like every other
report); without either it is the last full month. The baseline defaults as the report
explains (``reports.savings`` settings, else the 365 days before the reporting period).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from api.context import Context
from api.errors import ApiError, invalid_parameter
from reports.period import Period
from reports.savings import SavingsConfigError, SavingsReport, savings_report
from reports.weather import WeatherError

MAX_DAYS = 3 * 366  # per period: longer spans are a different question than "what did we save"
_YEARS = (1900, 2199)  # keeps the default baseline (a year earlier) inside datetime's range
_DATE_HELP = "Local date (YYYY-MM-DD) in the site time zone"


def _date(name: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise invalid_parameter(name, f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _span(
    first_name: str, first: date | None, end_name: str, end: date | None
) -> tuple[date, date] | None:
    """Both bounds or neither; ``end`` exclusive and after ``first``; at most MAX_DAYS."""
    if first is None and end is None:
        return None
    if first is None or end is None:
        missing = first_name if first is None else end_name
        other = end_name if first is None else first_name
        raise invalid_parameter(missing, f"give {first_name} and {end_name} together ({other} "
                                "was given)")  # fmt: skip
    for name, d in ((first_name, first), (end_name, end)):
        if not _YEARS[0] <= d.year <= _YEARS[1]:
            raise invalid_parameter(name, f"must be between {_YEARS[0]} and {_YEARS[1]}")
    if end <= first:
        raise invalid_parameter(end_name, f"must be after {first_name} (it is exclusive)")
    if (end - first).days > MAX_DAYS:
        raise invalid_parameter(end_name, f"at most {MAX_DAYS} days after {first_name}")
    return first, end


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
        tz = ctx.tz
        span = _span("start", _date("start", start), "end", _date("end", end))
        if month is not None and span is not None:
            raise invalid_parameter("month", "give either month or start/end, not both")
        if month is not None:
            try:
                reporting = Period.parse_month(month, tz)
            except ValueError as e:
                raise invalid_parameter("month", str(e)) from None
            if not _YEARS[0] <= reporting.first.year <= _YEARS[1]:
                raise invalid_parameter("month", f"must be between {_YEARS[0]} and {_YEARS[1]}")
        elif span is not None:
            reporting = Period.days_between(span[0], span[1], tz)
        else:
            today = ctx.clock().astimezone(tz).date()
            reporting = Period.month(today.year, today.month, tz).previous_month()
        b_span = _span(
            "baseline_start",
            _date("baseline_start", baseline_start),
            "baseline_end",
            _date("baseline_end", baseline_end),
        )
        baseline = Period.days_between(b_span[0], b_span[1], tz) if b_span is not None else None
        if building is not None and building not in ctx.buildings:
            raise invalid_parameter("building", f"unknown building {building!r}")
        try:
            return savings_report(ctx.reports, reporting, baseline=baseline, building=building)
        except WeatherError as e:  # a bad temperature CSV: the message names file and line
            raise ApiError(422, "invalid_weather_data", str(e)) from None
        except SavingsConfigError as e:
            raise ApiError(422, "invalid_config", str(e)) from None

    return r
