"""Query parameters every report route shares: the period (month, or start and end days) and
the building, checked the same way everywhere so a mistake reads the same on every report."""

from __future__ import annotations

from datetime import date

from api.context import Context
from api.errors import invalid_parameter
from reports.period import Period

MAX_DAYS = 366  # a report reads every sample of the period: bound the work one request asks
MONTH_HELP = "Month as YYYY-MM; default the current month"
START_HELP = "First local day as YYYY-MM-DD (with end, instead of month)"
END_HELP = "Local day after the last one, YYYY-MM-DD (exclusive)"


def _day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise invalid_parameter(name, f"{text!r} is not a date as YYYY-MM-DD") from None


def report_period(ctx: Context, month: str | None, start: str | None, end: str | None) -> Period:
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
    if (stop - first).days > MAX_DAYS:
        raise invalid_parameter("end", f"at most {MAX_DAYS} days per report")
    return Period.days_between(first, stop, ctx.tz)


def known_building(ctx: Context, building: str | None) -> str | None:
    if building is not None and building not in ctx.buildings:
        raise invalid_parameter("building", f"unknown building {building!r}")
    return building
