"""Availability of elevators and other assets with a state (../shared/domain.md, "Uptime").

Every moment of the report window is UP, DOWN, PLANNED or UNKNOWN for each asset. The state is
decided from three metrics of the elevator profile (collector/profiles/elevator_gbt24476.yaml):
``service_mode`` (0 unknown, 1 normal, 2 inspection, 3 fire return, 4 firefighter, 5 emergency
power, 6 earthquake, 7 out of service), ``fault_code`` (> 0 = a fault) and ``entrapment``
(1 = a passenger is shut in, 255 = unknown).

Coverage. Each sample of a metric holds its value until the next sample of that metric, for at
most ``gap_polls`` x the device's poll interval; time no sample covers is uncovered. The three
timelines are cut at every change of any of them and each piece is classified in this order,
so that a piece is known only when the metrics that decide it are covered:

1. entrapment = 1: DOWN (cause ``entrapment``), whatever the other metrics say;
2. service mode uncovered, 0 or a code outside 1..7: UNKNOWN;
3. inspection: PLANNED (``inspection``) -- unless the last known state before it was DOWN:
   then the car was switched to inspection to repair that fault, and the repair stays DOWN
   (with the cause of the fault) until normal service resumes;
4. fire return, firefighter, emergency power, earthquake: PLANNED with that mode as the
   reason. The car is withheld from passengers by a safety system reacting to an event outside
   the lift; counting it as down would charge the lift with a fire drill or a power cut, and
   counting it as up would claim a service nobody could use, so it is left out of A like
   planned maintenance and shown separately;
5. fault code uncovered: DOWN (``out_of_service``) in mode out of service, else UNKNOWN;
6. fault code > 0: DOWN, cause the fault's class (``UptimeSettings.fault_classes``, else
   ``fault_<code>``);
7. out of service: DOWN (``out_of_service``);
8. normal with fault code 0: UP when entrapment is known to be 0, else UNKNOWN.

A metric the device never reported (no sample in the window nor before it) does not take
part: a device with a fault code and no service mode is classified from the fault code alone.
Every other configured device that reports any of the three metrics is reported beside the
elevators.

Figures (domain.md): ``A = up / (up + down)``, ``A_low = up / (up + down + unknown)``,
``A_high = (up + unknown) / (up + down + unknown)``, ``coverage = 1 - unknown / window``;
"insufficient data" below ``min_coverage``. A failure is a DOWN episode that starts in the
window and a restoration one that ends in it by returning to UP or PLANNED (an episode runs on
across UNKNOWN gaps); ``MTBF = up / failures``, ``MTTR = down / restorations``. An episode
already running at the window start is not a new failure: one day before the window is read
to know it. The window is the period, ending at ``rc.clock()`` while the period is running.

Entrapments are episodes of entrapment = 1 (joined across gaps) that start in the window. The
rescue response runs from the start to the first on-site event (``on_site_events``) of a
ticket of that device between the start and the end of the entrapment; without one, to the end
of the entrapment (the passenger was out by then), or to the window end while it lasts. It is
flagged when longer than ``rescue_limit``.

An asset is *in good order* when its coverage reaches ``min_coverage`` and its A reaches the
target; the count-based intact rate (完好率) is assets in good order / all assets, beside the
time-weighted one, ``sum up / sum (up + down)``, per building and for the site.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from alerts.tickets import MAX_PAGE
from config.models import Device
from config.reporting import UptimeSettings
from reports.context import ReportContext
from reports.period import Period
from store.base import SeriesArrays
from store.reading import from_us, to_us

MODE, FAULT, ENTRAPMENT = "service_mode", "fault_code", "entrapment"
STATE_METRICS: tuple[str, ...] = (MODE, FAULT, ENTRAPMENT)

NORMAL, INSPECTION, OUT_OF_SERVICE = 1, 2, 7
SPECIAL_MODES: dict[int, str] = {
    3: "fire_return",
    4: "firefighter",
    5: "emergency_power",
    6: "earthquake",
}
KNOWN_MODES = frozenset({NORMAL, INSPECTION, OUT_OF_SERVICE, *SPECIAL_MODES})
LOOKBACK = timedelta(days=1)

State = Literal["up", "down", "planned", "unknown"]
RescueSource = Literal["ticket", "entrapment_end", "ongoing"]

_H = 3  # digits of hours: 0.001 h = 3.6 s
_RATE = 6  # digits of a fraction: 0.0001 %
_MIN = 1  # digits of minutes

RULES: tuple[str, ...] = (
    "UP: service mode normal, fault code 0 and no entrapment, each covered by a sample",
    "DOWN: entrapment, fault code > 0 or out of service; inspection right after a DOWN spell is "
    "the repair and stays DOWN until normal service",
    "PLANNED: inspection entered from service; fire return, firefighter, emergency power and "
    "earthquake modes (external events, left out of A and listed by reason)",
    "UNKNOWN: a deciding metric not covered (a sample covers at most gap_polls x the poll "
    "interval) or service mode 0 / an unknown code; never up, never down",
    "a failure is a DOWN episode starting in the window; a restoration one ending in it",
)


# -- output -----------------------------------------------------------------------------------
class DowntimeOut(BaseModel):
    cause: str = Field(
        description="entrapment, out_of_service, or the fault class of the fault code"
    )
    hours: float = Field(description="DOWN hours attributed to this cause in the window")


class EntrapmentOut(BaseModel):
    start: datetime = Field(description="First sample with entrapment = 1 (site-local)")
    end: datetime | None = Field(description="First sample with entrapment = 0; null if ongoing")
    duration_min: float = Field(description="Minutes shut in (to the window end while ongoing)")
    response_min: float = Field(description="Minutes from the start to the rescue response")
    response_from: RescueSource = Field(
        description="ticket: an on-site event of a ticket of the device; entrapment_end: no "
        "such event, the end of the entrapment; ongoing: still shut in at the window end"
    )
    ticket: str | None = Field(description="Work-order number of the on-site event, if any")
    over_limit: bool = Field(description="response_min exceeds the rescue limit")


class AssetUptime(BaseModel):
    device: str
    name: str
    kind: str = Field(description="elevator, or another kind that reports a state")
    building: str
    window_h: float = Field(description="Hours in the window (the period, clipped to now)")
    up_h: float
    down_h: float
    planned_h: float
    unknown_h: float
    planned_by_reason: dict[str, float] = Field(
        description="PLANNED hours per reason: inspection, fire_return, firefighter, "
        "emergency_power, earthquake"
    )
    availability: float | None = Field(
        description="A = up / (up + down), fraction 0..1; null with no up or down time"
    )
    availability_low: float | None = Field(description="up / (up + down + unknown)")
    availability_high: float | None = Field(description="(up + unknown) / (up + down + unknown)")
    coverage: float | None = Field(description="1 - unknown / window; null for an empty window")
    insufficient_data: bool = Field(description="coverage below the minimum coverage")
    failures: int = Field(description="DOWN episodes that started in the window")
    restorations: int = Field(description="DOWN episodes that ended in the window")
    mtbf_h: float | None = Field(description="up / failures; null without failures")
    mttr_h: float | None = Field(description="down / restorations; null without restorations")
    downtime_by_cause: list[DowntimeOut] = Field(description="DOWN hours per cause, largest first")
    entrapments: list[EntrapmentOut] = Field(description="Entrapments that started in the window")
    in_good_order: bool = Field(description="coverage >= minimum and A >= target")


class FleetUptime(BaseModel):
    building: str | None = Field(description="Building id; null for the whole site")
    name: str
    assets: int
    in_good_order: int
    insufficient_data: int = Field(description="Assets below the minimum coverage")
    intact_rate_count: float | None = Field(
        description="Count-based intact rate (完好率): in good order / assets"
    )
    intact_rate_time: float | None = Field(
        description="Time-weighted: sum up / sum (up + down) over the assets"
    )
    meets_target_count: bool | None
    meets_target_time: bool | None
    up_h: float
    down_h: float
    planned_h: float
    unknown_h: float
    coverage: float | None = Field(description="1 - sum unknown / sum window")
    failures: int
    entrapments: int
    entrapments_over_limit: int


class UptimeReport(BaseModel):
    period: str = Field(description="YYYY-MM, or first..last day")
    timezone: str
    start: datetime = Field(description="Window start (site-local)")
    end: datetime = Field(description="Window end: the period end, or now while it runs")
    complete: bool = Field(description="False while the period is still running")
    building: str | None = Field(description="Only this building; null for the whole site")
    target: float = Field(description="Availability / intact-rate target, fraction")
    min_coverage: float = Field(description="Coverage below which an asset has insufficient data")
    rescue_limit_min: float = Field(description="Entrapment rescue arrival limit, minutes")
    gap_polls: float = Field(description="A sample covers at most this many poll intervals")
    rules: list[str] = Field(description="How time is classified")
    assets: list[AssetUptime]
    buildings: list[FleetUptime] = Field(description="Per building with assets")
    site: FleetUptime = Field(description="All assets of the report")


# -- timelines --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Span:
    start: datetime
    end: datetime
    state: State
    cause: str  # DOWN: its cause; PLANNED: its reason; else ""


def covered_spans(
    series: SeriesArrays, tolerance: timedelta, end: datetime
) -> list[tuple[datetime, datetime, float]]:
    """Each sample holds until the next one, for at most ``tolerance``; equal neighbours that
    touch are merged. Spans are clipped at ``end``.

    On arrays: a month of 5-second samples is half a million per metric, and only the few
    spans where something changes become Python objects.
    """
    t, v = series
    if len(t) == 0:
        return []
    tol = tolerance // timedelta(microseconds=1)
    nxt = np.append(t[1:], np.iinfo(np.int64).max)
    until = np.minimum(np.minimum(t + tol, nxt), to_us(end))
    keep = until > t
    t, v, until = t[keep], v[keep], until[keep]
    if len(t) == 0:
        return []
    # A span begins where the value changes or the previous sample stopped short of this one.
    begins = np.ones(len(t), dtype=bool)
    begins[1:] = (v[1:] != v[:-1]) | (until[:-1] != t[1:])
    first = np.flatnonzero(begins)
    last = np.append(first[1:], len(t)) - 1
    return [
        (from_us(int(t[i])), from_us(int(until[j])), float(v[i]))
        for i, j in zip(first, last, strict=True)
    ]


def _mode(v: float | None) -> int | None:
    if v is None:
        return None
    code = round(v)
    return code if code in KNOWN_MODES else None


def _fault(v: float | None) -> int | None:
    if v is None or v < 0:
        return None
    return round(v)


def _trapped(v: float | None) -> bool | None:
    if v is None:
        return None
    code = round(v)
    return True if code == 1 else False if code == 0 else None


def fault_class(code: int, settings: UptimeSettings) -> str:
    return settings.fault_classes.get(code, f"fault_{code}")


def classify(
    mode: float | None,
    fault: float | None,
    entrapment: float | None,
    present: tuple[bool, bool, bool],
    settings: UptimeSettings,
) -> tuple[State | Literal["inspection"], str]:
    """The state of one moment from the values in force (None: not covered). ``present`` says
    which of (mode, fault, entrapment) the device reports at all; absent ones do not decide."""
    has_mode, has_fault, has_trap = present
    trapped = _trapped(entrapment) if has_trap else False
    if trapped:
        return "down", "entrapment"
    m = _mode(mode) if has_mode else NORMAL
    if m is None:
        return "unknown", ""
    if m == INSPECTION:
        return "inspection", "inspection"
    if m in SPECIAL_MODES:
        return "planned", SPECIAL_MODES[m]
    f = _fault(fault) if has_fault else 0
    if f is None:
        return ("down", "out_of_service") if m == OUT_OF_SERVICE else ("unknown", "")
    if f > 0:
        return "down", fault_class(f, settings)
    if m == OUT_OF_SERVICE:
        return "down", "out_of_service"
    if trapped is None:
        return "unknown", ""
    return "up", ""


def state_timeline(
    metric_points: Sequence[SeriesArrays | None],
    tolerance: timedelta,
    start: datetime,
    end: datetime,
    settings: UptimeSettings,
) -> list[Span]:
    """The asset's states over ``[start, end)`` from the points of (mode, fault, entrapment),
    None for a metric the device does not report. Points may begin before ``start`` (the
    value in force); adjacent spans of the same state and cause are merged."""
    mode_pts, fault_pts, trap_pts = metric_points
    present = (mode_pts is not None, fault_pts is not None, trap_pts is not None)
    if not any(present):
        return [Span(start, end, "unknown", "")]
    spans = [
        [s for s in covered_spans(p, tolerance, end) if s[1] > start] if p is not None else []
        for p in metric_points
    ]
    cuts = {start, end}
    for ms in spans:
        for s0, s1, _ in ms:
            cuts.update(t for t in (s0, s1) if start < t < end)
    bounds = sorted(cuts)
    idx = [0, 0, 0]
    out: list[Span] = []
    last_known: State | None = None
    last_cause = ""
    for b0, b1 in pairwise(bounds):
        values: list[float | None] = []
        for k, ms in enumerate(spans):
            while idx[k] < len(ms) and ms[idx[k]][1] <= b0:
                idx[k] += 1
            hit = idx[k] < len(ms) and ms[idx[k]][0] <= b0
            values.append(ms[idx[k]][2] if hit else None)
        raw, cause = classify(values[0], values[1], values[2], present, settings)
        state: State
        if raw == "inspection":
            # Switched to inspection to repair a fault: the repair is part of the downtime.
            state, cause = ("down", last_cause) if last_known == "down" else ("planned", cause)
        else:
            state = raw
        if state != "unknown":
            last_known = state
            if state == "down":
                last_cause = cause
        if out and out[-1].state == state and out[-1].cause == cause and out[-1].end == b0:
            out[-1] = Span(out[-1].start, b1, state, cause)
        else:
            out.append(Span(b0, b1, state, cause))
    return out


@dataclass(frozen=True, slots=True)
class Episode:
    start: datetime
    end: datetime | None  # when a known non-DOWN state (or entrapment = 0) came; None: open


def down_episodes(spans: Sequence[Span]) -> list[Episode]:
    """Maximal DOWN runs, joined across UNKNOWN gaps, ended by UP or PLANNED."""
    out: list[Episode] = []
    begun: datetime | None = None
    for sp in spans:
        if sp.state == "down":
            if begun is None:
                begun = sp.start
        elif sp.state != "unknown" and begun is not None:
            out.append(Episode(begun, sp.start))
            begun = None
    if begun is not None:
        out.append(Episode(begun, None))
    return out


def entrapment_episodes(series: SeriesArrays, tolerance: timedelta, end: datetime) -> list[Episode]:
    """Runs of entrapment = 1 joined across gaps and unknown codes, ended by a 0."""
    out: list[Episode] = []
    begun: datetime | None = None
    for s0, _, v in covered_spans(series, tolerance, end):
        trapped = _trapped(v)
        if trapped and begun is None:
            begun = s0
        elif trapped is False and begun is not None:
            out.append(Episode(begun, s0))
            begun = None
    if begun is not None:
        out.append(Episode(begun, None))
    return out


# -- the report -------------------------------------------------------------------------------
@dataclass(slots=True)
class _Totals:
    window: float = 0.0
    up: float = 0.0
    down: float = 0.0
    planned: float = 0.0
    unknown: float = 0.0


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, _RATE) if den > 0 else None


def _h(seconds: float) -> float:
    return round(seconds / 3600, _H)


def _assets(rc: ReportContext, building: str | None, found: set[str]) -> list[Device]:
    """Elevators, then any other device that reports a state metric, in config order."""
    return [
        d
        for d in rc.config.devices
        if (building is None or d.location.building == building)
        and (d.kind == "elevator" or d.id in found)
    ]


def uptime_report(
    rc: ReportContext, period: Period, *, building: str | None = None
) -> UptimeReport:
    """Availability per asset and intact rates per building and site over ``period``."""
    s = rc.config.reports.uptime
    ws = period.start
    we = period.clipped(rc.clock())
    lo = ws - LOOKBACK
    candidates = [
        d.id for d in rc.config.devices if building is None or d.location.building == building
    ]
    points: dict[str, dict[str, SeriesArrays]] = {m: {} for m in STATE_METRICS}
    found: set[str] = set()
    if candidates and we > ws:
        for metric in STATE_METRICS:
            arrays = rc.store.series_arrays(metric, lo, we, candidates)
            # The value in force at the start of the look-back, however old: the gap
            # tolerance decides whether it still covers anything.
            for dev, (t0, v0) in rc.store.last_before(metric, lo, candidates).items():
                ts, vs = arrays.get(dev, (np.empty(0, np.int64), np.empty(0, np.float64)))
                arrays[dev] = (
                    np.concatenate(([to_us(t0)], ts)).astype(np.int64),
                    np.concatenate(([v0], vs)).astype(np.float64),
                )
            points[metric] = arrays
            found.update(arrays)

    assets: list[AssetUptime] = []
    totals: dict[str, _Totals] = {}
    for asset_dev in _assets(rc, building, found):
        per_metric = [points[m].get(asset_dev.id) for m in STATE_METRICS]
        asset, t = _asset(rc, asset_dev, per_metric, ws, we, lo, s)
        assets.append(asset)
        totals[asset_dev.id] = t

    by_building: dict[str, list[AssetUptime]] = defaultdict(list)
    for a in assets:
        by_building[a.building].append(a)
    tz = rc.tz
    return UptimeReport(
        period=period.label,
        timezone=rc.config.site.timezone,
        start=ws.astimezone(tz),
        end=we.astimezone(tz),
        complete=we >= period.end,
        building=building,
        target=s.target,
        min_coverage=s.min_coverage,
        rescue_limit_min=round(s.rescue_limit.total_seconds() / 60, _MIN),
        gap_polls=s.gap_polls,
        rules=[
            *RULES,
            f"in good order: coverage >= {s.min_coverage:.0%} and A >= {s.target:.0%}",
        ],
        assets=assets,
        buildings=[
            _fleet(b, rc.buildings[b].name if b in rc.buildings else b, ms, totals, s)
            for b, ms in sorted(by_building.items())
        ],
        site=_fleet(None, rc.config.site.name, assets, totals, s),
    )


def _asset(
    rc: ReportContext,
    dev: Device,
    per_metric: list[SeriesArrays | None],
    ws: datetime,
    we: datetime,
    lo: datetime,
    s: UptimeSettings,
) -> tuple[AssetUptime, _Totals]:
    tolerance = dev.poll_interval * s.gap_polls
    t = _Totals(window=max(0.0, (we - ws).total_seconds()))
    by_cause: dict[str, float] = defaultdict(float)
    by_reason: dict[str, float] = defaultdict(float)
    failures = restorations = 0
    entrapments: list[EntrapmentOut] = []
    if we > ws:
        spans = state_timeline(per_metric, tolerance, lo, we, s)
        for sp in spans:
            secs = (min(sp.end, we) - max(sp.start, ws)).total_seconds()
            if secs <= 0:
                continue
            if sp.state == "up":
                t.up += secs
            elif sp.state == "down":
                t.down += secs
                by_cause[sp.cause] += secs
            elif sp.state == "planned":
                t.planned += secs
                by_reason[sp.cause] += secs
            else:
                t.unknown += secs
        for ep in down_episodes(spans):
            if ws <= ep.start < we:
                failures += 1
            if ep.end is not None and ws < ep.end <= we:
                restorations += 1
        trap_points = per_metric[2]
        if trap_points is not None:
            for ep in entrapment_episodes(trap_points, tolerance, we):
                if ws <= ep.start < we:
                    entrapments.append(_rescue(rc, dev, ep, we, s))
    known = t.up + t.down
    measured = known + t.unknown
    coverage = _ratio(t.window - t.unknown, t.window)
    availability = _ratio(t.up, known)
    insufficient = coverage is None or coverage < s.min_coverage
    asset = AssetUptime(
        device=dev.id,
        name=dev.name,
        kind=dev.kind,
        building=dev.location.building,
        window_h=_h(t.window),
        up_h=_h(t.up),
        down_h=_h(t.down),
        planned_h=_h(t.planned),
        unknown_h=_h(t.unknown),
        planned_by_reason={k: _h(v) for k, v in sorted(by_reason.items())},
        availability=availability,
        availability_low=_ratio(t.up, measured),
        availability_high=_ratio(t.up + t.unknown, measured),
        coverage=coverage,
        insufficient_data=insufficient,
        failures=failures,
        restorations=restorations,
        mtbf_h=round(t.up / 3600 / failures, _H) if failures else None,
        mttr_h=round(t.down / 3600 / restorations, _H) if restorations else None,
        downtime_by_cause=[
            DowntimeOut(cause=c, hours=_h(v))
            for c, v in sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        entrapments=entrapments,
        in_good_order=not insufficient and availability is not None and availability >= s.target,
    )
    return asset, t


def _rescue(
    rc: ReportContext, dev: Device, ep: Episode, we: datetime, s: UptimeSettings
) -> EntrapmentOut:
    until = ep.end if ep.end is not None else we
    arrival: tuple[datetime, str] | None = None
    on_site = set(s.on_site_events)
    page = rc.tickets.list_tickets(device=dev.id, limit=MAX_PAGE)
    for ticket in page.items:
        # Tickets created after the entrapment ended, or finished before it began, cannot
        # hold the rescue.
        if ticket.created_at > until or (not ticket.is_open and ticket.updated_at < ep.start):
            continue
        detail = rc.tickets.get_ticket(ticket.id)
        if detail is None:
            continue
        for ev in detail.events:
            if ev.kind in on_site and ep.start <= ev.at <= until:
                if arrival is None or ev.at < arrival[0]:
                    arrival = (ev.at, ticket.number)
                break
    source: RescueSource
    if arrival is not None:
        responded, source, number = arrival[0], "ticket", arrival[1]
    else:
        responded, number = until, None
        source = "entrapment_end" if ep.end is not None else "ongoing"
    response = responded - ep.start
    return EntrapmentOut(
        start=ep.start.astimezone(rc.tz),
        end=ep.end.astimezone(rc.tz) if ep.end is not None else None,
        duration_min=round((until - ep.start).total_seconds() / 60, _MIN),
        response_min=round(response.total_seconds() / 60, _MIN),
        response_from=source,
        ticket=number,
        over_limit=response > s.rescue_limit,
    )


def _fleet(
    building: str | None,
    name: str,
    assets: Sequence[AssetUptime],
    totals: dict[str, _Totals],
    s: UptimeSettings,
) -> FleetUptime:
    ts = [totals[a.device] for a in assets]
    up = sum(t.up for t in ts)
    down = sum(t.down for t in ts)
    window = sum(t.window for t in ts)
    unknown = sum(t.unknown for t in ts)
    good = sum(1 for a in assets if a.in_good_order)
    count_rate = _ratio(good, len(assets))
    time_rate = _ratio(up, up + down)
    return FleetUptime(
        building=building,
        name=name,
        assets=len(assets),
        in_good_order=good,
        insufficient_data=sum(1 for a in assets if a.insufficient_data),
        intact_rate_count=count_rate,
        intact_rate_time=time_rate,
        meets_target_count=None if count_rate is None else count_rate >= s.target,
        meets_target_time=None if time_rate is None else time_rate >= s.target,
        up_h=_h(up),
        down_h=_h(down),
        planned_h=_h(sum(t.planned for t in ts)),
        unknown_h=_h(unknown),
        coverage=_ratio(window - unknown, window),
        failures=sum(a.failures for a in assets),
        entrapments=sum(len(a.entrapments) for a in assets),
        entrapments_over_limit=sum(1 for a in assets for e in a.entrapments if e.over_limit),
    )
