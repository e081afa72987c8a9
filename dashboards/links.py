"""Stable names of a site's Grafana objects, and links into them.

Uids are derived from the site id and the dashboard's role only, so a second export or push
of the same site addresses the same folder, datasource and dashboards (Grafana updates them
in place) and a link written into a ticket keeps working after the dashboards are
regenerated.
"""

from __future__ import annotations

import hashlib
import urllib.parse

from config.models import DeviceKind, SiteConfig

_UID_LIMIT = 40  # Grafana refuses longer dashboard and folder uids

# Which dashboard shows a device of each kind, and the id of the panel that shows it best
# (generate.py builds that panel first, with this id, filtered by $device).
DEVICE_PANELS: dict[DeviceKind, tuple[str, int]] = {
    "power_meter": ("electrical", 2),
    "sensor": ("electrical", 3),
    "elevator": ("elevators", 2),
    "water_meter": ("water", 2),
}


def uid(site_id: str, role: str) -> str:
    """``fm-<site>-<role>``, or with a hash of the site id when that is over 40 characters."""
    plain = f"fm-{site_id}-{role}" if role else f"fm-{site_id}"
    if len(plain) <= _UID_LIMIT:
        return plain
    digest = hashlib.sha256(site_id.encode()).hexdigest()[:10]
    short = f"fm-{digest}-{role}" if role else f"fm-{digest}"
    return short[:_UID_LIMIT]


def folder_uid(config: SiteConfig) -> str:
    return uid(config.site.id, "")


def datasource_uid(config: SiteConfig) -> str:
    return uid(config.site.id, "influxdb")


def dashboard_uid(config: SiteConfig, role: str) -> str:
    return uid(config.site.id, role)


def device_panel_url(config: SiteConfig, device_id: str) -> str | None:
    """The Grafana address of the panel showing ``device_id`` (its building and the device
    selected, the panel in view), or None without ``grafana.url`` or for an unknown device.

    For links from tickets: ``/d/<uid>`` is all Grafana needs (it adds the slug itself).
    """
    base = config.grafana.url
    if not base:
        return None
    try:
        device = config.device(device_id)
    except KeyError:
        return None
    role, panel_id = DEVICE_PANELS[device.kind]
    query = urllib.parse.urlencode(
        {
            "orgId": "1",
            "var-building": device.location.building,
            "var-device": device.id,
            "viewPanel": str(panel_id),
        }
    )
    return f"{base.rstrip('/')}/d/{dashboard_uid(config, role)}?{query}"
