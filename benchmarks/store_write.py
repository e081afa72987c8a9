"""Write throughput of the stores, directly and through the durable path (outbox included).

    python benchmarks/store_write.py [--samples N] [--put-size K] [--influx-url URL]

Each bench function takes the parsed arguments and returns :class:`Result` rows; ``main`` runs
every function in :data:`BENCHES` in order, so another backend's bench is added by appending to
that list. The durable figure is end to end: from the first ``put`` until ``flush`` returned,
i.e. every sample is in the outbox file, written to the store and acknowledged.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.models import OutboxSettings
from store.base import Store
from store.embedded import EmbeddedStore
from store.outbox import DurableWriter
from store.reading import Quality, Reading

METRICS = ("energy_kwh", "power_kw", "voltage_a", "voltage_b", "voltage_c")


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    samples: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def make_readings(n: int, devices: int = 200, start: datetime | None = None) -> list[Reading]:
    """``n`` readings of ``devices`` power meters polled every 10 s, tags as a site sets them."""
    t0 = start or datetime(2024, 3, 1, 16, tzinfo=UTC)
    tags = [
        {"site": "sh-riverside", "building": "A座", "floor": f"{i % 30 + 1}F", "tenant": "星巴克"}
        for i in range(devices)
    ]
    per_poll = devices * len(METRICS)
    out: list[Reading] = []
    for k in range(n):
        poll, rest = divmod(k, per_poll)
        d, m = divmod(rest, len(METRICS))
        t = t0 + timedelta(seconds=10 * poll, microseconds=d)
        out.append(
            Reading(t, f"pm-{d:04d}", METRICS[m], 1000.0 + k * 0.25, "kWh", Quality.GOOD, tags[d])
        )
    return out


def run_direct(store: Store, readings: Sequence[Reading], batch: int = 5000) -> float:
    started = time.perf_counter()
    for i in range(0, len(readings), batch):
        store.write(readings[i : i + batch])
    return time.perf_counter() - started


def run_durable(
    store: Store, outbox: Path, readings: Sequence[Reading], put_size: int, batch: int = 5000
) -> float:
    settings = OutboxSettings(
        max_samples=max(len(readings) * 2, 1000),
        batch_size=batch,
        flush_interval=timedelta(seconds=1),
    )
    writer = DurableWriter(store, outbox, settings)
    writer.start()
    try:
        started = time.perf_counter()
        for i in range(0, len(readings), put_size):
            writer.put(readings[i : i + put_size])
        if not writer.flush(timeout=600):
            raise RuntimeError(f"flush timed out: {writer.stats}")
        elapsed = time.perf_counter() - started
    finally:
        writer.close()
    if writer.stats.written != len(readings):
        raise RuntimeError(f"wrote {writer.stats.written} of {len(readings)}: {writer.stats}")
    return elapsed


def bench_embedded(args: argparse.Namespace) -> list[Result]:
    n: int = args.samples
    readings = make_readings(n)
    # The pre-built input (n readings, their datetimes and tag dicts) is scaffolding, not part of
    # the system under test; a collector's readings are short-lived. Without this, every full GC
    # pass walks them all: at 500k samples the durable figure drops by about a quarter.
    gc.freeze()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="facmon-bench-") as tmp:
        store = EmbeddedStore(Path(tmp) / "direct.duckdb")
        try:
            results.append(
                Result("embedded: store.write (5000/batch)", n, run_direct(store, readings))
            )
            results.append(Result("embedded: replay of the same", n, run_direct(store, readings)))
        finally:
            store.close()
        store = EmbeddedStore(Path(tmp) / "durable.duckdb")
        try:
            secs = run_durable(store, Path(tmp) / "outbox.db", readings, args.put_size)
            name = f"embedded: DurableWriter, put {args.put_size}/call, until flushed"
            results.append(Result(name, n, secs))
        finally:
            store.close()
    return results


def bench_influx(args: argparse.Namespace) -> list[Result]:
    """InfluxDB: raw ``/write`` of pre-built line protocol vs facmon's paths into it.

    Without ``--influx-url`` it starts ``influxd`` (1.6 on Debian) with the test fixture's write
    shim in front, as the tests do (1.6 lacks ``/api/v2/write``), and measures the shim's own
    cost as well. ``INFLUX_TOKEN`` is used when set.
    """
    import os
    import shutil

    import httpx
    from pydantic import SecretStr

    from config.models import InfluxStorage
    from store.influx import InfluxStore, init_influx
    from store.lineprotocol import LineEncoder
    from tests.fixtures.influxd import InfluxServer, WriteShim

    n: int = args.samples
    if args.influx_url is None and shutil.which("influxd") is None:
        print("influxdb: skipped (no --influx-url and no influxd installed)")
        return []
    token = os.environ.get("INFLUX_TOKEN")
    run = str(int(time.time()))
    with tempfile.TemporaryDirectory(prefix="facmon-bench-influx-") as tmp:
        server = shim = None
        if args.influx_url is None:
            server = InfluxServer(Path(tmp))
            server.start()
            shim = WriteShim(server.http_port)
            shim.start()
            raw_url, store_url = server.url, shim.url
        else:
            raw_url = store_url = args.influx_url

        def settings(url: str, db: str) -> InfluxStorage:
            secret = SecretStr(token) if token else None
            s = InfluxStorage(url=url, bucket=f"{db}_{run}", token=secret)
            init_influx(s)
            return s

        readings = make_readings(n)
        body = LineEncoder().payload
        batches = [body(readings[i : i + 5000]) for i in range(0, n, 5000)]

        def post_all(url: str, path: str, db: str) -> float:
            bucket = settings(raw_url, db).bucket
            params = (
                {"db": bucket, "precision": "u"}
                if path == "/write"
                else {"bucket": bucket, "precision": "us"}
            )
            headers = {"Authorization": f"Token {token}"} if token else {}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                started = time.perf_counter()
                for b in batches:
                    http.post(path, params=params, content=b).raise_for_status()
                return time.perf_counter() - started

        try:
            # Raw runs first and last: influxd slows down as its cache fills and compacts, so
            # the durable paths are compared with the mean of both.
            raw_first = post_all(raw_url, "/write", "bench_raw1")
            shim_secs = post_all(store_url, "/api/v2/write", "bench_shim") if shim else None
            labels = ("store.write 5000/batch", f"DurableWriter put {args.put_size}")
            paths: list[tuple[str, float]] = []
            for i, label in enumerate(labels):
                store = InfluxStore(settings(store_url, f"bench_{i}"))
                try:
                    secs = (
                        run_durable(store, Path(tmp) / "outbox.db", readings, args.put_size)
                        if i
                        else run_direct(store, readings)
                    )
                finally:
                    store.close()
                paths.append((label, secs))
            raw_last = post_all(raw_url, "/write", "bench_raw2")
            raw_mean = (raw_first + raw_last) / 2
            results = [Result("influxdb: raw POST /write, 5000 lines/batch", n, raw_first)]
            if shim_secs is not None:
                results.append(Result("influxdb: same via the test shim", n, shim_secs))
            results += [
                Result(f"influxdb: {label} ({raw_mean / secs:.0%} of raw)", n, secs)
                for label, secs in paths
            ]
            results.append(Result("influxdb: raw POST /write again, after the rest", n, raw_last))
            return results
        finally:
            if shim is not None:
                shim.stop()
            if server is not None:
                server.stop()


BENCHES: list[Callable[[argparse.Namespace], list[Result]]] = [bench_embedded, bench_influx]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--samples", type=int, default=200_000, help="samples per run")
    p.add_argument("--put-size", type=int, default=1000, help="readings per put() call")
    p.add_argument("--influx-url", default=None, help="InfluxDB to bench as well, if given")
    args = p.parse_args(argv)
    print(f"{'bench':<62} {'samples':>9} {'seconds':>8} {'samples/s':>11}")
    for bench in BENCHES:
        for r in bench(args):
            print(f"{r.name:<62} {r.samples:>9} {r.seconds:>8.2f} {r.rate:>11,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
