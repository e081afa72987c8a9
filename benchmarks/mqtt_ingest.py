"""MQTT ingestion end to end: publish -> broker -> MqttCollector -> DurableWriter -> store.

    python benchmarks/mqtt_ingest.py [--messages N] [--rounds R] [--influx-url URL]
                                     [--skip-influx | --only-influx]

Starts a private ``/usr/sbin/mosquitto`` on a free loopback port and a publisher in a process of
its own (so its CPU is not this interpreter's), which sends ``--messages`` JSON payloads of about
100 bytes (two metrics each, a millisecond timestamp, some fields facmon does not map) as fast as
it can. For each QoS the same stream is received by, in turn:

* a bare paho subscriber that only counts messages (the ceiling: what paho alone costs), timed
  from the publisher's start until the last message arrived;
* facmon: :class:`collector.mqtt.MqttCollector` with its manual acknowledgement after the
  durable outbox, into :class:`store.outbox.DurableWriter` and an embedded DuckDB store, timed
  from the publisher's start until every sample is in the store (``flush`` returned), then
  checked: every sample stored exactly once.

The bare subscriber runs before and after facmon and facmon's rate is compared with the mean of
both (the machine is shared: other load moves both). ``CPU us/msg`` is the CPU time of this
process (the consumer's threads, the store writer's included) per message over the same span:
steadier than the rates when other work shares the machine. The InfluxDB variant is QoS 0 into
a real influxd (1.6 from Debian, behind the test fixture's ``/api/v2/write`` shim, run in a
process of its own) or ``--influx-url``, checked by counting the points influxd holds.
``INFLUX_TOKEN`` is used when set.

The broker is configured without in-flight or queue limits (``max_inflight_messages 0``,
``max_queued_messages 0``): mosquitto's defaults (20 in flight, 1000 queued per client) would
measure the broker's settings and, at QoS 0, drop messages whenever a consumer falls behind.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from statistics import median

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from collector.mqtt import MqttCollector
from config.loader import load_config_text
from config.models import OutboxSettings, SiteConfig
from store.base import Store
from store.embedded import EmbeddedStore
from store.outbox import DurableWriter

MOSQUITTO = "/usr/sbin/mosquitto"
DEVICES = 100
METRICS_PER_MESSAGE = 2


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    messages: int
    points: int
    seconds: float
    cpu: float  # CPU seconds of this process (the consumer's threads) over the same span
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("inf")

    @property
    def point_rate(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else float("inf")


# --------------------------------------------------------------------------------------------
# Broker and publisher


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    """A private broker on a free loopback port; yields the port."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        # As root mosquitto would switch to user mosquitto, which cannot write workdir (log).
        f"user {getpass.getuser()}\n"
        "persistence false\n"
        "max_inflight_messages 0\n"
        "max_queued_messages 0\n"
        f"log_dest file {workdir / 'mosquitto.log'}\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start on port {port}") from None
                time.sleep(0.02)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def payloads(n: int, prefix: str, ts0_ms: int) -> list[tuple[str, bytes]]:
    """``n`` messages over :data:`DEVICES` devices; each (device, ts) is unique."""
    out = []
    for i in range(n):
        d, k = i % DEVICES, i // DEVICES
        body = {
            "ts": ts0_ms + k,
            "temperature": round(20 + (i % 997) / 100, 2),
            "humidity": round(40 + (i % 491) / 10, 1),
            "battery": 3.61,
            "rssi": -67,
            "fw": "2.4.1",
        }
        out.append((f"{prefix}/dev{d:04d}/telemetry", json.dumps(body).encode()))
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def _text(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(2, "big") + raw


def publisher_main(port: int, prefix: str, qos: int, n: int, ts0_ms: int) -> None:
    """The publisher process: connect, encode the messages, print ``ready``, wait for ``go``
    on stdin, send them all, wait for the broker's acknowledgements (QoS 1), print the seconds.

    A bare MQTT 3.1.1 client on a socket rather than paho: paho's publisher tops out near 4k
    QoS 1 messages/s here, below what the consumers under test take, so the figures would be
    the publisher's. Pre-encoded packets go out in large writes and the broker answers at its
    own speed; both consumers get the same stream.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    client_id = f"bench-pub-{uuid.uuid4().hex[:8]}"
    # CONNECT: protocol MQTT level 4, clean session, keep-alive 600 s.
    sock.sendall(
        _packet(
            0x10, _text("MQTT") + bytes([4, 0x02]) + (600).to_bytes(2, "big") + _text(client_id)
        )
    )
    connack = sock.recv(4)
    if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"publisher refused: {connack!r}")
    packets = []
    for i, (topic, body) in enumerate(payloads(n, prefix, ts0_ms)):
        pid = (i % 65535 + 1).to_bytes(2, "big") if qos else b""
        packets.append(_packet(0x30 | (qos << 1), _text(topic) + pid + body))
    acked = 0
    all_acked = threading.Event()
    window = threading.Semaphore(20_000)  # unacknowledged messages: packet ids stay unique

    def read_acks() -> None:
        nonlocal acked
        buf = b""
        while acked < n:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            whole = len(buf) - len(buf) % 4  # PUBACK: 0x40 0x02 id id
            k = whole // 4
            buf = buf[whole:]
            acked += k
            window.release(k)
        all_acked.set()

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    if qos:
        threading.Thread(target=read_acks, daemon=True).start()
    chunk = 500
    for i in range(0, n, chunk):
        part = packets[i : i + chunk]
        if qos:
            for _ in part:
                window.acquire()
        sock.sendall(b"".join(part))
    if qos and not all_acked.wait(600):
        raise RuntimeError(f"broker acknowledged {acked} of {n}")
    print(f"{time.perf_counter() - started:.3f}", flush=True)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


class Publisher:
    def __init__(self, port: int, prefix: str, qos: int, n: int, ts0_ms: int) -> None:
        args = [sys.executable, str(Path(__file__).resolve()), "--publisher"]
        args += [str(port), prefix, str(qos), str(n), str(ts0_ms)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("publisher did not start")

    def go(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return time.perf_counter()

    def seconds(self) -> float:
        assert self.proc.stdout is not None
        out = float(self.proc.stdout.readline())
        self.proc.wait(30)
        return out


# --------------------------------------------------------------------------------------------
# Consumers

_publisher_seconds: list[float] = []


def _note_publisher(seconds: float) -> None:
    _publisher_seconds.append(seconds)


def bare(port: int, prefix: str, qos: int, n: int, ts0_ms: int) -> tuple[float, float]:
    """Seconds until a bare paho subscriber received all ``n`` messages, and CPU seconds."""
    got = 0
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        if got == n:
            done.set()

    subscribed = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/+/telemetry", qos)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise RuntimeError("bare subscriber not subscribed")
        pub = Publisher(port, prefix, qos, n, ts0_ms)
        cpu = time.process_time()
        started = pub.go()
        if not done.wait(600):
            raise RuntimeError(f"bare subscriber got {got} of {n}")
        secs = time.perf_counter() - started
        cpu = time.process_time() - cpu
        _note_publisher(pub.seconds())
        return secs, cpu
    finally:
        client.disconnect()
        client.loop_stop()


def site(port: int, prefix: str, qos: int, tmp: Path) -> SiteConfig:
    devices = "\n".join(
        f"  - {{id: dev{d:04d}, name: dev{d:04d}, kind: sensor, "
        f"location: {{building: b1, floor: '{d % 30 + 1}F'}}, source: {{type: mqtt}}}}"
        for d in range(DEVICES)
    )
    text = f"""\
site: {{id: bench, name: Bench}}
buildings:
  - {{id: b1, name: B1, floor_area_m2: 1000, floors: 30}}
devices:
{devices}
data_dir: {tmp / "data"}
mqtt:
  host: 127.0.0.1
  port: {port}
  client_id: bench-facmon-{uuid.uuid4().hex[:8]}
  session_expiry: 60s
  subscriptions:
    - topic: {prefix}/+/telemetry
      template: {prefix}/{{device}}/telemetry
      qos: {qos}
      fields: {{temperature: temperature, humidity: humidity}}
      units: {{temperature: "°C", humidity: "%"}}
      timestamp_field: ts
      timestamp_unit: ms
"""
    return load_config_text(text, env={})


def facmon(
    port: int,
    prefix: str,
    qos: int,
    n: int,
    ts0_ms: int,
    store: Store,
    tmp: Path,
) -> tuple[float, float]:
    """Seconds from the publisher's start until all ``n`` messages' samples are in ``store``,
    and the CPU seconds this process spent meanwhile (collector, outbox, store writer)."""
    config = site(port, prefix, qos, tmp)
    settings = OutboxSettings(
        max_samples=max(n * METRICS_PER_MESSAGE * 2, 1000),
        batch_size=5000,
        flush_interval=timedelta(milliseconds=200),
    )
    outbox = tmp / f"outbox-{uuid.uuid4().hex[:8]}.db"
    writer = DurableWriter(store, outbox, settings)
    writer.start()
    collector = MqttCollector(config, writer.put)
    collector.start()
    try:
        deadline = time.monotonic() + 10
        while not collector.subscribed:
            if time.monotonic() > deadline:
                raise RuntimeError("facmon not subscribed")
            time.sleep(0.01)
        pub = Publisher(port, prefix, qos, n, ts0_ms)
        cpu = time.process_time()
        started = pub.go()
        deadline = time.monotonic() + 600
        while collector.stats.stored < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"facmon stored {collector.stats} of {n}")
            time.sleep(0.002)
        if not writer.flush(600):
            raise RuntimeError(f"flush timed out: {writer.stats}")
        secs = time.perf_counter() - started
        cpu = time.process_time() - cpu
        _note_publisher(pub.seconds())
        stats = collector.stats
        if stats.bad or stats.unknown_devices or stats.readings != n * METRICS_PER_MESSAGE:
            raise RuntimeError(f"facmon lost or refused messages: {stats}")
        if qos and stats.acked < n:
            raise RuntimeError(f"facmon acknowledged {stats.acked} of {n}")
        return secs, cpu
    finally:
        collector.stop()
        writer.close()


# --------------------------------------------------------------------------------------------
# Benches


def _ts0_ms() -> int:
    # Payload timestamps a little in the past, inside the default max_age; one ms per message
    # and device, so every sample of a run is a distinct (device, metric, time).
    return int(time.time() * 1000) - 60_000


def bench_embedded(args: argparse.Namespace, port: int, tmp: Path) -> list[Result]:
    n: int = args.messages
    points = n * METRICS_PER_MESSAGE
    results: list[Result] = []
    for qos in (0, 1):
        ratios: list[float] = []
        for r in range(args.rounds):
            run = uuid.uuid4().hex[:8]
            b1, b1_cpu = bare(port, f"bench/{run}/b1", qos, n, _ts0_ms())
            store = EmbeddedStore(tmp / f"bench-{run}.duckdb")
            try:
                fm, fm_cpu = facmon(port, f"bench/{run}/f", qos, n, _ts0_ms(), store, tmp)
                written = store.stats.written
            finally:
                store.close()
            if written != points:
                raise RuntimeError(f"embedded store holds {written} of {points} samples")
            b2, b2_cpu = bare(port, f"bench/{run}/b2", qos, n, _ts0_ms())
            ratio = (b1 + b2) / 2 / fm
            ratios.append(ratio)
            tag = f"QoS {qos}" + (f" #{r + 1}" if args.rounds > 1 else "")
            results += [
                Result(f"{tag}: bare paho subscriber (before)", n, n, b1, b1_cpu),
                Result(
                    f"{tag}: facmon -> outbox -> embedded",
                    n,
                    points,
                    fm,
                    fm_cpu,
                    f"{ratio:.0%} of bare, stored exactly once",
                ),
                Result(f"{tag}: bare paho subscriber (after)", n, n, b2, b2_cpu),
            ]
            for line in results[-3:]:
                show(line)
        if args.rounds > 1:
            print(f"QoS {qos}: facmon / bare, median of {args.rounds}: {median(ratios):.0%}")
    return results


def bench_influx(args: argparse.Namespace, port: int, tmp: Path) -> list[Result]:
    """QoS 0 into InfluxDB; every point counted back from influxd."""
    from pydantic import SecretStr

    from config.models import InfluxStorage
    from store.influx import InfluxStore, init_influx
    from tests.fixtures.influxd import InfluxServer

    n: int = args.messages
    points = n * METRICS_PER_MESSAGE
    if args.influx_url is None and shutil.which("influxd") is None:
        print("influxdb: skipped (no --influx-url and no influxd installed)")
        return []
    token = os.environ.get("INFLUX_TOKEN")
    server = shim = None
    results: list[Result] = []
    try:
        if args.influx_url is None:
            (tmp / "influx").mkdir()
            server = InfluxServer(tmp / "influx")
            server.start()
            # The shim in a process of its own: in this one it would compete with the collector
            # for the GIL, which a server with /api/v2/write of its own (1.8+) does not.
            shim = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--shim", str(server.http_port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert shim.stdout is not None
            url = shim.stdout.readline().strip()
        else:
            url = args.influx_url
        for r in range(args.rounds):
            run = uuid.uuid4().hex[:8]
            settings = InfluxStorage(
                url=url,
                bucket=f"bench_mqtt_{run}",
                token=SecretStr(token) if token else None,
            )
            init_influx(settings)
            store = InfluxStore(settings)
            try:
                secs, cpu = facmon(port, f"bench/{run}/i", 0, n, _ts0_ms(), store, tmp)
                rows = store.query('SELECT count("value") FROM "temperature", "humidity"')
                stored = sum(int(s["values"][0][1]) for s in rows)
            finally:
                store.close()
            note = "nothing lost" if stored == points else f"LOST {points - stored}"
            tag = " #" + str(r + 1) if args.rounds > 1 else ""
            results.append(
                Result(f"QoS 0{tag}: facmon -> outbox -> InfluxDB", n, points, secs, cpu, note)
            )
            show(results[-1])
            if stored != points:
                raise RuntimeError(f"InfluxDB holds {stored} of {points} points")
    finally:
        if shim is not None:
            shim.terminate()
            shim.wait(10)
        if server is not None:
            server.stop()
    return results


HEADER = (
    f"{'bench':<44} {'messages':>8} {'seconds':>8} {'msg/s':>8} {'points/s':>9} {'CPU us/msg':>10}"
)


def show(r: Result) -> None:
    print(
        f"{r.name:<44} {r.messages:>8} {r.seconds:>8.2f} {r.rate:>8,.0f} {r.point_rate:>9,.0f} "
        f"{r.cpu / r.messages * 1e6:>10.1f}  {r.note}",
        flush=True,
    )


BENCHES: list[Callable[[argparse.Namespace, int, Path], list[Result]]] = [
    bench_embedded,
    bench_influx,
]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--shim"]:
        from tests.fixtures.influxd import WriteShim

        write_shim = WriteShim(int(argv[1]))
        write_shim.start()
        print(write_shim.url, flush=True)
        sys.stdin.read()  # until the parent closes it or ends this process
        return 0
    if argv[:1] == ["--publisher"]:
        p_port, prefix, qos, n, ts0 = argv[1:6]
        publisher_main(int(p_port), prefix, int(qos), int(n), int(ts0))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--messages", type=int, default=100_000, help="messages per run")
    p.add_argument("--rounds", type=int, default=1, help="runs per QoS")
    p.add_argument("--influx-url", default=None, help="InfluxDB to write to instead of influxd")
    p.add_argument("--skip-influx", action="store_true", help="embedded store only")
    p.add_argument("--only-influx", action="store_true", help="InfluxDB only")
    args = p.parse_args(argv)
    if not Path(MOSQUITTO).exists():
        print(f"{MOSQUITTO} not installed")
        return 1
    print(HEADER)
    with (
        tempfile.TemporaryDirectory(prefix="facmon-bench-mqtt-") as tmp,
        mosquitto(Path(tmp)) as port,
    ):
        benches = BENCHES[:1] if args.skip_influx else BENCHES[1:] if args.only_influx else BENCHES
        for bench in benches:
            bench(args, port, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
