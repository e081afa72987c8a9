"""The energy and cost report: kWh, time-of-use cost, demand, base load, comparisons, budget.

Everything is computed from ``Store.counter_delta`` on 15-minute windows from the period's
first local midnight, fetched once per rollover value for the whole period: a 15-minute grid is
what tariffs (band edges fall on quarter hours) and demand (the highest 15-minute mean kW) need,
and days, weeks and months are sums of it.

Building figures count only main meters (``Device.parent`` is None); sub-meters are listed but
their use is already inside their main's. Floors sum *leaf* meters (meters nobody hangs below),
because a main's floor is where it is installed, not what it meters. Tenants sum the topmost
meter tagged with the tenant, whose use includes its sub-meters'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from collector.planner import apply_overrides
from collector.profile import load_profile
from config.models import Device
from config.reporting import Band, Tariff
from reports.context import ReportContext
from reports.period import Period, add_months, local_midnight
from reports.tariffs import (
    BandTotals,
    Pricer,
    ShareMatrix,
    band_totals_columns,
    monthly_charges,
    tariff_for,
)
from store.base import Windows
from store.counters import CounterArrays, CounterWindow, WindowBounds

SLOT = timedelta(minutes=15)
Every = Literal["day", "week", "month"]
# How the JSON names a window length; the API's start/end mode also has 15m and 1h.
WindowLength = Literal["15m", "1h", "1d", "1w", "1mo"]
EVERY_LENGTH: dict[Every, WindowLength] = {"day": "1d", "week": "1w", "month": "1mo"}

KWH_DIGITS = 3  # Wh: finer figures are float noise of spreading deltas over windows
MONEY_DIGITS = 2
KW_DIGITS = 3
PCT_DIGITS = 2
MIN_COMPARE_COMPLETENESS = 0.9  # below it a month-on-month change would compare unlike spans


# -- output models ----------------------------------------------------------------------------
class BandUse(BaseModel):
    band: Band = Field(description="sharp | peak | flat | valley")
    kwh: float = Field(description="Energy used in the band")
    cost: float = Field(description="Money for that energy at the band's price")


class Cost(BaseModel):
    tariff: str | None = Field(description="Id of the tariff used; null when none applies")
    bands: list[BandUse] = Field(description="Energy and money per time-of-use band")
    energy: float | None = Field(
        description="Energy charge (sum of the bands); null without a tariff or data"
    )
    fixed: float | None = Field(
        default=None, description="Fixed charge of the month (buildings, month reports only)"
    )
    demand_kw: float | None = Field(
        default=None, description="Billed demand: the building's highest 15-minute mean kW"
    )
    demand: float | None = Field(
        default=None, description="Demand charge: demand_kw x the demand price (month reports)"
    )
    total: float | None = Field(description="Energy + fixed + demand charges")
    unpriced_kwh: float = Field(
        default=0.0, description="Energy on days no tariff version covers; not in the cost"
    )


class Demand(BaseModel):
    kw: float = Field(description="Highest mean power over a 15-minute interval (kWh x 4)")
    at: datetime = Field(description="Local start of that 15-minute interval")


class WindowOut(BaseModel):
    start: datetime = Field(description="Local start of the window")
    end: datetime = Field(description="Local end of the window (exclusive)")
    kwh: float | None = Field(description="Energy used in the window; null when no data")
    samples: int = Field(description="Trusted samples in the window")
    glitches: int = Field(description="Samples skipped as read glitches")
    rollovers: int = Field(description="Counter wraps at the register maximum")
    resets: int = Field(description="Drops that did not come back (reset or meter swap)")
    completeness: float | None = Field(
        default=None,
        description="month= reports: fraction of the window's 15-minute intervals holding a "
        "trusted sample, 0..1",
    )


class MeterOut(BaseModel):
    device: str
    name: str
    building: str
    floor: str = Field(default="", description="Floor label of the meter's location")
    tenant: str | None = Field(default=None, description="Tenant whose use the meter measures")
    parent: str | None = Field(
        default=None, description="Upstream meter; set for sub-meters, null for mains"
    )
    total_kwh: float | None = Field(description="Sum over the windows; null when no data")
    glitches: int
    rollovers: int
    resets: int
    completeness: float = Field(
        description="Fraction 0..1 of time slots holding a trusted sample: of the windows for "
        "start/end, of the 15-minute intervals for month="
    )
    windows: list[WindowOut]
    peak_demand: Demand | None = Field(
        default=None, description="month=: highest 15-minute mean kW; null without data"
    )
    base_load_kw: float | None = Field(
        default=None,
        description="month=: mean kW in the night hours of weekdays and all of weekend days",
    )
    cost: Cost | None = Field(default=None, description="month=: energy cost by band")


class DayOut(BaseModel):
    day: date = Field(description="Local day")
    kwh: float | None = Field(description="Energy of the building's main meters; null: no data")
    bands: list[BandUse] = Field(description="Time-of-use split of the day")
    cost: float | None = Field(description="Energy charge of the day; null without a tariff")


class Comparison(BaseModel):
    against: Literal["previous_month", "same_month_last_year"]
    month: str = Field(description="The month compared with, YYYY-MM")
    start: datetime = Field(description="Local start of the compared span")
    end: datetime = Field(
        description="Local end of the compared span: as far into that month as the report's "
        "month has run"
    )
    kwh: float | None = Field(description="Energy then; null when no data")
    cost: float | None = Field(description="Total cost then; null when no data or tariff")
    completeness: float | None = Field(
        description="Share of the compared span's 15-minute intervals with data (0..1; the "
        "least complete building for the site); null when no data"
    )
    kwh_change_pct: float | None = Field(
        description="(now - then) / then x 100; null if unknown or the compared span is less "
        "than 90% complete (a change against a partly recorded month would mislead)"
    )
    cost_change_pct: float | None = Field(
        description="(now - then) / then x 100; null as for kwh_change_pct"
    )


class BudgetOut(BaseModel):
    month: str = Field(description="YYYY-MM")
    kwh: float | None = Field(description="Budgeted energy")
    cost: float | None = Field(description="Budgeted cost")
    actual_kwh: float | None
    actual_cost: float | None
    kwh_used_pct: float | None = Field(description="actual / budget x 100")
    cost_used_pct: float | None = Field(description="actual / budget x 100")
    month_elapsed_pct: float = Field(
        description="Share of the month covered by the report (100 once it is over)"
    )


class BuildingOut(BaseModel):
    building: str
    name: str
    total_kwh: float | None = Field(
        description="Sum of the building's main meters (sub-meters are inside them)"
    )
    meters: int = Field(description="Meters of the building in this report")
    mains: list[str] = Field(default_factory=list, description="Main meters: their sum is total")
    sub_meters: list[str] = Field(
        default_factory=list, description="Sub-meters, listed but not added to the total"
    )
    floor_area_m2: float | None = Field(default=None, description="Gross floor area")
    kwh_per_m2: float | None = Field(default=None, description="total_kwh / floor_area_m2")
    completeness: float | None = Field(
        default=None, description="month=: mean completeness of the main meters"
    )
    peak_demand: Demand | None = Field(
        default=None, description="month=: highest 15-minute mean kW of the mains together"
    )
    base_load_kw: float | None = Field(default=None, description="month=: sum over the mains")
    cost: Cost | None = Field(
        default=None, description="month=: cost by band, fixed and demand charges"
    )
    daily: list[DayOut] = Field(
        default_factory=list, description="month=: energy and time-of-use split per local day"
    )
    comparisons: list[Comparison] = Field(
        default_factory=list, description="Month reports: previous month, same month last year"
    )
    budget: BudgetOut | None = Field(default=None, description="Month reports with a budget")


class FloorOut(BaseModel):
    building: str
    floor: str = Field(description="Floor label ('' when the meters give none)")
    kwh: float | None
    cost: float | None = Field(description="Energy charge; null without a tariff")
    meters: list[str] = Field(description="Leaf meters summed")


class TenantOut(BaseModel):
    tenant: str
    kwh: float | None
    cost: float | None = Field(description="Energy charge; null without a tariff")
    meters: list[str] = Field(description="Topmost meters tagged with the tenant, summed")


class EnergyReport(BaseModel):
    metric: str = Field(description="Energy counter metric")
    unit: str = Field(description="kWh")
    timezone: str = Field(description="Site time zone of the local times")
    currency: str | None = Field(default=None, description="Currency of every cost")
    month: str | None = Field(default=None, description="YYYY-MM when the report is a month")
    start: datetime
    end: datetime = Field(description="End of the data: the period's end, or now if earlier")
    complete: bool | None = Field(
        default=None, description="month=: false while the period is still running"
    )
    every: WindowLength = Field(description="Window length of the meters' windows")
    windows: int = Field(description="Windows per meter")
    total_kwh: float | None = Field(description="Sum of the buildings; null when no data")
    total_cost: float | None = Field(
        default=None, description="month=: sum of the buildings' total cost"
    )
    meters: list[MeterOut]
    buildings: list[BuildingOut]
    floors: list[FloorOut] = Field(default_factory=list, description="month=: per floor")
    tenants: list[TenantOut] = Field(default_factory=list, description="month=: per tenant")
    comparisons: list[Comparison] = Field(
        default_factory=list, description="Month reports: site totals against other months"
    )


# -- helpers shared with the API's start/end mode ------------------------------------------------
def meter_rollover(device: Device, metric: str) -> float | None:
    """The counter's wrap value from the device's profile and overrides; None when unknown."""
    src = device.source
    if src.type == "mqtt":
        return None  # no register map: the wrap value is unknown
    try:
        profile = apply_overrides(load_profile(src.profile), src.overrides)
        return profile.register(metric).rollover
    except (OSError, ValueError, KeyError):
        return None


def fetch_counters(
    rc: ReportContext, meters: Sequence[Device], windows: Windows, metric: str
) -> dict[str, dict[datetime, CounterWindow]]:
    """``counter_delta`` per device and window start: one query per rollover value."""
    groups: dict[float | None, list[str]] = defaultdict(list)
    for m in meters:
        groups[meter_rollover(m, metric)].append(m.id)
    found: dict[str, dict[datetime, CounterWindow]] = {m.id: {} for m in meters}
    for rollover, ids in groups.items():
        for cw in rc.store.counter_delta(metric, windows, ids, rollover=rollover):
            found[cw.device][cw.start] = cw
    return found


def fetch_counter_arrays(
    rc: ReportContext,
    meters: Sequence[Device],
    windows: Windows,
    metric: str,
    bounds: WindowBounds | None = None,
) -> dict[str, CounterArrays]:
    """:func:`fetch_counters` as arrays over every window (``Store.counter_delta_arrays``)."""
    groups: dict[float | None, list[str]] = defaultdict(list)
    for m in meters:
        groups[meter_rollover(m, metric)].append(m.id)
    found: dict[str, CounterArrays] = {}
    for rollover, ids in groups.items():
        found.update(
            rc.store.counter_delta_arrays(metric, windows, ids, rollover=rollover, bounds=bounds)
        )
    return found


def topmost(meters: Sequence[Device]) -> list[Device]:
    """Meters whose parent is not among ``meters``: summing them counts nothing twice."""
    ids = {m.id for m in meters}
    return [m for m in meters if m.parent is None or m.parent not in ids]


def kwh_round(v: float | None) -> float | None:
    return None if v is None else round(v, KWH_DIGITS)


def _money(v: float | None) -> float | None:
    return None if v is None else round(v, MONEY_DIGITS)


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole == 0:
        return None
    return round(part / whole * 100, PCT_DIGITS)


def _change(now: float | None, then: float | None) -> float | None:
    if now is None or then is None or then == 0:
        return None
    return round((now - then) / then * 100, PCT_DIGITS)


def _seconds(a: datetime, b: datetime) -> float:
    # Aware datetimes sharing a tzinfo subtract as wall clock; UTC keeps DST days honest.
    return (b.astimezone(UTC) - a.astimezone(UTC)).total_seconds()


# -- the 15-minute grid -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    slots: list[tuple[datetime, datetime]]  # UTC
    days: list[date]  # local day of each slot
    base: npt.NDArray[np.float64]  # share of each slot in base-load time
    hours: npt.NDArray[np.float64]
    wb: WindowBounds  # the slots as POSIX seconds, converted once for every meter
    day_runs: list[tuple[date, int, int]]  # (local day, first slot, end slot)


def _grid(start: datetime, end: datetime, tz: ZoneInfo, night: Sequence[tuple[int, int]]) -> _Grid:
    if end <= start:
        return _Grid([], [], np.zeros(0), np.zeros(0), WindowBounds.of([]), [])
    bounds = Windows(start.astimezone(UTC), end.astimezone(UTC), SLOT).bounds()
    days: list[date] = []
    base: list[float] = []
    hours: list[float] = []
    for ws, we in bounds:
        local = ws.astimezone(tz)
        days.append(local.date())
        minutes = (we - ws).total_seconds() / 60
        hours.append(minutes / 60)
        if local.weekday() >= 5:
            base.append(1.0)
            continue
        m0 = local.hour * 60 + local.minute + local.second / 60
        inside = sum(max(0.0, min(e, m0 + minutes) - max(s, m0)) for s, e in night)
        base.append(min(1.0, inside / minutes))
    runs: list[tuple[date, int, int]] = []
    for i, d in enumerate(days):
        if runs and runs[-1][0] == d:
            runs[-1] = (d, runs[-1][1], i + 1)
        else:
            runs.append((d, i, i + 1))
    return _Grid(bounds, days, np.array(base), np.array(hours), WindowBounds.of(bounds), runs)


def _seq_sum(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Sums over axis 0 added one row after another, as ``sum()`` over a list adds.

    numpy sums along a contiguous axis pairwise, which can differ from a loop in the last bit
    and so, after rounding, in a printed figure; along axis 0 of a C-ordered array it adds rows
    in order. Absent values are held as 0.0, which leaves a sum unchanged.
    """
    out: npt.NDArray[np.float64] = np.ascontiguousarray(a).sum(axis=0)
    return out


@dataclass
class _Data:
    """Meters on the grid: one column per meter, one row per slot (C order, so sums over slots
    run in slot order, see :func:`_seq_sum`)."""

    index: dict[str, int]
    present: npt.NDArray[np.bool_]  # a counter window exists (``counter_delta`` returned it)
    kwh: npt.NDArray[np.float64]  # 0.0 where absent
    samples: npt.NDArray[np.int64]
    glitches: npt.NDArray[np.int64]
    rollovers: npt.NDArray[np.int64]
    resets: npt.NDArray[np.int64]
    shares: list[ShareMatrix | None]  # per meter: its tariff's shares; None without pricing

    def col(self, device: str) -> int:
        return self.index[device]

    def total(self, j: int) -> float | None:
        if not self.present[:, j].any():
            return None
        return float(_seq_sum(self.kwh[:, j]))

    def completeness(self, j: int, a: int = 0, b: int | None = None) -> float:
        end = self.present.shape[0] if b is None else b
        if end <= a:
            return 0.0
        with_data = int(np.count_nonzero(self.present[a:end, j] & (self.samples[a:end, j] > 0)))
        return with_data / (end - a)

    def bands(self, j: int) -> BandTotals:
        """Band totals of meter ``j``: what adding every present slot's
        :meth:`Pricer.shares` one by one gives (bands listed in the order first met)."""
        return self.all_bands([j])[0]

    def all_bands(self, cols: Sequence[int] | None = None) -> list[BandTotals]:
        """:meth:`bands` of ``cols`` (every meter by default), computed per tariff at once."""
        cols = list(range(self.kwh.shape[1])) if cols is None else list(cols)
        out: dict[int, BandTotals] = {}
        by_matrix: dict[int, list[int]] = defaultdict(list)
        for j in cols:
            sm = self.shares[j]
            if sm is None:
                out[j] = BandTotals()
            else:
                by_matrix[id(sm)].append(j)
        for group in by_matrix.values():
            sm = self.shares[group[0]]
            assert sm is not None
            for a in range(0, len(group), _BAND_CHUNK):  # bounds the (slots, meters, bands) arrays
                chunk = group[a : a + _BAND_CHUNK]
                totals = band_totals_columns(sm, self.kwh[:, chunk], self.present[:, chunk])
                out.update(zip(chunk, totals, strict=True))
        return [out[j] for j in cols]

    def by_day(self, j: int, grid: _Grid) -> dict[date, BandTotals]:
        """Band totals per local day with data."""
        sm = self.shares[j]
        out: dict[date, BandTotals] = {}
        for d, a, b in grid.day_runs:
            if not self.present[a:b, j].any():
                continue
            if sm is None:
                out[d] = BandTotals()
                continue
            cut = slice(a, b)
            out[d] = band_totals_columns(
                sm.take(cut), self.kwh[cut, j : j + 1], self.present[cut, j : j + 1]
            )[0]
        return out


_BAND_CHUNK = 128


def _on_grid(
    meters: Sequence[Device],
    found: Mapping[str, CounterArrays],
    grid: _Grid,
    shares: Sequence[ShareMatrix | None],
) -> _Data:
    n, m = len(grid.slots), len(meters)
    present = np.zeros((n, m), dtype=bool)
    kwh = np.zeros((n, m))
    ints = [np.zeros((n, m), dtype=np.int64) for _ in range(4)]
    for j, dev in enumerate(meters):
        ca = found.get(dev.id)
        if ca is None:
            continue
        present[:, j] = ca.present
        kwh[:, j] = ca.delta
        for col, v in zip(ints, (ca.samples, ca.glitches, ca.rollovers, ca.resets), strict=True):
            col[:, j] = v
    samples, glitches, rollovers, resets = ints
    return _Data(
        {d.id: j for j, d in enumerate(meters)},
        present,
        kwh,
        samples,
        glitches,
        rollovers,
        resets,
        list(shares),
    )


def _peak(
    kwh: npt.NDArray[np.float64], present: npt.NDArray[np.bool_], grid: _Grid, tz: ZoneInfo
) -> Demand | None:
    """The highest mean kW of a slot (the first such slot), over the slots with data."""
    if not present.any():
        return None
    kw = np.where(present, kwh / grid.hours, -np.inf)
    i = int(np.argmax(kw))
    return Demand(kw=round(float(kw[i]), KW_DIGITS), at=grid.slots[i][0].astimezone(tz))


def _base_load(
    kwh: npt.NDArray[np.float64], present: npt.NDArray[np.bool_], grid: _Grid
) -> float | None:
    use = present & (grid.base > 0)
    energy = float(_seq_sum(np.where(use, kwh * grid.base, 0.0)))
    hours = float(_seq_sum(np.where(use, grid.hours * grid.base, 0.0)))
    return energy / hours if hours > 0 else None


def _slot_sums(
    data: _Data, cols: Sequence[int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per slot: the sum over ``cols`` (in that order) and whether any of them has data."""
    n = data.kwh.shape[0]
    if not cols:
        return np.zeros(n), np.zeros(n, dtype=bool)
    idx = list(cols)
    has = np.asarray(data.present[:, idx].any(axis=1), dtype=bool)
    return _seq_sum(data.kwh[:, idx].T), has


def _band_list(t: BandTotals) -> list[BandUse]:
    return [
        BandUse(
            band=b,
            kwh=round(t.kwh[b], KWH_DIGITS),
            cost=round(t.cost[b], MONEY_DIGITS),
        )
        for b in t.bands()
    ]


def _energy_charge(tariff: Tariff | None, t: BandTotals, has_data: bool) -> float | None:
    if tariff is None or not has_data or (not t.kwh and t.unpriced_kwh > 0):
        return None
    return t.total_cost


def _cost(
    tariff: Tariff | None,
    t: BandTotals,
    has_data: bool,
    month: Period | None = None,
    peak_kw: float | None = None,
) -> Cost:
    energy = _energy_charge(tariff, t, has_data)
    fixed = demand = demand_kw = None
    total = energy
    if month is not None and tariff is not None:
        demand_kw = peak_kw
        ch = monthly_charges(tariff, month.first.year, month.first.month, peak_kw or 0.0)
        fixed = ch.fixed
        demand = ch.demand if peak_kw is not None else None
        total = None if energy is None else energy + ch.fixed + ch.demand
    return Cost(
        tariff=None if tariff is None else tariff.id,
        bands=_band_list(t),
        energy=_money(energy),
        fixed=_money(fixed),
        demand_kw=None if demand_kw is None else round(demand_kw, KW_DIGITS),
        demand=_money(demand),
        total=_money(total),
        unpriced_kwh=round(t.unpriced_kwh, KWH_DIGITS),
    )


def _every_windows(period: Period, end: datetime, every: Every) -> list[tuple[datetime, datetime]]:
    """Local days, ISO weeks (from Monday) or calendar months of the period, clipped to end."""
    out: list[tuple[datetime, datetime]] = []
    d = period.first
    t = period.start
    while t < end:
        if every == "day":
            nd = d + timedelta(days=1)
        elif every == "week":
            nd = d + timedelta(days=7 - d.weekday())
        else:
            y, mo = add_months(d.year, d.month, 1)
            nd = date(y, mo, 1)
        nxt = min(local_midnight(nd, period.tz), end)
        out.append((t, nxt))
        d, t = nd, local_midnight(nd, period.tz)
    return out


def _window_runs(grid: _Grid, bounds: Sequence[tuple[datetime, datetime]]) -> list[tuple[int, int]]:
    """The slots of each window as ``(first, end)``: slots starting inside it (shared by every
    meter)."""
    out: list[tuple[int, int]] = []
    i = 0
    n = len(grid.slots)
    for ws, we in bounds:
        while i < n and grid.slots[i][0] < ws:
            i += 1
        j = i
        while j < n and grid.slots[j][0] < we:
            j += 1
        out.append((i, j))
        i = j
    return out


@dataclass(frozen=True)
class _WindowSums:
    """Per window (rows) and meter (columns): the sums each meter's :class:`WindowOut` shows,
    computed for every meter at once."""

    kwh: list[list[float | None]]
    samples: list[list[int]]
    glitches: list[list[int]]
    rollovers: list[list[int]]
    resets: list[list[int]]
    completeness: list[list[float]]


def _window_sums(data: _Data, runs: Sequence[tuple[int, int]]) -> _WindowSums:
    m = data.kwh.shape[1]
    kwh: list[list[float | None]] = []
    ints: list[list[list[int]]] = [[], [], [], []]
    comp: list[list[float]] = []
    with_data = data.present & (data.samples > 0)
    for a, b in runs:
        if b <= a:
            kwh.append([None] * m)
            for col in ints:
                col.append([0] * m)
            comp.append([0.0] * m)
            continue
        has: list[bool] = np.asarray(data.present[a:b].any(axis=0)).tolist()
        sums = _seq_sum(data.kwh[a:b]).tolist()
        kwh.append([kwh_round(v) if h else None for v, h in zip(sums, has, strict=True)])
        for col, arr in zip(
            ints, (data.samples, data.glitches, data.rollovers, data.resets), strict=True
        ):
            col.append(arr[a:b].sum(axis=0).tolist())
        n = b - a
        comp.append([round(c / n, 4) for c in with_data[a:b].sum(axis=0).tolist()])
    samples, glitches, rollovers, resets = ints
    return _WindowSums(kwh, samples, glitches, rollovers, resets, comp)


def _meter_windows(
    sums: _WindowSums, j: int, bounds: Sequence[tuple[datetime, datetime]]
) -> list[WindowOut]:
    return [
        WindowOut(
            start=ws,
            end=we,
            kwh=sums.kwh[w][j],
            samples=sums.samples[w][j],
            glitches=sums.glitches[w][j],
            rollovers=sums.rollovers[w][j],
            resets=sums.resets[w][j],
            completeness=sums.completeness[w][j],
        )
        for w, (ws, we) in enumerate(bounds)
    ]


def _ancestors(device: Device, devices: Mapping[str, Device]) -> list[Device]:
    out: list[Device] = []
    seen = {device.id}
    p = device.parent
    while p is not None and p in devices and p not in seen:
        seen.add(p)
        out.append(devices[p])
        p = devices[p].parent
    return out


# -- building totals over a span, shared by the report and its comparisons -----------------------
@dataclass
class _BuildingCalc:
    kwh: npt.NDArray[np.float64]  # per slot, summed over the mains; 0.0 where none has data
    has: npt.NDArray[np.bool_]  # per slot: some main has data
    bands: BandTotals
    has_data: bool
    peak: Demand | None
    cost: Cost

    @property
    def total(self) -> float | None:
        return float(_seq_sum(self.kwh)) if self.has_data else None


def _building_calc(
    data: _Data,
    mains: Sequence[Device],
    grid: _Grid,
    tz: ZoneInfo,
    tariff: Tariff | None,
    month: Period | None,
    bands_of: Mapping[str, BandTotals] | None = None,
) -> _BuildingCalc:
    cols = [data.col(m.id) for m in mains]
    kwh, has = _slot_sums(data, cols)
    bands = BandTotals()
    for m, j in zip(mains, cols, strict=True):
        bands.merge(bands_of[m.id] if bands_of is not None else data.bands(j))
    has_data = bool(has.any())
    peak = _peak(kwh, has, grid, tz)
    cost = _cost(tariff, bands, has_data, month, None if peak is None else peak.kw)
    return _BuildingCalc(kwh, has, bands, has_data, peak, cost)


@dataclass
class _Scope:
    rc: ReportContext
    metric: str
    buildings: list[str]
    mains: dict[str, list[Device]]
    pricers: dict[str, Pricer]
    tariffs: dict[str, Tariff | None]

    def on_grid(self, meters: Sequence[Device], grid: _Grid) -> _Data:
        found: dict[str, CounterArrays] = {}
        if grid.slots and meters:
            windows = Windows(grid.slots[0][0], grid.slots[-1][1], SLOT)
            found = fetch_counter_arrays(self.rc, meters, windows, self.metric, grid.wb)
        # Band shares of each interval depend on the tariff only: computed once per tariff.
        matrices: dict[int, ShareMatrix] = {}
        shares: list[ShareMatrix | None] = []
        for m in meters:
            pricer = self.pricers.get(m.location.building)
            sm = None
            if pricer is not None:
                sm = matrices.get(id(pricer))
                if sm is None:
                    sm = matrices[id(pricer)] = pricer.matrix(grid.slots)
            shares.append(sm)
        return _on_grid(meters, found, grid, shares)


def _comparison_totals(
    scope: _Scope, other: Period, elapsed: timedelta
) -> tuple[datetime, dict[str, tuple[float | None, float | None, float | None]]]:
    """(end of the compared span, building -> (kWh, total cost, completeness)) for another
    month."""
    rc = scope.rc
    end = min(other.end, other.start + elapsed)
    grid = _grid(other.start, end, rc.tz, ())
    mains = [m for b in scope.buildings for m in scope.mains[b]]
    data = scope.on_grid(mains, grid)
    out: dict[str, tuple[float | None, float | None, float | None]] = {}
    for b in scope.buildings:
        calc = _building_calc(data, scope.mains[b], grid, rc.tz, scope.tariffs[b], other)
        # A building without main meters has nothing to be complete about.
        share = float(calc.has.mean()) if scope.mains[b] and len(calc.has) else None
        out[b] = (calc.total, calc.cost.total, share)
    return end, out


def _comparisons(
    scope: _Scope,
    period: Period,
    end: datetime,
    now: Mapping[str, tuple[float | None, float | None]],
) -> tuple[dict[str, list[Comparison]], list[Comparison]]:
    """Per building and site-wide comparisons with the previous month and a year before."""
    elapsed = end - period.start  # wall clock: the same local day and time of the other month
    per_building: dict[str, list[Comparison]] = defaultdict(list)
    site: list[Comparison] = []
    site_now = (_sum(v[0] for v in now.values()), _sum(v[1] for v in now.values()))
    others: list[tuple[Literal["previous_month", "same_month_last_year"], Period]] = [
        ("previous_month", period.previous_month()),
        ("same_month_last_year", period.same_month_last_year()),
    ]
    for against, other in others:
        other_end, then = _comparison_totals(scope, other, elapsed)

        for b in scope.buildings:
            per_building[b].append(
                _comparison(against, other, other_end, now[b], then[b], scope.rc.tz)
            )
        shares = [v[2] for v in then.values() if v[2] is not None]
        site_then = (
            _sum(v[0] for v in then.values()),
            _sum(v[1] for v in then.values()),
            min(shares) if shares else None,
        )
        site.append(_comparison(against, other, other_end, site_now, site_then, scope.rc.tz))
    return per_building, site


def _comparison(
    against: Literal["previous_month", "same_month_last_year"],
    other: Period,
    other_end: datetime,
    now: tuple[float | None, float | None],
    then: tuple[float | None, float | None, float | None],
    tz: ZoneInfo,
) -> Comparison:
    complete = then[2] is not None and then[2] >= MIN_COMPARE_COMPLETENESS
    return Comparison(
        against=against,
        month=other.label,
        start=other.start,
        end=other_end.astimezone(tz),
        kwh=kwh_round(then[0]),
        cost=_money(then[1]),
        completeness=None if then[2] is None else round(then[2], 4),
        kwh_change_pct=_change(now[0], then[0]) if complete else None,
        cost_change_pct=_change(now[1], then[1]) if complete else None,
    )


# -- the report -------------------------------------------------------------------------------
def energy_report(
    rc: ReportContext,
    period: Period,
    *,
    every: Every = "day",
    building: str | None = None,
) -> EnergyReport:
    """Energy and cost of the site's power meters (or one building's) over ``period``.

    A period still running ends at ``rc.clock()``. Fixed and demand charges, comparisons and
    the budget need a calendar month.
    """
    if building is not None and building not in rc.buildings:
        raise ValueError(f"unknown building {building!r}")
    settings = rc.config.reports.energy
    tz = rc.tz
    end = period.clipped(rc.clock()).astimezone(tz)
    month = period if period.is_month else None
    meters = rc.of_kind("power_meter", building)
    building_ids = [b.id for b in rc.config.buildings if building in (None, b.id)]
    tariffs = {b: tariff_for(rc.config.tariffs, b) for b in building_ids}
    pricers: dict[str, Pricer] = {}
    by_tariff: dict[str, Pricer] = {}
    for b, t in tariffs.items():
        if t is not None:
            pricers[b] = by_tariff.setdefault(t.id, Pricer(t, tz))
    scope = _Scope(
        rc,
        settings.metric,
        building_ids,
        {b: rc.mains("power_meter", b) for b in building_ids},
        pricers,
        tariffs,
    )

    grid = _grid(period.start, end, tz, settings.base_load_hours)
    data = scope.on_grid(meters, grid)
    bounds = _every_windows(period, end, every)
    sums = _window_sums(data, _window_runs(grid, bounds))

    meters_out: list[MeterOut] = []
    meter_bands = dict(
        zip((d.id for d in meters), data.all_bands([data.col(d.id) for d in meters]), strict=True)
    )
    for dev in meters:
        j = data.col(dev.id)
        wins = _meter_windows(sums, j, bounds)
        total = data.total(j)
        tariff = tariffs.get(dev.location.building)
        bands = meter_bands[dev.id]
        meters_out.append(
            MeterOut(
                device=dev.id,
                name=dev.name,
                building=dev.location.building,
                floor=dev.location.floor,
                tenant=dev.location.tenant,
                parent=dev.parent,
                total_kwh=kwh_round(total),
                glitches=sum(w.glitches for w in wins),
                rollovers=sum(w.rollovers for w in wins),
                resets=sum(w.resets for w in wins),
                completeness=round(data.completeness(j), 4),
                windows=wins,
                peak_demand=_peak(data.kwh[:, j], data.present[:, j], grid, tz),
                base_load_kw=kwh_round(_base_load(data.kwh[:, j], data.present[:, j], grid)),
                cost=_cost(tariff, bands, total is not None),
            )
        )

    buildings_out: list[BuildingOut] = []
    now_totals: dict[str, tuple[float | None, float | None]] = {}
    for b in building_ids:
        info = rc.buildings[b]
        mains = scope.mains[b]
        cols = [data.col(d.id) for d in mains]
        calc = _building_calc(data, mains, grid, tz, tariffs[b], month, meter_bands)
        total = calc.total
        now_totals[b] = (total, calc.cost.total)
        in_b = [d for d in meters if d.location.building == b]
        base = [_base_load(data.kwh[:, j], data.present[:, j], grid) for j in cols]
        buildings_out.append(
            BuildingOut(
                building=b,
                name=info.name,
                total_kwh=kwh_round(total),
                meters=len(in_b),
                mains=[d.id for d in mains],
                sub_meters=[d.id for d in in_b if d.parent is not None],
                floor_area_m2=info.floor_area_m2,
                kwh_per_m2=None if total is None else round(total / info.floor_area_m2, 4),
                completeness=(
                    round(sum(data.completeness(j) for j in cols) / len(cols), 4) if cols else None
                ),
                peak_demand=calc.peak,
                base_load_kw=kwh_round(_sum(base)),
                cost=calc.cost,
                daily=_daily(period, end, data, cols, calc, grid, tariffs[b]),
            )
        )

    site_comparisons: list[Comparison] = []
    if month is not None:
        per_building, site_comparisons = _comparisons(scope, period, end, now_totals)
        elapsed_pct = round(
            _seconds(period.start, end) / _seconds(period.start, period.end) * 100, PCT_DIGITS
        )
        for bo in buildings_out:
            bo.comparisons = per_building[bo.building]
            bo.budget = _budget(rc, bo, period.label, elapsed_pct)

    floors, tenants = _groups(rc, meters, meters_out)
    return EnergyReport(
        metric=settings.metric,
        unit="kWh",
        timezone=rc.config.site.timezone,
        currency=rc.config.site.currency,
        month=period.label if month is not None else None,
        start=period.start,
        end=end.astimezone(tz),
        complete=end >= period.end,
        every=EVERY_LENGTH[every],
        windows=len(bounds),
        total_kwh=kwh_round(_sum(bo.total_kwh for bo in buildings_out)),
        total_cost=_money(_sum(bo.cost.total for bo in buildings_out if bo.cost is not None)),
        meters=meters_out,
        buildings=buildings_out,
        floors=floors,
        tenants=tenants,
        comparisons=site_comparisons,
    )


def _daily(
    period: Period,
    end: datetime,
    data: _Data,
    cols: Sequence[int],
    calc: _BuildingCalc,
    grid: _Grid,
    tariff: Tariff | None,
) -> list[DayOut]:
    runs = {d: (a, b) for d, a, b in grid.day_runs}
    by_day = [data.by_day(j, grid) for j in cols]
    out: list[DayOut] = []
    for day, start, _ in period.day_bounds():
        if start >= end:
            break
        bands = BandTotals()
        for days in by_day:
            t = days.get(day)
            if t is not None:
                bands.merge(t)
        a, b = runs.get(day, (0, 0))
        total = float(_seq_sum(calc.kwh[a:b])) if calc.has[a:b].any() else None
        out.append(
            DayOut(
                day=day,
                kwh=kwh_round(total),
                bands=_band_list(bands),
                cost=_money(_energy_charge(tariff, bands, total is not None)),
            )
        )
    return out


def _budget(rc: ReportContext, bo: BuildingOut, month: str, elapsed_pct: float) -> BudgetOut | None:
    for b in rc.config.reports.energy.budgets:
        if b.building == bo.building and b.month == month:
            actual_cost = None if bo.cost is None else bo.cost.total
            return BudgetOut(
                month=month,
                kwh=b.kwh,
                cost=b.cost,
                actual_kwh=bo.total_kwh,
                actual_cost=actual_cost,
                kwh_used_pct=_pct(bo.total_kwh, b.kwh),
                cost_used_pct=_pct(actual_cost, b.cost),
                month_elapsed_pct=elapsed_pct,
            )
    return None


def _groups(
    rc: ReportContext, meters: Sequence[Device], out: Sequence[MeterOut]
) -> tuple[list[FloorOut], list[TenantOut]]:
    """Per-floor sums of leaf meters and per-tenant sums of each tenant's topmost meters."""
    by_id = {mo.device: mo for mo in out}
    parents = {d.parent for d in rc.config.devices if d.parent is not None}
    floors: dict[tuple[str, str], list[str]] = defaultdict(list)
    tenants: dict[str, list[str]] = defaultdict(list)
    for d in meters:
        if d.id not in parents:
            floors[(d.location.building, d.location.floor)].append(d.id)
        t = d.location.tenant
        if t is not None and all(a.location.tenant != t for a in _ancestors(d, rc.devices)):
            tenants[t].append(d.id)

    def kwh(ids: Sequence[str]) -> float | None:
        return kwh_round(_sum(by_id[i].total_kwh for i in ids))

    def cost(ids: Sequence[str]) -> float | None:
        return _money(_sum(c.energy for i in ids if (c := by_id[i].cost) is not None))

    return (
        [
            FloorOut(building=b, floor=f, kwh=kwh(ids), cost=cost(ids), meters=ids)
            for (b, f), ids in floors.items()
        ],
        [
            TenantOut(tenant=t, kwh=kwh(ids), cost=cost(ids), meters=ids)
            for t, ids in sorted(tenants.items())
        ],
    )


# -- fixed-length windows between two instants (the API's start/end mode) ------------------------
RANGE_EVERY: dict[WindowLength, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}


def energy_range(
    rc: ReportContext,
    start: datetime,
    end: datetime,
    every: WindowLength,
    meters: Sequence[Device],
) -> EnergyReport:
    """kWh of ``meters`` per fixed-length window from ``start`` (any instants, not whole days).

    Completeness is the fraction of windows holding a trusted sample. No cost: the sections that
    need a calendar month or a 15-minute grid are in :func:`energy_report`.
    """
    step = RANGE_EVERY[every]
    tz = rc.tz
    metric = rc.config.reports.energy.metric
    windows = Windows(start, end, step)
    found = fetch_counters(rc, meters, windows, metric)
    bounds = windows.bounds()
    out: list[MeterOut] = []
    for m in meters:
        rows: list[WindowOut] = []
        for ws, we in bounds:
            hit = found[m.id].get(ws)
            rows.append(
                WindowOut(
                    start=ws.astimezone(tz),
                    end=we.astimezone(tz),
                    kwh=None if hit is None else kwh_round(hit.delta),
                    samples=0 if hit is None else hit.samples,
                    glitches=0 if hit is None else hit.glitches,
                    rollovers=0 if hit is None else hit.rollovers,
                    resets=0 if hit is None else hit.resets,
                )
            )
        out.append(
            MeterOut(
                device=m.id,
                name=m.name,
                building=m.location.building,
                floor=m.location.floor,
                tenant=m.location.tenant,
                parent=m.parent,
                # Summed before rounding: rounded windows would drift by up to 0.5 Wh each.
                total_kwh=kwh_round(_sum(cw.delta for cw in found[m.id].values())),
                glitches=sum(w.glitches for w in rows),
                rollovers=sum(w.rollovers for w in rows),
                resets=sum(w.resets for w in rows),
                completeness=round(sum(1 for w in rows if w.samples) / len(rows), 4),
                windows=rows,
            )
        )
    by_id = {mo.device: mo for mo in out}
    buildings: list[BuildingOut] = []
    for b in rc.config.buildings:
        in_b = [m for m in meters if m.location.building == b.id]
        if not in_b:
            continue
        # Topmost among the chosen: with a device filter a lone sub-meter still has a total.
        counted = topmost(in_b)
        total = _sum(by_id[m.id].total_kwh for m in counted)
        buildings.append(
            BuildingOut(
                building=b.id,
                name=b.name,
                total_kwh=kwh_round(total),
                meters=len(in_b),
                mains=[m.id for m in counted],
                sub_meters=[m.id for m in in_b if m not in counted],
                floor_area_m2=b.floor_area_m2,
                kwh_per_m2=None if total is None else round(total / b.floor_area_m2, 4),
            )
        )
    return EnergyReport(
        metric=metric,
        unit="kWh",
        timezone=rc.config.site.timezone,
        currency=rc.config.site.currency,
        start=start.astimezone(tz),
        end=end.astimezone(tz),
        every=every,
        windows=len(bounds),
        total_kwh=kwh_round(_sum(bo.total_kwh for bo in buildings)),
        meters=out,
        buildings=buildings,
    )
