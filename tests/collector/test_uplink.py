"""Edge and central roles (issue 4, item 5): an edge publishes what it stores, ingest workers on a
shared subscription store it. Real Mosquitto: the shared one at 127.0.0.1:1883 for the plain
end-to-end case, a private one (tests/collector/mosquitto.py) that is stopped and restarted for
the outage case; real outboxes and embedded (DuckDB) stores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.ingest import IngestWorker
from collector.uplink import UplinkPublisher
from collector.uplink_format import BadBatch, decode_batch, encode_batches
from config.loader import ConfigError, load_config_text
from config.models import SiteConfig
from facmon.ingest import worker_config
from facmon.runtime import Pipeline, open_store
from store.base import Store
from store.columnar import ReadingBatch
from store.influx import InfluxStore
from store.outbox import DurableWriter
from tests.collector.mosquitto import SHARED, PrivateBroker, Publisher, free_port, unique, wait_for
from tests.collector.uplink_sites import (
    central,
    edge,
    edge_text,
    expected_rows,
    samples,
    stored_rows,
)

# -- the wire format ----------------------------------------------------------------------------


def test_batches_round_trip_per_building_in_order() -> None:
    readings = samples(0, 1000)
    messages = list(encode_batches("s1", ReadingBatch.from_readings(readings), 150))
    assert {m.building for m in messages} == {"b1", "b2"}
    assert all(m.samples <= 150 for m in messages)
    back = {
        b: [r for m in messages if m.building == b for r in decode_batch(m.payload).readings]
        for b in ("b1", "b2")
    }
    for b, got in back.items():
        assert got == [r for r in readings if r.tags["building"] == b]  # order kept per building
    doc = json.loads(messages[0].payload)
    assert doc["v"] == 1 and doc["site"] == "s1" and len(doc["tags"]) == 1  # tags sent once
    prefixed = decode_batch(messages[0].payload, "site_prefixed").readings[0]
    assert prefixed.device.startswith("s1.dev-")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "not_a_batch"),
        (b'{"v": 2}', "unknown_version"),
        (
            b'{"v":1,"site":"s","building":"b","tags":[{}],"series":[["d","m","",0]],"points":[]}',
            "not_a_batch",
        ),
        (
            b'{"v":1,"site":"s","building":"b","tags":[{}],"series":[["d","m","",0]],'
            b'"points":[[1,5,1.0,0]]}',
            "bad_point",
        ),
        (
            b'{"v":1,"site":"s","building":"b","tags":[{}],"series":[["d","m","",0]],'
            b'"points":[[0,5,"x",0]]}',
            "bad_point",
        ),
        (
            b'{"v":1,"site":"s","building":"b","tags":[{}],"series":[["d","m","",0]],'
            b'"points":[[0,5.5,1.0,0]]}',
            "bad_point",
        ),
        (
            b'{"v":1,"site":"s","building":"b","tags":[{}],"series":[["d","m","",0]],'
            b'"points":[[0,5,1.0,3]]}',
            "bad_point",
        ),
        (
            b'{"v":1,"site":"s","building":"b","tags":[{"a":1}],"series":[["d","m","",0]],'
            b'"points":[[0,5,1.0,0]]}',
            "bad_series",
        ),
        (
            b'{"v":1,"site":"s","building":"b","tags":[{}],"series":[["","m","",0]],'
            b'"points":[[0,5,1.0,0]]}',
            "bad_series",
        ),
    ],
)
def test_bad_batches_are_refused_whole(payload: bytes, reason: str) -> None:
    with pytest.raises(BadBatch) as e:
        decode_batch(payload)
    assert e.value.reason == reason


def test_config_errors_name_the_field_and_line(tmp_path: Path) -> None:
    text = edge_text(1883, "p", "c", tmp_path).replace(
        '"p/{site}/{building}"', '"p/{site}/{floor}"'
    )
    with pytest.raises(ConfigError) as e:
        load_config_text(text, env={})
    msg = str(e.value)
    assert "uplink.topic_prefix" in msg and "{floor}" in msg and msg.startswith("<string>:10 ")


# -- edge -> broker -> ingest -------------------------------------------------------------------


class Central:
    """One ingest worker with its real durable path (outbox -> embedded store)."""

    def __init__(self, config: SiteConfig, worker: str = "1", store: Store | None = None) -> None:
        self.config = worker_config(config, worker)
        self.store = store or open_store(self.config)
        self.writer = DurableWriter(self.store, self.config.outbox_path, self.config.storage.outbox)
        self.writer.start()
        self.worker = IngestWorker(self.config, self.writer.put, worker=worker)
        self.worker.start()
        wait_for(lambda: self.worker.subscribed, 5, "ingest worker subscribed")

    def stored(self) -> int:
        """Distinct samples in the store (the embedded store skips duplicates)."""
        return self.store.stats.written

    def close(self) -> Path:
        self.worker.stop(timeout=5)
        assert self.writer.close(10)
        self.store.close()
        return self.config.embedded_path


@pytest.fixture
def cleanup() -> Iterator[list[object]]:
    things: list[object] = []
    yield things
    for t in reversed(things):
        if isinstance(t, Central):
            t.worker.stop(timeout=1)
            t.writer.close(1)
            t.store.close()
        elif isinstance(t, UplinkPublisher):
            t.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_edge_to_ingest_stores_every_sample_once(
    tmp_path: Path, cleanup: list[object], protocol: str
) -> None:
    prefix = unique("up")
    cen = Central(central(SHARED[1], prefix, unique("ing"), unique("g"), tmp_path / "central"))
    cleanup.append(cen)
    extra = f"  protocol: '{protocol}'\n"
    pub = UplinkPublisher(edge(SHARED[1], prefix, unique("edge"), tmp_path / "edge", extra))
    cleanup.append(pub)
    pub.start()
    readings = samples(0, 6000)
    for i in range(0, len(readings), 250):  # the way Pipeline.ingest hands over polls
        pub.put(readings[i : i + 250])
    wait_for(lambda: pub.stats.buffered == 0, 20, "edge buffer drained")
    wait_for(lambda: cen.stored() >= len(readings), 20, "ingest stored all")
    st = pub.stats
    assert st.published == len(readings) and st.dropped == 0 and st.connected
    assert cen.worker.stats.bad == {}
    rows = stored_rows([cen.close()])
    assert len(rows) == len(readings)
    got = {(d, m, t): (v, u, q) for d, m, t, v, u, q, _ in rows}
    assert got == expected_rows(readings)
    tags = {json.loads(r[6])["building"] for r in rows}
    assert tags == {"b1", "b2"}
    assert any(json.loads(r[6]).get("zone") == "井道" for r in rows)


def test_broker_outage_buffers_on_disk_and_loses_nothing(
    tmp_path: Path, cleanup: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    broker = PrivateBroker(tmp_path / "broker")
    broker.start()
    try:
        prefix = unique("up")
        cen = Central(central(broker.port, prefix, unique("ing"), unique("g"), tmp_path / "c"))
        cleanup.append(cen)
        pub = UplinkPublisher(edge(broker.port, prefix, unique("edge"), tmp_path / "edge"))
        cleanup.append(pub)
        pub.start()
        wait_for(lambda: pub.connected, 5, "edge connected")
        readings = samples(0, 9000)
        caplog.set_level(logging.WARNING, logger="collector.uplink")
        for k, i in enumerate(range(0, len(readings), 300)):
            pub.put(readings[i : i + 300])
            if k == 10:
                broker.stop()  # mid-stream: some batches in flight, the rest must wait
                wait_for(lambda: not pub.connected, 5, "edge noticed the outage")
        buffered = pub.stats.buffered
        assert buffered > 0  # on disk while the broker is away
        assert any("buffering samples on disk" in r.getMessage() for r in caplog.records)
        broker.start()
        wait_for(lambda: pub.stats.buffered == 0, 20, "buffer drained after the restart")
        wait_for(lambda: cen.stored() >= len(readings), 20, "ingest stored all")
        assert pub.stats.connects >= 2 and pub.stats.dropped == 0
        rows = stored_rows([cen.close()])
        got = {(d, m, t): (v, u, q) for d, m, t, v, u, q, _ in rows}
        assert len(rows) == len(got) == len(readings)  # exactly once, re-sends included
        assert got == expected_rows(readings)
    finally:
        broker.stop()


def test_edge_buffer_survives_a_restart_and_is_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No broker at all (a closed port): what the pipeline ingests waits on disk, a new
    process finds it, and past max_buffered the oldest samples are dropped, counted, logged."""
    port = free_port()
    cfg = edge(port, "p", unique("edge"), tmp_path / "edge", extra="  max_buffered: 1000\n")
    pipeline = Pipeline.build(cfg)
    assert pipeline.uplink is not None
    pipeline.writer.start()
    caplog.set_level(logging.WARNING, logger="collector.uplink")
    pipeline.ingest(samples(0, 800))
    status = pipeline.status()["uplink"]
    assert status == {**status, "buffered": 800, "published": 0, "dropped": 0, "connected": False}
    pipeline.close()

    again = UplinkPublisher(cfg)  # "the next start": nothing lost in between
    try:
        assert again.stats.buffered == 800
        again.put(samples(800, 500))
        assert again.stats.buffered == 1000 and again.stats.dropped == 300
        assert any("disk buffer is full" in r.getMessage() for r in caplog.records)
        _, oldest = again.buffer.take(1)
        assert oldest[0] == samples(300, 1)[0]  # the oldest went first
    finally:
        again.close()


def test_ingest_counts_bad_messages_and_other_sites_and_keeps_going(
    tmp_path: Path, cleanup: list[object]
) -> None:
    prefix = unique("up")
    cfg = central(SHARED[1], prefix, unique("ing"), unique("g"), tmp_path / "c", protocol="3.1.1")
    cfg = cfg.model_copy(
        update={"ingest": cfg.ingest.model_copy(update={"sites": ["s1"]})}  # type: ignore[union-attr]
    )
    cen = Central(cfg)
    cleanup.append(cen)
    good = samples(0, 300)
    msgs = list(encode_batches("s1", ReadingBatch.from_readings(good), 1000))
    other = next(encode_batches("s9", ReadingBatch.from_readings(samples(500, 10)), 1000))
    p = Publisher(*SHARED)
    try:
        p.publish_burst(
            [
                (f"{prefix}/s1/b1/readings", b"{oops"),
                *((f"{prefix}/s1/{m.building}/readings", m.payload) for m in msgs),
                (f"{prefix}/s9/b1/readings", other.payload),
                (f"{prefix}/s1/b1/readings", b'{"v": 7}'),
            ]
        )
    finally:
        p.close()
    wait_for(lambda: cen.worker.stats.received == len(msgs) + 3, 10, "all messages received")
    wait_for(lambda: cen.worker.stats.pending == 0, 10, "all messages handled")
    st = cen.worker.stats
    assert st.bad == {"malformed_json": 1, "site_not_accepted": 1, "unknown_version": 1}
    assert st.acked == len(msgs) + 3  # bad ones are acknowledged too: no poison loop
    rows = stored_rows([cen.close()])
    assert {(d, m, t) for d, m, t, *_ in rows} == set(expected_rows(good))


def test_batches_nobody_subscribed_to_stay_buffered_until_a_worker_comes(
    tmp_path: Path, cleanup: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5 PUBACK 'no matching subscribers' (no ingest worker yet, or right after a broker
    restart: Mosquitto 2.0 does not restore shared subscriptions from persistence) is not a
    delivery: the batches stay on disk and are sent again."""
    prefix = unique("up")
    caplog.set_level(logging.WARNING, logger="collector.uplink")
    pub = UplinkPublisher(edge(SHARED[1], prefix, unique("edge"), tmp_path / "edge"))
    cleanup.append(pub)
    pub.start()
    readings = samples(0, 1000)
    pub.put(readings)
    wait_for(lambda: pub.stats.refused > 0, 5, "the broker refused a batch")
    assert pub.stats.buffered == len(readings) and pub.stats.published == 0
    assert any("without taking them" in r.getMessage() for r in caplog.records)
    cen = Central(central(SHARED[1], prefix, unique("ing"), unique("g"), tmp_path / "central"))
    cleanup.append(cen)
    wait_for(lambda: cen.stored() >= len(readings), 20, "stored once a worker subscribed")
    wait_for(lambda: pub.stats.buffered == 0, 5, "buffer drained")
    rows = stored_rows([cen.close()])
    assert {(d, m, t) for d, m, t, *_ in rows} == set(expected_rows(readings))


def test_ingest_into_influxdb(
    tmp_path: Path, cleanup: list[object], influx_store_factory: Callable[[], InfluxStore]
) -> None:
    """The central store is usually InfluxDB: real influxd (tests/fixtures/influxd.py)."""
    prefix = unique("up")
    store = influx_store_factory()
    cfg = central(SHARED[1], prefix, unique("ing"), unique("g"), tmp_path / "central")
    cen = Central(cfg, store=store)
    cleanup.append(cen)
    pub = UplinkPublisher(edge(SHARED[1], prefix, unique("edge"), tmp_path / "edge"))
    cleanup.append(pub)
    pub.start()
    readings = samples(0, 3000)
    pub.put(readings)
    wait_for(lambda: cen.stored() >= len(readings), 20, "InfluxDB has every sample")
    series = store.query(
        'SELECT "value", "quality" FROM "temperature", "humidity", "leak" GROUP BY "device", "unit"'
    )
    got = {
        (s["tags"]["device"], s["name"], t): (v, s["tags"].get("unit", ""), q)
        for s in series
        for t, v, q in s["values"]
    }
    assert got == expected_rows(readings)
