"""Throughput of the edge and central roles (issue 4, item 5), for the sizing notes in
deploy/OPERATIONS.md.

    python benchmarks/uplink.py [--samples N] [--batch-size K] [--put-size P]

Starts a private Mosquitto on a free loopback port (``/usr/sbin/mosquitto``, persistence off)
and measures, each on its own:

* **edge put**: ``UplinkPublisher.put`` (the disk buffer, one fsync per put) with no broker
  traffic, and the disk the buffer takes per sample;
* **ingest**: one ingest worker (shared subscription -> decode -> DurableWriter -> embedded
  store) fed pre-encoded batches by a bare paho publisher at full speed: messages/s and
  samples/s until every sample is in the store;
* **end to end**: edge buffer -> publisher -> broker -> one ingest worker -> embedded store,
  from the first ``put`` until the store holds every sample.

Prints one line per figure. All parts share the machine (and its cores) with the broker.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from collector.ingest import IngestWorker
from collector.uplink import UplinkPublisher
from collector.uplink_format import encode_batches
from config.loader import load_config_text
from config.models import SiteConfig
from facmon.ingest import open_store, worker_config
from store.columnar import ReadingBatch
from store.outbox import DurableWriter
from store.reading import Quality, Reading

MOSQUITTO = "/usr/sbin/mosquitto"
METRICS = ("energy_kwh", "power_kw", "current_a", "voltage_a", "power_factor")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def readings(n: int) -> list[Reading]:
    """Power-meter-like samples: 200 devices x 5 metrics per poll, two buildings."""
    tags = {
        b: {"site": "bench", "building": b, "kind": "power_meter", "floor": "B1"}
        for b in ("a", "b")
    }
    return [
        Reading(
            T0 + timedelta(seconds=i // 1000),
            f"pm-{i % 1000 // 5}",
            METRICS[i % 5],
            i * 0.01,
            "kW",
            Quality.GOOD,
            tags["a" if i % 1000 < 500 else "b"],
        )
        for i in range(n)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_broker(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "max_queued_messages 1000000\nmax_inflight_messages 1000\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def site(port: int, data_dir: Path, batch_size: int) -> SiteConfig:
    tag = uuid.uuid4().hex[:8]
    text = f"""\
site: {{id: bench, name: Bench}}
buildings: [{{id: a, name: A, floor_area_m2: 1, floors: 1}}]
data_dir: {data_dir}
storage: {{outbox: {{flush_interval: 100ms}}}}
uplink: {{host: 127.0.0.1, port: {port}, client_id: edge-{tag}, batch_size: {batch_size},
          topic_prefix: "b{tag}/{{site}}/{{building}}", max_inflight: 50}}
ingest: {{host: 127.0.0.1, port: {port}, client_id: ing-{tag}, group: g{tag},
          topic: "b{tag}/+/+/#", max_pending: 1000}}
"""
    return load_config_text(text, env={})


class Central:
    def __init__(self, config: SiteConfig) -> None:
        self.config = worker_config(config, "1")
        self.store = open_store(self.config)
        self.writer = DurableWriter(self.store, self.config.outbox_path, self.config.storage.outbox)
        self.writer.start()
        self.worker = IngestWorker(self.config, self.writer.put)
        self.worker.start()
        wait(lambda: self.worker.subscribed, 10)

    def stored(self) -> int:
        return self.store.stats.written

    def close(self) -> None:
        self.worker.stop(5)
        self.writer.close(10)
        self.store.close()


def wait(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.005)


def bench_edge_put(args: argparse.Namespace, port: int, tmp: Path) -> None:
    cfg = site(free_port(), tmp / "put", args.batch_size)  # a closed port: nothing leaves
    data = readings(args.samples)
    pub = UplinkPublisher(cfg)
    t = time.perf_counter()
    for i in range(0, len(data), args.put_size):
        pub.put(data[i : i + args.put_size])
    dt = time.perf_counter() - t
    pub.buffer.close()
    size = sum(p.stat().st_size for p in (tmp / "put").glob("uplink.db*"))
    print(
        f"edge put (disk buffer, puts of {args.put_size}): {len(data) / dt:,.0f} samples/s; "
        f"{size / len(data):.1f} bytes of disk per sample"
    )


def bench_ingest(args: argparse.Namespace, port: int, tmp: Path) -> None:
    cfg = site(port, tmp / "ingest", args.batch_size)
    assert cfg.uplink is not None and cfg.ingest is not None
    data = ReadingBatch.from_readings(readings(args.samples))
    prefix = cfg.uplink.topic_prefix.format(site="bench", building="a")
    msgs = [m.payload for m in encode_batches("bench", data, args.batch_size)]
    wire = sum(len(m) for m in msgs) / len(data)
    central = Central(cfg)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t = time.perf_counter()
    infos = [client.publish(f"{prefix}/readings", m, qos=1) for m in msgs]
    for info in infos:
        info.wait_for_publish(60)
    wait(lambda: central.stored() >= len(data), 120)
    dt = time.perf_counter() - t
    client.disconnect()
    client.loop_stop()
    central.close()
    print(
        f"ingest, 1 worker, QoS 1, {args.batch_size} samples/message ({wire:.0f} bytes per "
        f"sample on the wire): {len(msgs) / dt:,.0f} messages/s, {len(data) / dt:,.0f} samples/s"
    )


def bench_end_to_end(args: argparse.Namespace, port: int, tmp: Path) -> None:
    cfg = site(port, tmp / "e2e", args.batch_size)
    central = Central(cfg)
    data = readings(args.samples)
    pub = UplinkPublisher(cfg)
    pub.start()
    wait(lambda: pub.connected, 10)
    t = time.perf_counter()
    for i in range(0, len(data), args.put_size):
        pub.put(data[i : i + args.put_size])
    wait(lambda: central.stored() >= len(data), 300)
    dt = time.perf_counter() - t
    msgs = pub.stats.messages
    pub.close()
    central.close()
    print(
        f"end to end (edge buffer -> broker -> 1 ingest worker -> embedded store): "
        f"{msgs / dt:,.0f} messages/s, {len(data) / dt:,.0f} samples/s"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=200_000, help="samples per figure")
    p.add_argument("--batch-size", type=int, default=500, help="uplink.batch_size")
    p.add_argument("--put-size", type=int, default=1000, help="samples per put (one poll)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker, port = start_broker(tmp)
        try:
            bench_edge_put(args, port, tmp)
            bench_ingest(args, port, tmp)
            bench_end_to_end(args, port, tmp)
        finally:
            broker.terminate()
            broker.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
