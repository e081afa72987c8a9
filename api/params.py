"""Query parameters every report route shares: the period (month, or start and end days) and
the building, checked the same way everywhere so a mistake reads the same on every report."""

from __future__ import annotations

from datetime import date
from typing import Literal

from api.context import Context
from api.errors import invalid_parameter
from reports.period import Period

MAX_DAYS = 366  # a report reads every sample of the period: bound the work one request asks
YEARS = (1900, 2199)  # keeps look-backs and comparisons (a year earlier) inside datetime's range
MONTH_HELP = "Month as YYYY-MM; default the current month"
START_HELP = "First local day as YYYY-MM-DD (with end, instead of month)"
END_HELP = "Local day after the last one, YYYY-MM-DD (exclusive)"


def _in_years(name: str, d: date) -> None:
    if not YEARS[0] <= d.year <= YEARS[1]:
        raise invalid_parameter(name, f"must be between {YEARS[0]} and {YEARS[1]}")


def _day(name: str, text: str) -> date:
    try:
        d = date.fromisoformat(text.strip())
    except ValueError:
        raise invalid_parameter(name, f"{text!r} is not a date as YYYY-MM-DD") from None
    _in_years(name, d)
    return d


def day_span(
    ctx: Context,
    first_name: str,
    first: str | None,
    end_name: str,
    end: str | None,
    max_days: int = MAX_DAYS,
) -> Period | None:
    """Local days ``[first, end)`` from two parameters given together, or None for neither."""
    if first is None and end is None:
        return None
    if first is None or end is None:
        raise invalid_parameter(
            end_name if end is None else first_name,
            f"give both {first_name} and {end_name} together",
        )
    a, b = _day(first_name, first), _day(end_name, end)
    if b <= a:
        raise invalid_parameter(end_name, f"must be after {first_name} ({end_name} is exclusive)")
    if (b - a).days > max_days:
        raise invalid_parameter(end_name, f"at most {max_days} days per report")
    return Period.days_between(a, b, ctx.tz)


def report_period(
    ctx: Context,
    month: str | None,
    start: str | None,
    end: str | None,
    *,
    default: Literal["current", "previous"] = "current",
    max_days: int = MAX_DAYS,
) -> Period:
    """``month``, or ``start`` and ``end`` (local days, end exclusive), or by default the
    current month (``previous``: the last full month)."""
    if month is not None:
        if start is not None or end is not None:
            raise invalid_parameter("month", "give either month or start and end, not both")
        try:
            period = Period.parse_month(month, ctx.tz)
        except ValueError as e:
            raise invalid_parameter("month", str(e)) from None
        _in_years("month", period.first)
        return period
    span = day_span(ctx, "start", start, "end", end, max_days)
    if span is not None:
        return span
    today = ctx.clock().astimezone(ctx.tz).date()
    current = Period.month(today.year, today.month, ctx.tz)
    return current if default == "current" else current.previous_month()


def known_building(ctx: Context, building: str | None) -> str | None:
    if building is not None and building not in ctx.buildings:
        raise invalid_parameter("building", f"unknown building {building!r}")
    return building
