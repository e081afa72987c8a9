"""Parameters routes share, checked the same way everywhere so a mistake reads the same on
every route: the period of a report (month, or start and end days) and the building; and, for
the alert, silence and ticket routes, the page links of a list, the end of a shelve or silence
(a time or a duration) and the API error a store's refusal becomes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal

from fastapi import Request

from alerts.tickets import ActionRefused, Page
from api.context import Context
from api.errors import ApiError, invalid_parameter
from api.routes.reports import parse_when
from config.durations import parse_duration
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


def next_page(request: Request, total: int, limit: int, offset: int) -> str | None:
    """The next page's link: this request with ``offset`` moved on; relative, so it stays
    right behind a proxy that rewrites the host."""
    if offset + limit >= total:
        return None
    url = request.url.include_query_params(limit=limit, offset=offset + limit)
    return f"{url.path}?{url.query}"


def page_fields(request: Request, page: Page[Any]) -> dict[str, Any]:
    """The fields every list answer has besides its items: total, limit, offset, next."""
    return {
        "total": page.total,
        "limit": page.limit,
        "offset": page.offset,
        "next": next_page(request, page.total, page.limit, page.offset),
    }


def end_in_body(
    ctx: Context,
    end_name: str,
    end: str | None,
    duration: str | None,
    start: datetime,
    *,
    longest: timedelta,
    example: str,
) -> datetime:
    """The end a request body gives either as a time (field ``end_name``) or as a
    ``duration`` after ``start`` (e.g. ``example``, at most ``longest``): exactly one of
    them."""
    if (end is None) == (duration is None):
        raise invalid_parameter(
            end_name, f"give either {end_name} or duration (one of them)", "body"
        )
    if end is not None:
        return parse_when(end_name, end, ctx.tz)
    assert duration is not None
    try:
        length = parse_duration(duration)
    except (ValueError, OverflowError) as e:
        raise invalid_parameter("duration", str(e), "body") from None
    if not isinstance(length, timedelta) or length <= timedelta(0):
        raise invalid_parameter(
            "duration", f"must be a positive duration such as {example}", "body"
        )
    if length > longest:
        # Checked before adding, so an absurd length cannot overflow datetime into a 500.
        raise invalid_parameter("duration", "far too long", "body")
    return start + length


def refusal_error(what: str, ident: int, e: ActionRefused) -> ApiError:
    """The API error for a store's refusal ``e`` of an action on ``what`` (e.g. "alert")
    ``ident``: 404 when there is none, 400 naming the body field at fault, else 409."""
    if e.missing:
        return ApiError(404, "not_found", f"no {what} {ident}")
    if e.parameter is not None:
        return invalid_parameter(e.parameter, str(e), "body")
    return ApiError(409, "conflict", str(e))
