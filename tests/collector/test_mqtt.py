"""MQTT ingestion against real Mosquitto brokers: mapping, bad payloads, broker restarts and a
consumer killed mid-stream.

Plain cases use the shared broker at 127.0.0.1:1883 with a unique topic prefix and client id per
test; fault cases start a private mosquitto (tests/collector/mosquitto.py) that can be stopped
and restarted with its persistent sessions.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.mqtt import MqttCollector, PayloadError, parse_line_protocol, topic_matches
from config.loader import load_config_text
from config.models import SiteConfig
from store.embedded import EmbeddedStore
from store.outbox import DurableWriter
from store.reading import Reading
from tests.collector.mosquitto import SHARED, PrivateBroker, Publisher, unique, wait_for

ROOT = Path(__file__).parents[2]

BASE = """\
site: {{id: s1, name: Site}}
buildings:
  - {{id: b1, name: B1, floor_area_m2: 100, floors: 2}}
devices:
{devices}
mqtt:
  host: 127.0.0.1
  port: {port}
  protocol: {protocol}
  client_id: {client_id}
  session_expiry: {expiry}
  reconnect_min: 1s
  reconnect_max: 1s
  max_pending: {max_pending}
  subscriptions:
{subscriptions}
"""


def device(dev_id: str, topic: str | None = None) -> str:
    src = "{type: mqtt}" if topic is None else f"{{type: mqtt, topic: '{topic}'}}"
    return (
        f"  - {{id: {dev_id}, name: {dev_id}, kind: sensor, "
        f"location: {{building: b1, floor: 3F}}, source: {src}, tags: {{zone: shaft}}}}"
    )


def site(
    devices: Sequence[str],
    subscriptions: str,
    *,
    port: int = SHARED[1],
    protocol: str = "5",
    client_id: str | None = None,
    expiry: str = "60s",
    max_pending: int = 10_000,
    tmp: Path | None = None,
) -> SiteConfig:
    text = BASE.format(
        devices="\n".join(devices),
        port=port,
        protocol=protocol,
        client_id=client_id or unique("facmon"),
        expiry=expiry,
        max_pending=max_pending,
        subscriptions=subscriptions,
    )
    if tmp is not None:
        text += f"data_dir: {tmp / 'data'}\n"
    return load_config_text(text, env={})


class ListSink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.readings: list[Reading] = []

    def __call__(self, readings: Sequence[Reading]) -> None:
        with self.lock:
            self.readings.extend(readings)

    def by(self, metric: str) -> list[Reading]:
        with self.lock:
            return sorted((r for r in self.readings if r.metric == metric), key=lambda r: r.time)


@pytest.fixture
def running() -> Iterator[list[MqttCollector]]:
    """Collectors a test starts; stopped at the end even when the test fails."""
    started: list[MqttCollector] = []
    yield started
    for c in started:
        c.stop(timeout=2)


def start(collector: MqttCollector, running: list[MqttCollector]) -> MqttCollector:
    collector.start()
    running.append(collector)
    # A message published before the SUBACK would not be delivered on a new session.
    wait_for(lambda: collector.subscribed, 5, "collector connected and subscribed")
    return collector


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


# -- pure parts ---------------------------------------------------------------------------------


def test_topic_filters_match_like_the_broker() -> None:
    assert topic_matches("a/+/c", "a/b/c")
    assert not topic_matches("a/+/c", "a/b/d/c")
    assert topic_matches("a/#", "a")
    assert topic_matches("a/#", "a/b/c")
    assert not topic_matches("#", "$SYS/broker")
    assert not topic_matches("a/b", "a/b/c")


def test_line_protocol_parser_is_strict() -> None:
    points = parse_line_protocol(
        "env\\ room,device=d1,floor=3F temp=21.5,hum=40i,leak=true 1700000000000000000\n"
        "# comment\n\nenv,device=d2 temp=-1e2"
    )
    assert points[0].measurement == "env room"
    assert points[0].tags == {"device": "d1", "floor": "3F"}
    assert points[0].fields == {"temp": 21.5, "hum": 40.0, "leak": 1.0}
    assert points[0].timestamp == 1700000000000000000
    assert points[1].fields == {"temp": -100.0} and points[1].timestamp is None
    for bad, reason in [
        ("env temp=", "malformed_line"),
        ("env,device= temp=1", "malformed_line"),
        ("env temp=1 12x", "malformed_line"),
        ("env temp=abc", "malformed_line"),
        ("env  temp=1", "malformed_line"),
        ("env temp=1 1 2", "malformed_line"),
        ('env name="pump"', "non_numeric"),
        ("", "malformed_line"),
    ]:
        with pytest.raises(PayloadError) as info:
            parse_line_protocol(bad)
        assert info.value.reason == reason, bad


def test_the_modbus_collector_skips_mqtt_devices_and_polls_the_others() -> None:
    from collector.modbus import ModbusCollector

    text = """\
site: {id: s1, name: Site}
buildings:
  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}
devices:
  - {id: leak1, name: Leak, kind: sensor, location: {building: b1}, source: {type: mqtt}}
  - id: m1
    name: Meter
    kind: power_meter
    location: {building: b1}
    source: {type: modbus_tcp, host: 127.0.0.1, port: 1502, profile: generic_power_meter_3p}
"""
    config = load_config_text(text, env={})
    collector = ModbusCollector(config.devices, lambda r: None, site_id="s1")
    try:
        assert collector.device_ids == ["m1"]
    finally:
        collector.close()


# -- mapping against the shared broker -----------------------------------------------------------


def test_json_number_and_line_protocol_are_mapped_to_readings(
    running: list[MqttCollector],
) -> None:
    p = unique()
    now = datetime.now(UTC).replace(microsecond=0)
    subs = f"""\
    - topic: {p}/json/+/+/s
      template: {p}/json/{{building}}/{{device}}/s
      fields:
        temperature: {{path: env.temp, unit: "°C"}}
        humidity: {{path: env.hum, unit: "%"}}
        probe2: probes.1.t
      timestamp_field: ts
    - topic: {p}/ms/+
      template: {p}/ms/{{device}}
      fields: {{temperature: t}}
      timestamp_field: meta.time
      timestamp_unit: ms
    - topic: {p}/iso/#
      device: shaft1
      fields: {{temperature: t}}
      timestamp_field: at
      timestamp_unit: iso8601
    - topic: {p}/num/+/+
      template: {p}/num/{{device}}/{{metric}}
      format: number
      units: {{water_level: m}}
    - topic: {p}/line
      format: influx_line
      line_precision: s
      unit: kWh
"""
    sink = ListSink()
    config = site([device("shaft1"), device("leak1")], subs)
    collector = start(MqttCollector(config, sink), running)
    pub = Publisher(*SHARED)
    t1 = now - timedelta(seconds=30)
    pub.publish(
        f"{p}/json/b1/shaft1/s",
        {"env": {"temp": 21.5, "hum": 40}, "probes": [{"t": 1}, {"t": 2.5}], "ts": t1.timestamp()},
    )
    t2 = now - timedelta(seconds=20, milliseconds=250)
    pub.publish(f"{p}/ms/shaft1", {"t": 22, "meta": {"time": int(t2.timestamp() * 1000)}})
    pub.publish(f"{p}/iso/x/y", {"t": 23, "at": now.isoformat()})
    # Naive ISO time is read in the site's zone (Asia/Shanghai, UTC+8).
    local = (now - timedelta(seconds=5)).astimezone(UTC).replace(tzinfo=None) + timedelta(hours=8)
    pub.publish(f"{p}/iso/z", {"t": 24, "at": local.isoformat()})
    before = datetime.now(UTC) - timedelta(seconds=1)
    pub.publish(f"{p}/num/leak1/water_level", " 0.25\n")
    t3 = int((now - timedelta(seconds=10)).timestamp())
    pub.publish(
        f"{p}/line",
        f"energy,device=leak1 import=5i,export=1.5 {t3}\nenergy,device=shaft1 import=7 {t3}",
    )
    pub.close()
    wait_for(lambda: collector.stats.readings >= 10, 5, "10 readings")

    temps = sink.by("temperature")
    assert [(r.value, r.time, r.unit) for r in temps] == [
        (21.5, t1, "°C"),
        (22.0, t2, ""),
        (24.0, now - timedelta(seconds=5), ""),
        (23.0, now, ""),
    ]
    hum = sink.by("humidity")[0]
    assert (hum.device, hum.value, hum.unit) == ("shaft1", 40.0, "%")
    assert dict(hum.tags) == {
        "site": "s1",
        "building": "b1",
        "floor": "3F",
        "kind": "sensor",
        "zone": "shaft",
    }
    assert sink.by("probe2")[0].value == 2.5
    level = sink.by("water_level")[0]
    assert (level.device, level.value, level.unit) == ("leak1", 0.25, "m")
    assert before <= level.time <= datetime.now(UTC)  # receive time, for a bare number
    energy = {
        (r.device, r.metric): (r.value, r.time, r.unit)
        for r in sink.readings
        if r.metric in ("import", "export")
    }
    t3d = datetime.fromtimestamp(t3, UTC)
    assert energy == {
        ("leak1", "import"): (5.0, t3d, "kWh"),
        ("leak1", "export"): (1.5, t3d, "kWh"),
        ("shaft1", "import"): (7.0, t3d, "kWh"),
    }
    stats = collector.stats
    assert stats.bad == {} and stats.unknown_devices == {}
    assert stats.received == stats.acked == 6


def test_qos_0_1_2_and_messages_with_mqtt5_properties_are_stored(
    running: list[MqttCollector],
) -> None:
    """QoS 0 and 1 messages without properties take the collector's own path from the packet
    to the mapping; QoS 2 and messages carrying MQTT 5 properties take paho's. Both store."""
    p = unique()
    sink = ListSink()
    subs = f"""\
    - topic: {p}/+
      template: {p}/{{device}}
      qos: 2
      fields: {{temperature: t}}
"""
    collector = start(MqttCollector(site([device("d1")], subs), sink), running)
    pub = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=unique("pub5"), protocol=MQTTProtocolVersion.MQTTv5
    )
    pub.connect(*SHARED)
    pub.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"
        sent = [
            pub.publish(f"{p}/d1", json.dumps({"t": 1}), qos=0),
            pub.publish(f"{p}/d1", json.dumps({"t": 2}), qos=1),
            pub.publish(f"{p}/d1", json.dumps({"t": 3}), qos=1, properties=props),
            pub.publish(f"{p}/d1", json.dumps({"t": 4}), qos=2),
        ]
        for info in sent:
            info.wait_for_publish(5)
        wait_for(lambda: collector.stats.acked == 3, 5, "the QoS 1 and 2 messages acknowledged")
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert sorted(r.value for r in sink.by("temperature")) == [1.0, 2.0, 3.0, 4.0]
    stats = collector.stats
    assert (stats.received, stats.stored, stats.bad) == (4, 4, {})


def test_bad_payloads_are_counted_logged_at_a_rate_and_acknowledged(
    running: list[MqttCollector], caplog: pytest.LogCaptureFixture
) -> None:
    p = unique()
    client_id = unique("facmon")
    clock_now = [datetime.now(UTC)]
    subs = f"""\
    - topic: {p}/+/data
      template: {p}/{{device}}/data
      fields: {{temperature: t}}
      timestamp_field: ts
    - topic: {p}/+/line
      template: {p}/{{device}}/line
      format: influx_line
"""
    sink = ListSink()
    config = site([device("d1"), device("d2", topic=f"{p}/d2/data")], subs, client_id=client_id)
    collector = start(MqttCollector(config, sink, clock=lambda: clock_now[0]), running)
    base = clock_now[0].timestamp() - 100
    good = 0
    stream: list[tuple[str, Any]] = []
    for i in range(20):
        stream.append((f"{p}/d1/data", {"t": i, "ts": base + i}))
        good += 1
        bad = [
            (f"{p}/d1/data", "{not json"),
            (f"{p}/d1/data", {"ts": base + i}),  # missing field
            (f"{p}/d1/data", {"t": "warm", "ts": base + i}),  # non-numeric
            (f"{p}/d1/data", {"t": 1, "ts": base + 86400}),  # far in the future
            (f"{p}/d1/data", {"t": 1, "ts": base - 30 * 86400}),  # far in the past
            (f"{p}/d1/line", "temp=1"),  # malformed line
            (f"{p}/ghost/data", {"t": 1, "ts": base + i}),  # unknown device
        ]
        stream.append(bad[i % len(bad)])
    stream.append((f"{p}/d2/data", {"t": 99, "ts": base + 50}))  # d2 is declared on that topic
    good += 1
    pub = Publisher(*SHARED)
    with caplog.at_level(logging.WARNING, logger="collector.mqtt"):
        for topic, payload in stream:
            pub.publish(topic, payload)
        wait_for(lambda: collector.stats.received == len(stream), 5, "every message")
        wait_for(lambda: collector.stats.acked == len(stream), 5, "every message acknowledged")
    pub.close()

    assert sorted(r.value for r in sink.by("temperature")) == [*range(20), 99]
    stats = collector.stats
    assert stats.bad == {
        f"{p}/d1/data": {
            "malformed_json": 3,
            "missing_field": 3,
            "non_numeric": 3,
            "timestamp_in_future": 3,
            "timestamp_too_old": 3,
        },
        f"{p}/d1/line": {"malformed_line": 3},
    }
    assert stats.unknown_devices == {"ghost": 2}
    assert stats.stored == good
    # Rate limit: one report per topic within the minute, one per unknown device.
    dropped = [r.getMessage() for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(dropped) == 2
    assert len([r for r in caplog.records if "'ghost'" in r.getMessage()]) == 1

    # A minute later the next bad message on the topic is reported with what was suppressed.
    clock_now[0] += timedelta(minutes=1, seconds=1)
    pub = Publisher(*SHARED)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="collector.mqtt"):
        pub.publish(f"{p}/d1/data", "[1,")
        wait_for(lambda: collector.stats.acked == len(stream) + 1, 5, "the late bad message")
    assert any("14 more dropped" in r.getMessage() for r in caplog.records)
    pub.close()

    # Poison messages were acknowledged: the same session gets nothing again after a restart.
    collector.stop()
    running.remove(collector)
    again = start(MqttCollector(config, ListSink()), running)
    probe = Publisher(*SHARED)
    probe.publish(f"{p}/d1/data", {"t": 1000, "ts": base})
    probe.close()
    wait_for(lambda: again.stats.received >= 1, 5, "the probe message")
    assert again.stats.received == 1


def test_mqtt_3_1_1_wrong_topic_for_device_and_the_modbus_collector_ignores_mqtt_devices(
    running: list[MqttCollector],
) -> None:
    from collector.modbus import ModbusCollector

    p = unique()
    subs = f"""\
    - topic: {p}/+
      template: {p}/{{device}}
      format: number
      metric: level
"""
    config = site([device("d1", topic=f"{p}/d1"), device("d2")], subs, protocol="3.1.1")
    assert ModbusCollector(config.devices, lambda r: None, site_id="s1").device_ids == []
    sink = ListSink()
    collector = start(MqttCollector(config, sink), running)
    pub = Publisher(*SHARED)
    pub.publish(f"{p}/d2", "1")
    pub.publish(f"{p}/d1", "2")
    pub.close()
    wait_for(lambda: collector.stats.acked == 2, 5, "two messages")
    assert [(r.device, r.value) for r in sink.readings] == [("d2", 1.0), ("d1", 2.0)]
    assert collector.stats.bad == {}


# -- fault cases on a private broker --------------------------------------------------------------


def _store_count(store: EmbeddedStore, metric: str, t0: datetime) -> int:
    series = store.series(metric, t0 - timedelta(days=1), t0 + timedelta(days=1))
    return sum(len(points) for points in series.values())


def test_broker_restart_during_a_qos1_stream_stores_every_message_once(
    tmp_path: Path, private_broker: PrivateBroker, running: list[MqttCollector]
) -> None:
    p = unique()
    subs = f"""\
    - topic: {p}/+
      template: {p}/{{device}}
      fields: {{seq: n}}
      timestamp_field: ts
      timestamp_unit: ms
"""
    config = site([device("d1")], subs, port=private_broker.port, tmp=tmp_path)
    store = EmbeddedStore(tmp_path / "readings.duckdb")
    writer = DurableWriter(store, tmp_path / "outbox.db", config.storage.outbox)
    writer.start()
    try:
        gate = threading.Event()

        def gated_put(readings: Sequence[Reading]) -> None:
            gate.wait(10)  # a slow store: the broker stops with messages not yet acknowledged
            writer.put(readings)

        collector = start(MqttCollector(config, gated_put), running)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        ms0 = int(t0.timestamp() * 1000)
        n = 300
        pub = Publisher("127.0.0.1", private_broker.port)
        pub.publish_burst([(f"{p}/d1", {"n": i, "ts": ms0 + i}) for i in range(n // 3)])
        wait_for(lambda: collector.stats.received == n // 3, 5, "the first third received")
        assert collector.stats.acked == 0
        private_broker.stop()  # mid-stream, with n/3 messages received and not acknowledged
        gate.set()
        private_broker.start()
        for i in range(n // 3, n):
            pub.publish(f"{p}/d1", {"n": i, "ts": ms0 + i})
        pub.close()
        try:
            wait_for(lambda: writer.flush(1) and _store_count(store, "seq", t0) >= n, 15, "n rows")
        except AssertionError as e:
            got = {v for _, v in store.series("seq", t0, t0 + timedelta(hours=1)).get("d1", [])}
            missing = sorted(set(range(n)) - {int(v) for v in got})
            why = f"missing {missing[:50]} ({len(missing)}); {collector.stats}"
            raise AssertionError(why) from e

        assert _store_count(store, "seq", t0) == n
        values = sorted(v for _, v in store.series("seq", t0, t0 + timedelta(hours=1))["d1"])
        assert values == [float(i) for i in range(n)]
        stats = collector.stats
        assert stats.connects >= 2
        # Messages in flight when the broker stopped came again and were stored once.
        assert stats.received > n, stats
        print(f"broker restart: {n} published, {stats.received} received, {n} stored", stats)
    finally:
        for c in running:
            c.stop(timeout=2)
        running.clear()
        writer.close()
        store.close()


def _consumer(config_path: Path, status: Path, delay: float = 0.0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FACMON_TEST_SINK_DELAY": str(delay), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.collector.mqtt_consumer", str(config_path), str(status)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _status(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, ValueError):
        return {}


def test_consumer_killed_mid_stream_gets_every_qos1_message_after_restart(
    tmp_path: Path, private_broker: PrivateBroker
) -> None:
    p = unique()
    client_id = unique("facmon")
    text = (
        BASE.format(
            devices=device("d1"),
            port=private_broker.port,
            protocol="5",
            client_id=client_id,
            expiry="1h",
            max_pending=5,
            subscriptions=f"""\
    - topic: {p}/+
      template: {p}/{{device}}
      fields: {{seq: n}}
      timestamp_field: ts
      timestamp_unit: ms
""",
        )
        + f"data_dir: {tmp_path / 'data'}\n"
    )
    config_path = tmp_path / "site.yaml"
    config_path.write_text(text, encoding="utf-8")
    status = tmp_path / "status.json"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    ms0 = int(t0.timestamp() * 1000)
    pub = Publisher("127.0.0.1", private_broker.port)

    first = _consumer(config_path, status, delay=0.05)
    try:
        wait_for(lambda: _status(status).get("connected") is True, 10, "consumer connected")
        for i in range(100):
            pub.publish(f"{p}/d1", {"n": i, "ts": ms0 + i})
        wait_for(lambda: _status(status).get("readings", 0) >= 10, 10, "some messages stored")
        first.send_signal(signal.SIGKILL)  # no clean shutdown: queued and unacked work is lost
        first.wait(5)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = _status(status)
    assert killed_at["readings"] < 100, "the kill should land mid-stream"
    status.unlink()

    for i in range(100, 200):  # published while no consumer runs
        pub.publish(f"{p}/d1", {"n": i, "ts": ms0 + i})
    # Same topic, same QoS, same session: delivered after everything before it.
    sentinel = 1_000_000
    pub.publish(f"{p}/d1", {"n": sentinel, "ts": ms0 + 500})
    pub.close()

    second = _consumer(config_path, status)
    try:
        wait_for(lambda: _status(status).get("max_value") == sentinel, 15, "the sentinel")
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0, second.stderr.read().decode() if second.stderr else ""
    finally:
        if second.poll() is None:
            second.kill()

    store = EmbeddedStore(tmp_path / "data" / "readings.duckdb")
    try:
        values = sorted(v for _, v in store.series("seq", t0, t0 + timedelta(hours=1))["d1"])
    finally:
        store.close()
    assert values == [float(i) for i in range(200)] + [float(sentinel)]
