"""The InfluxDB outage test: every sample written during a real influxd outage lands exactly once.

A producer thread puts 20 readings every 50 ms into DurableWriter -> InfluxStore (through the
write shim, see tests/fixtures/influxd.py) while the real influxd is stopped for ~4 s and started
again on the same ports and data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.models import OutboxSettings
from store.influx import InfluxStore
from store.outbox import DurableWriter
from store.reading import Reading
from tests.fixtures.influxd import InfluxServer

T0 = datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
DEVICES = ("pm-1", "pm-2", "电梯-3", "wm 4")
METRICS = ("power", "energy", "voltage", "current", "flow")  # 4 x 5 = 20 readings per tick
TICK = 0.05


def tick_readings(k: int) -> list[Reading]:
    """Tick ``k``: one reading per device and metric at T0 + k s, value encoding (k, slot)."""
    return [
        Reading(
            T0 + timedelta(seconds=k),
            d,
            m,
            k * 100.0 + i * len(METRICS) + j,
            "u",
            tags={"site": "outage-test"},
        )
        for i, d in enumerate(DEVICES)
        for j, m in enumerate(METRICS)
    ]


@pytest.mark.slow
def test_influx_outage_loses_and_duplicates_nothing(
    influx_store_factory: Callable[[], InfluxStore], influxd: InfluxServer, tmp_path: Path
) -> None:
    store = influx_store_factory()
    settings = OutboxSettings(
        batch_size=200,
        flush_interval=timedelta(milliseconds=100),
        retry_initial=timedelta(milliseconds=200),
        retry_max=timedelta(seconds=1),
    )
    writer = DurableWriter(store, tmp_path / "outbox.db", settings)
    writer.start()

    ticks = 0
    stop_producing = threading.Event()
    producer_error: list[BaseException] = []

    def produce() -> None:
        nonlocal ticks
        try:
            next_at = time.monotonic()
            while not stop_producing.is_set():
                writer.put(tick_readings(ticks))
                ticks += 1
                next_at += TICK
                time.sleep(max(0.0, next_at - time.monotonic()))
        except BaseException as e:  # surfaced by the assertion below
            producer_error.append(e)

    producer = threading.Thread(target=produce, name="outage-producer", daemon=True)
    seen_down = False
    try:
        producer.start()
        time.sleep(1.0)
        ticks_before_outage = ticks
        influxd.stop()
        down_until = time.monotonic() + 4.0
        while time.monotonic() < down_until:
            seen_down = seen_down or not writer.stats.store_up
            time.sleep(0.05)
        queued_during_outage = writer.stats.depth
    finally:
        influxd.start()
    try:
        time.sleep(1.0)
        stop_producing.set()
        producer.join(5)
        assert not producer_error, producer_error
        assert writer.flush(timeout=60), writer.stats
    finally:
        stop_producing.set()
        writer.close()

    stats = writer.stats
    total = ticks * len(DEVICES) * len(METRICS)
    assert ticks_before_outage > 0 and ticks > ticks_before_outage + 60  # wrote throughout
    assert seen_down, "the writer never reported the store down during the outage"
    assert queued_during_outage > 0
    assert stats.store_up and stats.retries > 0, stats
    assert stats.depth == 0 and stats.dropped_rejected == 0 and stats.dropped_overflow == 0
    assert stats.written >= total  # replays of a batch whose answer was lost count twice

    # Exactly once, read straight from influxd: count and sum per device and metric.
    q = 'SELECT count("value"), sum("value") FROM /.*/ GROUP BY "device"'
    got = {
        (s["name"], s["tags"]["device"]): (s["values"][0][1], s["values"][0][2])
        for s in influxd.query(q, db=store.settings.bucket)["results"][0]["series"]
    }
    expected = {
        (m, d): (ticks, sum(k * 100.0 + i * len(METRICS) + j for k in range(ticks)))
        for i, d in enumerate(DEVICES)
        for j, m in enumerate(METRICS)
    }
    assert got == expected
