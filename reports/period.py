"""Report periods in the site's local time: months, days and the comparisons people ask for.

Reports are about local calendar time (a March day in Shanghai starts at 00:00+08:00), so a
period is held as aware local datetimes; day bounds are computed in local time, so a day that
crosses a daylight-saving change is 23 or 25 hours long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def local_midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz)


def add_months(year: int, month: int, n: int) -> tuple[int, int]:
    k = year * 12 + (month - 1) + n
    return k // 12, k % 12 + 1


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days ``[first, last]``, i.e. ``[start, end)`` between local midnights."""

    first: date
    last: date
    tz: ZoneInfo

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError("a period ends on or after its first day")

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def month(cls, year: int, month: int, tz: ZoneInfo) -> Period:
        ny, nm = add_months(year, month, 1)
        return cls(date(year, month, 1), date(ny, nm, 1) - timedelta(days=1), tz)

    @classmethod
    def parse_month(cls, text: str, tz: ZoneInfo) -> Period:
        """``YYYY-MM``; raises ValueError with a message fit for a user."""
        m = _MONTH.match(text.strip())
        if not m:
            raise ValueError(f"expected a month as YYYY-MM (e.g. 2024-03), got {text!r}")
        return cls.month(int(m.group(1)), int(m.group(2)), tz)

    @classmethod
    def days_between(cls, start: date, end_exclusive: date, tz: ZoneInfo) -> Period:
        return cls(start, end_exclusive - timedelta(days=1), tz)

    # -- bounds -----------------------------------------------------------------------------
    @property
    def start(self) -> datetime:
        return local_midnight(self.first, self.tz)

    @property
    def end(self) -> datetime:
        return local_midnight(self.last + timedelta(days=1), self.tz)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def day_bounds(self) -> list[tuple[date, datetime, datetime]]:
        """(day, local start, local end) for every day of the period."""
        return [
            (d, local_midnight(d, self.tz), local_midnight(d + timedelta(days=1), self.tz))
            for d in self.days
        ]

    @property
    def is_month(self) -> bool:
        return (
            self.first.day == 1
            and (self.last + timedelta(days=1)).day == 1
            and ((self.last - self.first).days < 31)
        )

    @property
    def label(self) -> str:
        if self.is_month:
            return f"{self.first:%Y-%m}"
        return f"{self.first.isoformat()}..{self.last.isoformat()}"

    # -- comparisons ------------------------------------------------------------------------
    def previous_month(self) -> Period:
        y, m = add_months(self.first.year, self.first.month, -1)
        return Period.month(y, m, self.tz)

    def same_month_last_year(self) -> Period:
        return Period.month(self.first.year - 1, self.first.month, self.tz)

    def clipped(self, until: datetime) -> datetime:
        """The period's end, or ``until`` if that is earlier: a month still running ends now."""
        return min(self.end, max(self.start, until))
