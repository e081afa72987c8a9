"""GET /api/v1/reports/energy: kWh per power meter per window, with data quality.

Use comes from ``Store.counter_delta`` on the import-energy counter, so read glitches, resets
and rollover are handled as on every other report (store/counters.py). Completeness is the
fraction of windows in which the meter delivered at least one trusted sample.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.context import Context
from api.errors import invalid_parameter
from collector.profile import load_profile
from config.models import Device
from store.base import Windows
from store.counters import CounterWindow

log = logging.getLogger(__name__)

ENERGY_METRIC = "energy_import"
Every = Literal["15m", "1h", "1d"]
EVERY: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
MAX_WINDOWS = 5000
_KWH_DIGITS = 3  # Wh resolution: finer figures are float noise of the spreading over windows

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_WHEN_HELP = (
    "ISO 8601 date (local midnight in the site time zone) or date-time; a date-time without "
    "an offset is site-local"
)


class WindowOut(BaseModel):
    start: datetime
    end: datetime
    kwh: float | None = Field(description="Energy used in the window; null when no data")
    samples: int = Field(description="Trusted samples in the window")
    glitches: int = Field(description="Samples skipped as read glitches")
    rollovers: int
    resets: int = Field(description="Drops that did not come back (reset or meter swap)")


class MeterOut(BaseModel):
    device: str
    name: str
    building: str
    total_kwh: float | None = Field(description="Sum over the windows; null when no data")
    glitches: int
    rollovers: int
    resets: int
    completeness: float = Field(description="Fraction of windows with samples, 0..1")
    windows: list[WindowOut]


class BuildingOut(BaseModel):
    building: str
    name: str
    total_kwh: float | None = Field(description="Sum of the building's meters in this report")
    meters: int


class EnergyReport(BaseModel):
    metric: str
    unit: str
    timezone: str
    start: datetime
    end: datetime
    every: Every
    windows: int
    total_kwh: float | None
    meters: list[MeterOut]
    buildings: list[BuildingOut]


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


def _rollover(device: Device) -> float | None:
    """The counter's wrap value from the device's profile; None when unknown."""
    try:
        src = device.source
        if src.type == "mqtt":
            return None  # no register map: the wrap value is unknown
        return load_profile(src.profile).register(ENERGY_METRIC).rollover
    except (OSError, ValueError, KeyError):
        return None


def _sum(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), _KWH_DIGITS) if known else None


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])
    meters = [d for d in ctx.config.devices if d.kind == "power_meter"]

    @r.get("/reports/energy", response_model=EnergyReport, summary="kWh per meter and window")
    def energy(
        start: Annotated[str, Query(description=_WHEN_HELP, examples=["2024-03-01"])],
        end: Annotated[str, Query(description=_WHEN_HELP, examples=["2024-04-01"])],
        every: Annotated[Every, Query(description="Window length")] = "1d",
        building: Annotated[str | None, Query(description="Only this building")] = None,
        device: Annotated[str | None, Query(description="Only this power meter")] = None,
    ) -> EnergyReport:
        t0 = parse_when("start", start, ctx.tz)
        t1 = parse_when("end", end, ctx.tz)
        if t1 <= t0:
            raise invalid_parameter("end", "must be after start")
        step = EVERY[every]
        count = -(-(t1 - t0) // step)
        if count > MAX_WINDOWS:
            raise invalid_parameter(
                "every", f"{count} windows of {every}; at most {MAX_WINDOWS} per report"
            )
        if building is not None and building not in ctx.buildings:
            raise invalid_parameter("building", f"unknown building {building!r}")
        if device is not None and device not in {m.id for m in meters}:
            raise invalid_parameter("device", f"{device!r} is not a configured power meter")
        chosen = [
            m
            for m in meters
            if (building is None or m.location.building == building)
            and (device is None or m.id == device)
        ]
        windows = Windows(t0, t1, step)
        # One query per rollover value: meters on different profiles may wrap differently.
        groups: dict[float | None, list[str]] = defaultdict(list)
        for m in chosen:
            groups[_rollover(m)].append(m.id)
        found: dict[tuple[str, datetime], CounterWindow] = {}
        for rollover, ids in groups.items():
            for cw in ctx.store.counter_delta(ENERGY_METRIC, windows, ids, rollover=rollover):
                found[(cw.device, cw.start)] = cw

        bounds = windows.bounds()
        out: list[MeterOut] = []
        for m in chosen:
            rows: list[WindowOut] = []
            for ws, we in bounds:
                hit = found.get((m.id, ws))
                rows.append(
                    WindowOut(
                        start=ws.astimezone(ctx.tz),
                        end=we.astimezone(ctx.tz),
                        kwh=round(hit.delta, _KWH_DIGITS) if hit is not None else None,
                        samples=hit.samples if hit is not None else 0,
                        glitches=hit.glitches if hit is not None else 0,
                        rollovers=hit.rollovers if hit is not None else 0,
                        resets=hit.resets if hit is not None else 0,
                    )
                )
            raw = [found[(m.id, ws)].delta for ws, _ in bounds if (m.id, ws) in found]
            out.append(
                MeterOut(
                    device=m.id,
                    name=m.name,
                    building=m.location.building,
                    total_kwh=_sum(raw),
                    glitches=sum(w.glitches for w in rows),
                    rollovers=sum(w.rollovers for w in rows),
                    resets=sum(w.resets for w in rows),
                    completeness=round(sum(1 for w in rows if w.samples) / len(rows), 4),
                    windows=rows,
                )
            )
        by_building: dict[str, list[MeterOut]] = defaultdict(list)
        for mo in out:
            by_building[mo.building].append(mo)
        return EnergyReport(
            metric=ENERGY_METRIC,
            unit="kWh",
            timezone=ctx.config.site.timezone,
            start=t0.astimezone(ctx.tz),
            end=t1.astimezone(ctx.tz),
            every=every,
            windows=len(bounds),
            total_kwh=_sum([mo.total_kwh for mo in out]),
            meters=out,
            buildings=[
                BuildingOut(
                    building=b,
                    name=ctx.buildings.get(b, b),
                    total_kwh=_sum([mo.total_kwh for mo in ms]),
                    meters=len(ms),
                )
                for b, ms in sorted(by_building.items())
            ],
        )

    return r
