"""GET /api/v1/devices: the configured devices and whether they answer."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.context import Context, age_seconds
from config.models import DeviceKind, ModbusRtuSource, MqttSource

UP_METRIC = "device_up"  # written by the collector at every poll: 1 answered, 0 did not
STALE_POLLS = 3  # a status older than this many poll intervals is flagged stale


class LocationOut(BaseModel):
    building: str
    floor: str
    tenant: str | None


class SourceOut(BaseModel):
    """How the device is read; never carries secrets."""

    type: str = Field(description="modbus_tcp | modbus_rtu_over_tcp | modbus_rtu | mqtt")
    host: str | None = Field(
        description="Device or gateway address; null for a serial port or MQTT"
    )
    port: int | str | None = Field(
        description="TCP port, or the serial device (e.g. /dev/ttyUSB0); null for MQTT"
    )
    unit_id: int | None = Field(description="Modbus unit id; null for MQTT")
    profile: str | None = Field(description="Register map; null for MQTT")
    poll_interval_s: float


class StatusOut(BaseModel):
    state: Literal["up", "down", "unknown"] = Field(
        description="From the latest device_up sample; unknown when there is none"
    )
    last_seen: datetime | None = Field(description="Time of that sample (UTC)")
    age_s: float | None = Field(description="Seconds since that sample")
    stale: bool = Field(description=f"The sample is older than {STALE_POLLS} poll intervals")


class DeviceOut(BaseModel):
    id: str
    name: str
    kind: DeviceKind
    location: LocationOut
    tags: dict[str, str]
    source: SourceOut
    status: StatusOut


class DevicesOut(BaseModel):
    items: list[DeviceOut]


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["devices"])

    @r.get("/devices", response_model=DevicesOut, summary="Configured devices and live status")
    def devices() -> DevicesOut:
        now = ctx.clock()
        latest = {x.device: x for x in ctx.store.latest(metrics=[UP_METRIC])}
        items: list[DeviceOut] = []
        for d in ctx.config.devices:
            poll = d.poll_interval
            sample = latest.get(d.id)
            if sample is None:
                status = StatusOut(state="unknown", last_seen=None, age_s=None, stale=True)
            else:
                status = StatusOut(
                    state="up" if sample.value >= 0.5 else "down",
                    last_seen=sample.time,
                    age_s=age_seconds(now, sample.time),
                    stale=now - sample.time > max(poll * STALE_POLLS, timedelta(seconds=1)),
                )
            src = d.source
            items.append(
                DeviceOut(
                    id=d.id,
                    name=d.name,
                    kind=d.kind,
                    location=LocationOut(
                        building=d.location.building,
                        floor=d.location.floor,
                        tenant=d.location.tenant,
                    ),
                    tags=dict(d.tags),
                    source=(
                        SourceOut(
                            type=src.type,
                            host=None,
                            port=None,
                            unit_id=None,
                            profile=None,
                            poll_interval_s=poll.total_seconds(),
                        )
                        if isinstance(src, MqttSource)
                        else SourceOut(
                            type=src.type,
                            host=None if isinstance(src, ModbusRtuSource) else src.host,
                            port=src.port,
                            unit_id=src.unit_id,
                            profile=src.profile,
                            poll_interval_s=poll.total_seconds(),
                        )
                    ),
                    status=status,
                )
            )
        return DevicesOut(items=items)

    return r
