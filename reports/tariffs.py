"""Time-of-use tariffs: the band of a local instant, the tariff and version that apply, and the
price of energy measured over intervals (../shared/domain.md, "Tariffs").

Tariffs are versioned data: an interval is priced by the version in force on its local day,
never by the one current when the report runs. An interval that straddles a band edge (or
midnight, or a version change) is split in proportion to the time on each side, since a
counter delta says nothing about when within the interval the energy was drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from config.reporting import BANDS, Band, Tariff, TariffVersion
from reports.period import add_months, local_midnight

MINUTES_PER_DAY = 24 * 60

# (first minute, end minute, band) covering a local day 0..1440 without gaps.
Segment = tuple[int, int, Band]
# (band, fraction of an interval, price); band and price are None where no version applies.
Share = tuple[Band | None, float, float | None]


def day_segments(version: TariffVersion, month: int) -> list[Segment]:
    """The bands of a local day in ``month`` as contiguous minute spans.

    Periods are applied in list order so that a later one wins where two overlap; minutes no
    period covers are flat.
    """
    minute: list[Band] = ["flat"] * MINUTES_PER_DAY
    for p in version.periods:
        if month not in p.months:
            continue
        for start, end in p.hours:
            minute[start:end] = [p.band] * (end - start)
    out: list[Segment] = []
    start = 0
    for m in range(1, MINUTES_PER_DAY + 1):
        if m == MINUTES_PER_DAY or minute[m] != minute[start]:
            out.append((start, m, minute[start]))
            start = m
    return out


def band_at(version: TariffVersion, local: datetime) -> Band:
    """The band of a site-local wall-clock time (its own fields are read; no conversion)."""
    m = local.hour * 60 + local.minute
    for start, end, band in day_segments(version, local.month):
        if start <= m < end:
            return band
    raise AssertionError("day segments cover every minute")  # pragma: no cover


def tariff_for(tariffs: Sequence[Tariff], building: str) -> Tariff | None:
    """The tariff that lists ``building``, else the first one listing no buildings."""
    for t in tariffs:
        if building in t.buildings:
            return t
    for t in tariffs:
        if not t.buildings:
            return t
    return None


def version_on(tariff: Tariff, day: date) -> TariffVersion | None:
    """The version in force on local ``day``; None before the first one takes effect."""
    found: TariffVersion | None = None
    for v in tariff.versions:  # oldest first (validated)
        if v.effective_from <= day:
            found = v
    return found


@dataclass(frozen=True, slots=True)
class Part:
    """The share of an interval's energy that falls in one band of one tariff version."""

    band: Band | None  # None when no version is in force (or no tariff): energy, no price
    kwh: float
    cost: float | None


# Columns of a ShareMatrix: the bands in BANDS order, then energy no version prices.
UNPRICED = len(BANDS)
_COLUMN: dict[Band | None, int] = {b: i for i, b in enumerate(BANDS)}


@dataclass(frozen=True, slots=True)
class ShareMatrix:
    """:meth:`Pricer.shares` of many intervals at once, one row per interval.

    ``frac[i, k]`` is the fraction of interval ``i`` in column ``k`` (a band of ``BANDS``, or
    ``UNPRICED``) and ``price[i, k]`` its price; ``rank[i, k]`` is the position of that share
    among the interval's shares (time order), so sums can be taken in the order a loop over
    :meth:`Pricer.shares` would take them.
    """

    frac: npt.NDArray[np.float64]
    price: npt.NDArray[np.float64]
    rank: npt.NDArray[np.int64]

    def take(self, rows: npt.NDArray[np.int64] | slice) -> ShareMatrix:
        return ShareMatrix(self.frac[rows], self.price[rows], self.rank[rows])


@dataclass(frozen=True, slots=True)
class _Piece:
    start: float  # POSIX seconds: float arithmetic keeps pricing months of intervals cheap
    end: float
    band: Band | None
    price: float | None


class Pricer:
    """Splits and prices intervals with one tariff in one time zone; caches each local day."""

    def __init__(self, tariff: Tariff | None, tz: ZoneInfo) -> None:
        self.tariff = tariff
        self.tz = tz
        self._days: dict[date, list[_Piece]] = {}
        # day_segments of a version and month: the same for every day of the month.
        self._segments: dict[tuple[int, int], list[Segment]] = {}

    def _day(self, day: date) -> list[_Piece]:
        hit = self._days.get(day)
        if hit is not None:
            return hit
        version = None if self.tariff is None else version_on(self.tariff, day)
        start = local_midnight(day, self.tz).timestamp()
        end = local_midnight(day + timedelta(days=1), self.tz).timestamp()
        if version is None:
            pieces = [_Piece(start, end, None, None)]
        else:
            pieces = [
                _Piece(self._edge(day, s), self._edge(day, e), band, version.prices[band])
                for s, e, band in self._month_segments(version, day.month)
            ]
        self._days[day] = pieces
        return pieces

    def _month_segments(self, version: TariffVersion, month: int) -> list[Segment]:
        key = (id(version), month)
        hit = self._segments.get(key)
        if hit is None:
            hit = self._segments[key] = day_segments(version, month)
        return hit

    def _edge(self, day: date, minute: int) -> float:
        if minute >= MINUTES_PER_DAY:
            return local_midnight(day + timedelta(days=1), self.tz).timestamp()
        local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self.tz)
        return local.timestamp()

    def shares(self, start: datetime, end: datetime) -> list[Share]:
        """How ``[start, end)`` divides among bands: (band, fraction of the time, price).

        The same for every meter on the same tariff, so a report computes it once per interval.
        """
        t0 = start.timestamp()
        t1 = end.timestamp()
        total = t1 - t0
        day = start.astimezone(self.tz).date()
        if total <= 0:
            p = next((p for p in self._day(day) if p.start <= t0 < p.end), None)
            return [(None, 1.0, None) if p is None else (p.band, 1.0, p.price)]
        out: list[Share] = []
        while True:
            pieces = self._day(day)
            for p in pieces:
                overlap = min(t1, p.end) - max(t0, p.start)
                if overlap > 0:
                    out.append((p.band, overlap / total, p.price))
            if pieces[-1].end >= t1:
                return out
            day += timedelta(days=1)

    def matrix(self, bounds: Sequence[tuple[datetime, datetime]]) -> ShareMatrix:
        """:meth:`shares` of every ``(start, end)`` of ``bounds`` (sorted, non-overlapping) as
        a :class:`ShareMatrix`: the same fractions, computed with arrays over the pieces of
        the days the bounds cover."""
        n = len(bounds)
        cols = UNPRICED + 1
        frac = np.zeros((n, cols))
        price = np.zeros((n, cols))
        rank = np.zeros((n, cols), dtype=np.int64)
        if n == 0:
            return ShareMatrix(frac, price, rank)
        t0 = np.fromiter((a.timestamp() for a, _ in bounds), dtype=np.float64, count=n)
        t1 = np.fromiter((b.timestamp() for _, b in bounds), dtype=np.float64, count=n)
        total = t1 - t0
        day = bounds[0][0].astimezone(self.tz).date()
        last = bounds[-1][1].astimezone(self.tz).date()
        pieces: list[_Piece] = []
        while day <= last:
            pieces.extend(self._day(day))
            day += timedelta(days=1)
        p0 = np.array([p.start for p in pieces])
        p1 = np.array([p.end for p in pieces])
        pcol = np.array([_COLUMN[p.band] if p.price is not None else UNPRICED for p in pieces])
        pprice = np.array([0.0 if p.price is None else p.price for p in pieces])
        first = np.searchsorted(p1, t0, "right")  # first piece ending after the start
        stop = np.searchsorted(p0, t1, "left")  # pieces before this begin before the end
        rows = np.arange(n)
        seen = np.zeros(n, dtype=np.int64)
        for k in range(int((stop - first).max(initial=0))):
            j = first + k
            ok = (j < stop) & (total > 0)
            jj = np.minimum(j, len(pieces) - 1)
            overlap = np.minimum(t1, p1[jj]) - np.maximum(t0, p0[jj])
            ok &= overlap > 0
            r, c = rows[ok], pcol[jj[ok]]
            fresh = frac[r, c] == 0
            rank[r[fresh], c[fresh]] = seen[r[fresh]]
            seen[r] += 1
            np.add.at(frac, (r, c), overlap[ok] / total[ok])
            price[r, c] = pprice[jj[ok]]
        for i in np.flatnonzero(total <= 0).tolist():  # an empty interval: the piece it is in
            for k, (band, f, pr) in enumerate(self.shares(*bounds[i])):
                col = UNPRICED if pr is None else _COLUMN[band]
                frac[i, col], price[i, col], rank[i, col] = f, 0.0 if pr is None else pr, k
        return ShareMatrix(frac, price, rank)

    def split(self, start: datetime, end: datetime, kwh: float) -> list[Part]:
        """``kwh`` used over ``[start, end)`` by band, spread evenly over the interval."""
        return [
            Part(band, kwh * f, None if price is None else kwh * f * price)
            for band, f, price in self.shares(start, end)
        ]


@dataclass(slots=True)
class BandTotals:
    """Energy and money per band; energy no version prices is kept apart as unpriced."""

    kwh: dict[Band, float] = field(default_factory=dict)
    cost: dict[Band, float] = field(default_factory=dict)
    unpriced_kwh: float = 0.0

    def add(self, part: Part) -> None:
        if part.band is None or part.cost is None:
            self.unpriced_kwh += part.kwh
            return
        self.kwh[part.band] = self.kwh.get(part.band, 0.0) + part.kwh
        self.cost[part.band] = self.cost.get(part.band, 0.0) + part.cost

    def add_kwh(self, band: Band | None, kwh: float, price: float | None) -> None:
        if band is None or price is None:
            self.unpriced_kwh += kwh
            return
        self.kwh[band] = self.kwh.get(band, 0.0) + kwh
        self.cost[band] = self.cost.get(band, 0.0) + kwh * price

    def merge(self, other: BandTotals) -> None:
        for band, v in other.kwh.items():
            self.kwh[band] = self.kwh.get(band, 0.0) + v
        for band, v in other.cost.items():
            self.cost[band] = self.cost.get(band, 0.0) + v
        self.unpriced_kwh += other.unpriced_kwh

    @property
    def total_kwh(self) -> float:
        return sum(self.kwh.values()) + self.unpriced_kwh

    @property
    def total_cost(self) -> float:
        return sum(self.cost.values())

    def bands(self) -> list[Band]:
        return [b for b in BANDS if b in self.kwh]


def band_totals(
    sm: ShareMatrix, rows: npt.NDArray[np.int64], kwh: npt.NDArray[np.float64]
) -> BandTotals:
    """``kwh[i]`` used over interval ``rows[i]`` of ``sm``, priced: what adding each interval's
    :meth:`Pricer.split` to a :class:`BandTotals` in that order gives (the same sums, added in
    the same order, bands first met first)."""
    if len(rows) == 0:
        return BandTotals()
    return band_totals_columns(sm.take(rows), kwh[:, None], np.ones((len(rows), 1), bool))[0]


def band_totals_columns(
    sm: ShareMatrix, kwh: npt.NDArray[np.float64], present: npt.NDArray[np.bool_]
) -> list[BandTotals]:
    """:func:`band_totals` of many meters at once: ``kwh[i, j]`` is meter ``j``'s use over
    interval ``i`` of ``sm``, counted where ``present[i, j]``.

    Sums run over axis 0 of C-ordered arrays, which numpy adds row after row: the same order,
    and so the same last bits, as adding interval after interval.
    """
    n, m = kwh.shape
    out = [BandTotals() for _ in range(m)]
    if n == 0 or m == 0:
        return out
    parts = np.where(present, kwh, 0.0)[:, :, None] * sm.frac[:, None, :]
    kwh_sum = parts.sum(axis=0)
    cost_sum = (parts * sm.price[:, None, :]).sum(axis=0)
    seen = np.asarray(present[:, :, None] & (sm.frac > 0)[:, None, :], dtype=bool)
    met = np.asarray(seen.any(axis=0), dtype=bool)
    # The first interval a band is met in, then its place among that interval's shares.
    first = seen.argmax(axis=0)
    order = first * (UNPRICED + 1) + np.take_along_axis(sm.rank, first, axis=0)
    for j in np.flatnonzero(met.any(axis=1)).tolist():
        t = out[j]
        cols = np.flatnonzero(met[j]).tolist()
        for k in sorted(cols, key=lambda c: int(order[j, c])):
            if k == UNPRICED:
                t.unpriced_kwh = float(kwh_sum[j, k])
            else:
                t.kwh[BANDS[k]] = float(kwh_sum[j, k])
                t.cost[BANDS[k]] = float(cost_sum[j, k])
    return out


def price_intervals(
    tariff: Tariff | None,
    intervals: Iterable[tuple[datetime, datetime, float]],
    tz: ZoneInfo,
) -> BandTotals:
    """Price ``(start, end, kWh)`` intervals one by one, each by the version of its own day."""
    pricer = Pricer(tariff, tz)
    items = list(intervals)
    spans = sorted({(a, b) for a, b, _ in items})
    if all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)):
        # Many meters over the same hours: split each distinct interval once, with arrays.
        row = {span: i for i, span in enumerate(spans)}
        rows = np.fromiter((row[(a, b)] for a, b, _ in items), dtype=np.int64, count=len(items))
        kwh = np.fromiter((k for _, _, k in items), dtype=np.float64, count=len(items))
        return band_totals(pricer.matrix(spans), rows, kwh)
    out = BandTotals()
    for start, end, kwh_ in items:
        for part in pricer.split(start, end, kwh_):
            out.add(part)
    return out


@dataclass(frozen=True, slots=True)
class Charges:
    fixed: float
    demand: float


def monthly_charges(tariff: Tariff, year: int, month: int, max_kw: float) -> Charges:
    """Fixed and demand charges of a calendar month with ``max_kw`` its highest 15-min mean.

    When a version takes effect mid-month each version's monthly charges count for the share of
    the month's days it is in force; days before the first version carry no charge.
    """
    first = date(year, month, 1)
    ny, nm = add_months(year, month, 1)
    days = (date(ny, nm, 1) - first).days
    fixed = 0.0
    demand_price = 0.0
    for i in range(days):
        v = version_on(tariff, first + timedelta(days=i))
        if v is not None:
            fixed += v.fixed_per_month / days
            demand_price += v.demand_per_kw_month / days
    return Charges(fixed=fixed, demand=demand_price * max_kw)
