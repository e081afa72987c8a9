"""The tags stored with every reading of a device, in one place for the collector, the
simulator's back-fill and anything else that produces readings for a configured device."""

from __future__ import annotations

from config.models import Device


def device_tags(site_id: str, device: Device) -> dict[str, str]:
    """Location and kind, over the device's own tags.

    Location tags are set last so a device tag cannot relabel where the device is; empty floor
    and tenant are left out because InfluxDB rejects empty tag values.
    """
    tags = dict(device.tags)
    tags["site"] = site_id
    tags["building"] = device.location.building
    if device.location.floor:
        tags["floor"] = device.location.floor
    tags["kind"] = device.kind
    if device.location.tenant:
        tags["tenant"] = device.location.tenant
    return tags
