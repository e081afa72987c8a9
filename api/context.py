"""What every route needs: the config, the stores and the clock, built once per app."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from alerts.tickets import TicketStore
from config.models import Device, SiteConfig
from reports.context import ReportContext, utc_now
from store.base import Store


@dataclass(frozen=True)
class Context:
    config: SiteConfig
    store: Store
    tickets: TicketStore
    clock: Callable[[], datetime] = utc_now
    tz: ZoneInfo = field(init=False)
    devices: Mapping[str, Device] = field(init=False)
    buildings: Mapping[str, str] = field(init=False)  # id -> display name
    reports: ReportContext = field(init=False)

    def __post_init__(self) -> None:
        # Reports and routes read the same site: derive the lookups once, in the report context.
        rc = ReportContext(self.config, self.store, self.tickets, self.clock)
        object.__setattr__(self, "reports", rc)
        object.__setattr__(self, "tz", rc.tz)
        object.__setattr__(self, "devices", rc.devices)
        object.__setattr__(self, "buildings", {b: v.name for b, v in rc.buildings.items()})


def finite(v: float) -> float | None:
    """JSON has no NaN or infinity: a value that is not a number is reported as null."""
    return v if math.isfinite(v) else None


def age_seconds(now: datetime, t: datetime) -> float:
    return round((now - t).total_seconds(), 3)
