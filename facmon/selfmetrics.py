"""facmon's own health, stored as readings so Grafana can chart it next to the devices.

Every ``storage.self_metrics.interval`` the running process samples the figures of
``Pipeline.status`` (the same numbers ``/health`` and ``/metrics`` show) and the durable
writer's write timings, and stores them as readings of a pseudo-device
(``storage.self_metrics.device``, default ``facmon``) tagged ``site`` and ``role=process``.

They travel the normal write path (outbox, then store) but never reach the alert engine, and
nothing that reads devices picks them up: reports, the API's device and reading routes and
the dashboards' device queries all start from the configured devices (or their ``kind`` tag,
which the pseudo-device does not carry), and :func:`reserved_device_check` keeps a configured
device from taking the pseudo-device's id. Samples queued while the store is down are written
with their own times once it is back, so ``store_up`` = 0 shows an outage after the fact.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from config.loader import Loc
from config.models import SelfMetrics, SiteConfig
from store.reading import Quality, Reading

if TYPE_CHECKING:  # the config checks import this module: no Arrow or SQLite for them
    from store.outbox import WriterStats

log = logging.getLogger(__name__)

ROLE = "process"  # the ``role`` tag: what the pseudo-device stands for

# metric -> unit. Counters (``samples_*``) count from the process start.
METRICS: dict[str, str] = {
    "store_up": "",
    "outbox_depth": "",
    "store_write_latency_ms": "ms",
    "samples_written": "",
    "samples_dropped": "",
    "devices_up": "",
    "devices_down": "",
    "poll_success_ratio": "",
    "paging_outbox_depth": "",
    "unresolved_alerts": "",
}


def self_tags(site_id: str) -> dict[str, str]:
    return {"site": site_id, "role": ROLE}


@dataclass
class Sampler:
    """Turns status snapshots into readings; remembers the writer's totals of the previous
    sample so the write latency is the mean over the interval, not over the whole run."""

    site_id: str
    device: str = "facmon"
    _batches: int = 0
    _seconds: float = 0.0

    def sample(
        self, status: Mapping[str, Any], writer: WriterStats, now: datetime
    ) -> list[Reading]:
        """Readings at ``now``; a figure the status lacks (no pager, the ticket database not
        answering, no device polled yet) is left out rather than stored as zero."""
        store = status.get("store", {})
        collector = status.get("collector", {})
        alerts = status.get("alerts", {})
        paging = status.get("paging") or {}
        up, down = _number(collector.get("devices_up")), _number(collector.get("devices_down"))
        values: dict[str, float | None] = {
            "store_up": 1.0 if store.get("up", writer.store_up) else 0.0,
            "outbox_depth": float(store.get("outbox_depth", writer.depth)),
            "store_write_latency_ms": self._latency_ms(writer),
            "samples_written": float(writer.written),
            "samples_dropped": float(writer.dropped_overflow + writer.dropped_rejected),
            "devices_up": up,
            "devices_down": down,
            "poll_success_ratio": _ratio(
                collector.get("devices_up"), collector.get("devices_down")
            ),
            "paging_outbox_depth": _number(paging.get("outbox_depth")),
            "unresolved_alerts": _number(alerts.get("unresolved")),
        }
        tags = self_tags(self.site_id)
        return [
            Reading(now, self.device, metric, v, METRICS[metric], Quality.GOOD, tags)
            for metric, v in values.items()
            if v is not None
        ]

    def _latency_ms(self, writer: WriterStats) -> float | None:
        batches = writer.write_batches - self._batches
        seconds = writer.write_seconds - self._seconds
        self._batches, self._seconds = writer.write_batches, writer.write_seconds
        if batches <= 0:
            return None  # nothing written in the interval: no latency to report
        return seconds / batches * 1000


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _ratio(up: float | None, down: float | None) -> float | None:
    """Share of the polled devices whose latest poll succeeded (devices not polled yet are
    not counted); None before any poll."""
    if up is None or down is None or up + down == 0:
        return None
    return up / (up + down)


class Source(Protocol):
    """What :func:`run` reads from (``facmon.runtime.Pipeline``)."""

    @property
    def config(self) -> SiteConfig: ...

    def status(self) -> dict[str, Any]: ...

    @property
    def writer_stats(self) -> WriterStats: ...

    def record(self, readings: Sequence[Reading]) -> None: ...


async def run(source: Source, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Sample every ``storage.self_metrics.interval`` until cancelled. A failure is logged
    once and retried. (A reload keeps the running ``storage`` block, this one included: a
    change of it takes a restart, like the store's.)"""
    settings = source.config.storage.self_metrics
    if not settings.enabled:
        return
    sampler = Sampler(source.config.site.id, settings.device)
    failing = False
    while True:
        await asyncio.sleep(settings.interval.total_seconds())
        try:
            # status() may wait up to seconds for the ticket database; put() does an fsync.
            readings = await asyncio.to_thread(_sample_once, source, sampler, clock())
        except Exception:
            if not failing:
                log.exception("storing facmon's own figures failed; retried every interval")
                failing = True
        else:
            if failing:
                log.info("storing facmon's own figures works again")
                failing = False
            log.debug("stored %d self-metric readings", len(readings))


def _sample_once(source: Source, sampler: Sampler, now: datetime) -> list[Reading]:
    readings = sampler.sample(source.status(), source.writer_stats, now)
    source.record(readings)
    return readings


def reserved_device_check(data: Any) -> Iterable[tuple[Loc, str]]:
    """A configured device may not use the self-metrics device id (a config check, run on the
    raw YAML like facmon.checks)."""
    if not isinstance(data, dict):
        return
    storage = data.get("storage")
    sm = storage.get("self_metrics") if isinstance(storage, dict) else None
    reserved = sm.get("device") if isinstance(sm, dict) else None
    if not isinstance(reserved, str):
        reserved = str(SelfMetrics.model_fields["device"].default)
    devices = data.get("devices")
    for i, dev in enumerate(devices if isinstance(devices, list) else []):
        if isinstance(dev, dict) and dev.get("id") == reserved:
            yield (
                ("devices", i, "id"),
                f"device id '{reserved}' is taken by facmon's own figures "
                "(storage.self_metrics.device): rename the device or set another id there",
            )
