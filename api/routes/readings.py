"""GET /api/v1/readings/latest: the latest value of each metric of each device."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.context import Context, age_seconds, finite
from api.errors import invalid_parameter
from config.models import DeviceKind


class LatestOut(BaseModel):
    device: str
    building: str
    kind: DeviceKind
    metric: str
    value: float | None = Field(description="null when the device sent no number (NaN)")
    unit: str
    quality: str = Field(description="GOOD, UNCERTAIN or BAD")
    time: datetime = Field(description="Sample time, ISO 8601 UTC")
    age_s: float = Field(description="Seconds between the sample and now")


class LatestPage(BaseModel):
    items: list[LatestOut]


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["readings"])

    @r.get("/readings/latest", response_model=LatestPage, summary="Latest value per metric")
    def latest(
        device: Annotated[list[str] | None, Query(description="Device id (repeatable)")] = None,
        metric: Annotated[list[str] | None, Query(description="Metric (repeatable)")] = None,
        kind: Annotated[list[DeviceKind] | None, Query(description="Device kind")] = None,
        building: Annotated[list[str] | None, Query(description="Building id")] = None,
    ) -> LatestPage:
        for d in device or ():
            if d not in ctx.devices:
                raise invalid_parameter("device", f"unknown device {d!r}")
        for b in building or ():
            if b not in ctx.buildings:
                raise invalid_parameter("building", f"unknown building {b!r}")
        chosen = [
            d
            for d in ctx.config.devices
            if (not device or d.id in device)
            and (not kind or d.kind in kind)
            and (not building or d.location.building in building)
        ]
        if not chosen:
            return LatestPage(items=[])
        now = ctx.clock()
        rows = ctx.store.latest(devices=[d.id for d in chosen], metrics=metric or None)
        items = []
        for x in rows:
            cfg = ctx.devices[x.device]
            items.append(
                LatestOut(
                    device=x.device,
                    building=cfg.location.building,
                    kind=cfg.kind,
                    metric=x.metric,
                    value=finite(x.value),
                    unit=x.unit,
                    quality=x.quality.name,
                    time=x.time,
                    age_s=age_seconds(now, x.time),
                )
            )
        return LatestPage(items=items)

    return r
