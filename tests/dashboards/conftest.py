"""Demo data in a real influxd for the dashboard queries.

A day of the demo site's history from the simulator (what ``facmon demo`` back-fills), written
through :class:`store.influx.InfluxStore` like any store write, then a few live polls of every
simulated device by the real Modbus collector, so the health series (``poll_latency`` ...)
exist as a running site stores them. Lift 1 of the mall has a fault with a passenger shut in
at the end, as the demo injects one, and the shaft's busbar is over 70 °C, so the alert rules
have something to trip on. facmon's
own figures are there too, sampled by facmon.selfmetrics from status snapshots of a process
that lived through a 20-minute store outage (the outbox fills, then drains).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from collector import ModbusCollector
from config import SiteConfig, load_config_text
from config.models import InfluxStorage
from facmon.checks import CHECKS
from facmon.selfmetrics import Sampler
from simulator import SimulatedBuilding, with_ports
from store import Reading
from store.influx import InfluxStore, init_influx
from store.outbox import WriterStats
from tests.fixtures.influxd import InfluxServer

DB = "facmon_dashboards"
HISTORY = timedelta(hours=26)
STEP = timedelta(minutes=5)
FAULTY_LIFT = "mall-elevator-1"


def load_demo() -> SiteConfig:
    text = resources.files("simulator").joinpath("demo_site.yaml").read_text(encoding="utf-8")
    return load_config_text(text, filename="demo_site.yaml", checks=CHECKS)


@pytest.fixture(scope="session")
def demo_site() -> SiteConfig:
    return load_demo()


@dataclass(frozen=True)
class DemoData:
    server: InfluxServer
    db: str
    start: datetime
    end: datetime  # after the last sample
    samples: int


async def _poll_live(sim: SimulatedBuilding, config: SiteConfig) -> list[Reading]:
    ports = await sim.start(now=datetime.now(UTC), free_ports=True)
    out: list[Reading] = []
    try:
        sim.inject_fault(FAULTY_LIFT, 31, timedelta(minutes=10), entrapment=True)
        live = with_ports(config, ports)
        collector = ModbusCollector(live.devices, out.extend, site_id=config.site.id)
        try:
            for _ in range(3):
                sim.update(datetime.now(UTC))
                for d in live.devices:
                    if d.id in ports:  # the MQTT sensors publish rather than being polled
                        await collector.poll_device(d.id)
                await asyncio.sleep(0.05)
        finally:
            collector.close()
    finally:
        await sim.stop()
    return out


def self_metrics(config: SiteConfig, start: datetime, end: datetime) -> list[Reading]:
    """What facmon.selfmetrics stores every ``storage.self_metrics.interval`` from
    ``Pipeline.status()`` and the writer's stats: a status snapshot per interval of a process
    polling the site's devices, with the store down for 20 minutes two hours before ``end``."""
    settings = config.storage.self_metrics
    sampler = Sampler(config.site.id, settings.device)
    outage = (end - timedelta(hours=2), end - timedelta(hours=2) + timedelta(minutes=20))
    per_step = 40  # samples the site's devices produce per interval
    devices = len(config.devices)
    written = depth = batches = 0
    seconds = 0.0
    out: list[Reading] = []
    t, i = start, 0
    while t < end:
        down = outage[0] <= t < outage[1]
        if down:
            depth += per_step
        else:
            written += per_step + depth
            batches += 1 + depth // 5000
            seconds += 0.004 + 0.002 * (i % 5) + depth * 1e-6
            depth = 0
        failing = 1 if i % 97 == 0 else 0  # a device misses a poll now and then
        status = {
            "store": {"up": not down, "outbox_depth": depth},
            "collector": {
                "devices": devices,
                "devices_up": devices - failing,
                "devices_down": failing,
            },
            "alerts": {"unresolved": 1 if t >= end - timedelta(hours=1) else 0},
            "paging": {"outbox_depth": i % 3},
        }
        stats = WriterStats(
            written=written,
            retries=0,
            dropped_overflow=0,
            dropped_rejected=0,
            depth=depth,
            last_error=None,
            store_up=not down,
            write_batches=batches,
            write_seconds=seconds,
        )
        out.extend(sampler.sample(status, stats, t))
        t, i = t + settings.interval, i + 1
    return out


@pytest.fixture(scope="session")
def demo_influx(influxd: InfluxServer, demo_site: SiteConfig) -> Iterator[DemoData]:
    settings = InfluxStorage(url=influxd.shim_url, bucket=DB)
    init_influx(settings)
    store = InfluxStore(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - HISTORY
    sim = SimulatedBuilding(demo_site, seed=7)
    n = 0
    try:
        pending: list[Reading] = []
        for batch in sim.history(start, now, STEP):
            pending.extend(batch)
            if len(pending) >= 20_000:
                store.write(pending)
                n, pending = n + len(pending), []
        live = asyncio.run(_poll_live(sim, demo_site))
        # The shaft's busbar (an MQTT sensor) is over its rule's 70 °C at the end too.
        live += [replace(r, value=78.0) for r in sim.mqtt_sensors.readings(now, {"temperature"})]
        own = self_metrics(demo_site, start, now)
        store.write(pending + live + own)
        n += len(pending) + len(live) + len(own)
    finally:
        store.close()
    yield DemoData(influxd, DB, start, datetime.now(UTC) + timedelta(seconds=1), n)
