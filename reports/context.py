"""What every report needs: the site config, the reading store, the tickets and the clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alerts.tickets import TicketStore
from config.models import Building, Device, DeviceKind, SiteConfig
from store.base import Store


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReportContext:
    config: SiteConfig
    store: Store
    tickets: TicketStore
    clock: Callable[[], datetime] = utc_now
    tz: ZoneInfo = field(init=False)
    devices: Mapping[str, Device] = field(init=False)
    buildings: Mapping[str, Building] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tz", ZoneInfo(self.config.site.timezone))
        object.__setattr__(self, "devices", {d.id: d for d in self.config.devices})
        object.__setattr__(self, "buildings", {b.id: b for b in self.config.buildings})

    def of_kind(self, kind: DeviceKind, building: str | None = None) -> list[Device]:
        """Configured devices of ``kind`` (in config order), optionally in one building."""
        return [
            d
            for d in self.config.devices
            if d.kind == kind and (building is None or d.location.building == building)
        ]

    def mains(self, kind: DeviceKind, building: str | None = None) -> list[Device]:
        """Meters of ``kind`` without a parent: their sum is the building's total."""
        return [d for d in self.of_kind(kind, building) if d.parent is None]

    def children(self, device_id: str) -> list[Device]:
        return [d for d in self.config.devices if d.parent == device_id]
