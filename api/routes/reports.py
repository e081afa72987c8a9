"""GET /api/v1/reports/energy: kWh per power meter per window, with data quality; with
``month=`` the full energy and cost report (time-of-use cost, demand, base load, comparisons,
budget, daily series).

Use comes from ``Store.counter_delta`` on the import-energy counter, so read glitches, resets
and rollover are handled as on every other report (store/counters.py). The computing is in
``reports.energy``; this module checks parameters.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from api.context import Context
from api.errors import ApiError, ErrorDetail, invalid_parameter
from reports.energy import (
    EVERY_LENGTH,
    RANGE_EVERY,
    EnergyReport,
    Every,
    WindowLength,
    energy_range,
    energy_report,
)
from reports.period import Period

log = logging.getLogger(__name__)

MAX_WINDOWS = 5000
_MONTH_EVERY: dict[str, Every] = {v: k for k, v in EVERY_LENGTH.items()}

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_WHEN_HELP = (
    "ISO 8601 date (local midnight in the site time zone) or date-time; a date-time without "
    "an offset is site-local. Give start and end, or month"
)
_MONTH_HELP = (
    "A calendar month, YYYY-MM, in the site time zone: the full energy and cost report "
    "(cost by time-of-use band, fixed and demand charges, peak demand, base load, comparisons "
    "with the previous month and the same month last year, budget, daily series). A month "
    "still running ends now. Not together with start/end"
)
_EVERY_HELP = (
    "Window length of each meter's windows: 15m, 1h or 1d with start/end; 1d, 1w (ISO weeks "
    "from Monday) or 1mo with month"
)


def parse_when(name: str, text: str, tz: ZoneInfo) -> datetime:
    """An ISO 8601 date or date-time; dates and offset-less times are site-local."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise invalid_parameter(
            name,
            f"{text!r} is not an ISO 8601 date (2024-03-01) or date-time "
            "(2024-03-01T08:00:00+08:00)",
        ) from None
    t = t.replace(tzinfo=tz) if t.tzinfo is None else t
    # Far-off dates would overflow datetime arithmetic (look-back, window ends) into a 500.
    if not _EARLIEST <= t < _LATEST:
        raise invalid_parameter(name, f"must be between {_EARLIEST.year} and {_LATEST.year}")
    return t


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])
    meters = [d for d in ctx.config.devices if d.kind == "power_meter"]

    @r.get(
        "/reports/energy",
        response_model=EnergyReport,
        summary="kWh per meter and window; with month= energy cost, demand and comparisons",
    )
    def energy(
        start: Annotated[str | None, Query(description=_WHEN_HELP, examples=["2024-03-01"])] = None,
        end: Annotated[str | None, Query(description=_WHEN_HELP, examples=["2024-04-01"])] = None,
        month: Annotated[str | None, Query(description=_MONTH_HELP, examples=["2024-03"])] = None,
        every: Annotated[WindowLength, Query(description=_EVERY_HELP, examples=["1d"])] = "1d",
        building: Annotated[
            str | None, Query(description="Only this building", examples=["A"])
        ] = None,
        device: Annotated[
            str | None,
            Query(description="Only this power meter (start/end only)", examples=["pm-1"]),
        ] = None,
    ) -> EnergyReport:
        if building is not None and building not in ctx.buildings:
            raise invalid_parameter("building", f"unknown building {building!r}")
        if month is not None:
            if start is not None or end is not None:
                given = "start" if start is not None else "end"
                raise invalid_parameter(
                    "month", f"give either month or start and end, not month and {given}"
                )
            if device is not None:
                raise invalid_parameter(
                    "device", "works with start/end only; month= reports every meter"
                )
            if every not in _MONTH_EVERY:
                raise invalid_parameter(
                    "every", f"with month use 1d, 1w or 1mo; {every} windows need start/end"
                )
            try:
                period = Period.parse_month(month, ctx.tz)
            except ValueError as exc:
                raise invalid_parameter("month", str(exc)) from None
            if not _EARLIEST <= period.start < _LATEST:
                raise invalid_parameter(
                    "month", f"must be between {_EARLIEST.year} and {_LATEST.year}"
                )
            return energy_report(ctx.reports, period, every=_MONTH_EVERY[every], building=building)

        if start is None or end is None:
            missing = [n for n, v in (("start", start), ("end", end)) if v is None]
            why = "required: give start and end, or month=YYYY-MM"
            raise ApiError(
                400,
                "invalid_parameter",
                f"invalid parameter{'s' if len(missing) > 1 else ''} "
                f"{' and '.join(repr(n) for n in missing)}: {why}",
                [ErrorDetail(parameter=n, location="query", message=why) for n in missing],
            )
        t0 = parse_when("start", start, ctx.tz)
        t1 = parse_when("end", end, ctx.tz)
        if t1 <= t0:
            raise invalid_parameter("end", "must be after start")
        if every not in RANGE_EVERY:
            raise invalid_parameter(
                "every", f"with start/end use 15m, 1h or 1d; {every} windows need month="
            )
        count = -(-(t1 - t0) // RANGE_EVERY[every])
        if count > MAX_WINDOWS:
            raise invalid_parameter(
                "every", f"{count} windows of {every}; at most {MAX_WINDOWS} per report"
            )
        if device is not None and device not in {m.id for m in meters}:
            raise invalid_parameter("device", f"{device!r} is not a configured power meter")
        chosen = [
            m
            for m in meters
            if (building is None or m.location.building == building)
            and (device is None or m.id == device)
        ]
        return energy_range(ctx.reports, t0, t1, every, chosen)

    return r
