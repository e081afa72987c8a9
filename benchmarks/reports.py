"""Seconds to build the monthly management report for many meters, per backend, in one run.

    python benchmarks/reports.py [--meters 500] [--month 2026-10] [--backends embedded,influxdb]
                                 [--influx-url URL] [--formats json,pdf] [--keep DIR]

The site has 10 buildings, each with one main power meter and sub-meters under it (so building
totals, sub-meter lists and unaccounted energy are all exercised) and a Guangdong-style
time-of-use tariff. Every meter has an import-energy counter and active power sampled every
minute for the whole month (500 meters: 21.6 million samples per metric), plus a day either
side. Loading is timed but reported apart: the figure that matters is the report build.

Without ``--influx-url`` it starts Debian's ``influxd`` 1.6 with the test fixture's write shim,
as the tests do. ``--keep DIR`` keeps the embedded store's file in DIR and reuses it on the next
run with the same ``--meters`` and ``--month`` (loading 500 meters takes minutes).
Goal (issue 6): JSON under 5 s and PDF under 15 s for 500 meters.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.tickets import TicketStore
from config.models import SiteConfig
from reports.context import ReportContext
from reports.period import Period
from store.base import Store
from store.columnar import SCHEMA, ReadingBatch, tags_json
from store.embedded import EmbeddedStore
from store.reading import to_us

BUILDINGS = 10
STEP_S = 60
TZ = "Asia/Shanghai"
METRICS = (("energy_import", "kWh"), ("active_power", "kW"))


def site(meters: int) -> SiteConfig:
    per = max(1, meters // BUILDINGS)
    devices: list[dict[str, Any]] = []
    for b in range(BUILDINGS):
        for k in range(per):
            main = f"b{b:02d}-m000"
            devices.append(
                {
                    "id": f"b{b:02d}-m{k:03d}",
                    "name": f"{b + 1}号楼 {'总表' if k == 0 else f'{k}# 分表'}",
                    "kind": "power_meter",
                    "location": {"building": f"b{b:02d}", "floor": f"{k % 20 + 1}F"},
                    # Never polled: the benchmark writes the history itself.
                    "source": {
                        "type": "modbus_tcp",
                        "host": "127.0.0.1",
                        "port": 1,
                        "profile": "generic_power_meter_3p",
                    },
                    **({"parent": main} if k else {}),
                }
            )
    return SiteConfig.model_validate(
        {
            "site": {"id": "bench", "name": "基准测试园区 Benchmark Park", "timezone": TZ},
            "buildings": [
                {"id": f"b{b:02d}", "name": f"{b + 1}号楼", "floor_area_m2": 20000, "floors": 20}
                for b in range(BUILDINGS)
            ],
            "devices": devices,
            "tariffs": [
                {
                    "id": "gd-2021",
                    "name": "广东 一般工商业 (example)",
                    "versions": [
                        {
                            "effective_from": "2021-10-01",
                            "prices": {"flat": 0.6, "peak": 1.02, "valley": 0.228, "sharp": 1.275},
                            "periods": [
                                {"band": "valley", "hours": ["00:00-08:00"]},
                                {"band": "peak", "hours": ["10:00-12:00", "14:00-19:00"]},
                                {
                                    "band": "sharp",
                                    "hours": ["11:00-12:00", "15:00-17:00"],
                                    "months": [7, 8, 9],
                                },
                            ],
                            "demand_per_kw_month": 32.0,
                        }
                    ],
                }
            ],
        }
    )


def meter_arrays(
    index: int, start_us: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (µs), energy counter (kWh) and power (kW) of one meter, a realistic daily shape."""
    times = start_us + np.arange(n, dtype=np.int64) * STEP_S * 1_000_000
    hour = ((times // 1_000_000 + 8 * 3600) % 86400) / 3600.0  # local hour in UTC+8
    size = 5.0 if index % 50 else 200.0
    shape = 0.35 + 0.65 * np.clip(np.sin((hour - 6.0) / 16.0 * np.pi), 0.0, None)
    kw = size * shape * (1.0 + 0.05 * rng.standard_normal(n))
    kw = np.clip(kw, 0.0, None)
    energy = 10_000.0 * (index + 1) + np.cumsum(kw) * STEP_S / 3600.0
    return times, np.round(energy, 2), np.round(kw, 3)


def batches(config: SiteConfig, period: Period) -> Iterator[pa.Table]:
    """One Arrow table per meter and metric, the form the embedded store inserts directly."""
    start_us = to_us(period.start - timedelta(days=1))
    n = int((period.end - period.start + timedelta(days=2)).total_seconds()) // STEP_S
    rng = np.random.default_rng(7)
    for i, dev in enumerate(config.devices):
        times, energy, kw = meter_arrays(i, start_us, n, rng)
        tags = tags_json({"site": config.site.id, "building": dev.location.building})
        for (metric, unit), values in zip(METRICS, (energy, kw), strict=True):
            yield pa.table(
                [
                    pa.array(times),
                    pa.array([dev.id] * n),
                    pa.array([metric] * n),
                    pa.array(values),
                    pa.array([unit] * n),
                    pa.array(np.zeros(n, dtype=np.uint8)),
                    pa.DictionaryArray.from_arrays(
                        pa.array(np.zeros(n, dtype=np.int32)), pa.array([tags])
                    ),
                ],
                schema=SCHEMA,
            )


@dataclass
class Figure:
    what: str
    seconds: float
    note: str = ""


@contextmanager
def timed(out: list[Figure], what: str, note: str = "") -> Iterator[None]:
    gc.collect()
    t = time.perf_counter()
    yield
    out.append(Figure(what, time.perf_counter() - t, note))


def build_report(
    rc: ReportContext, period: Period, fmt: str, figures: list[Figure], backend: str
) -> None:
    from reports.monthly import build_monthly, render

    with timed(figures, f"{backend}: monthly {fmt} (build + render)"):
        t = time.perf_counter()
        report = build_monthly(rc, period, lang="zh-CN")
        built = time.perf_counter() - t
        out = render(report, fmt)
    rendered = figures[-1].seconds - built
    size = len(out.body) / 1e6
    figures[-1].note = f"build {built:.2f} s + render {rendered:.2f} s, {size:.2f} MB"


def run_backend(
    backend: str,
    make_store: Callable[[], Store],
    load: Callable[[Store], int],
    config: SiteConfig,
    period: Period,
    formats: list[str],
    tmp: Path,
) -> list[Figure]:
    figures: list[Figure] = []
    store = make_store()
    tickets = TicketStore(f"sqlite:///{tmp / f'tickets-{backend}.db'}")
    try:
        with timed(figures, f"{backend}: load history (not part of the goal)"):
            samples = load(store)
        figures[-1].note = f"{samples / 1e6:.1f} M samples"
        rc = ReportContext(config, store, tickets, clock=lambda: period.end + timedelta(days=3))
        for fmt in formats:
            build_report(rc, period, fmt, figures, backend)
    finally:
        tickets.close()
        store.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--meters", type=int, default=500, help="power meters (default 500)")
    p.add_argument("--month", default="2026-10", help="report month YYYY-MM (default 2026-10)")
    p.add_argument("--backends", default="embedded,influxdb", help="comma-separated backends")
    p.add_argument("--formats", default="json,pdf", help="comma-separated: json,pdf,html,csv")
    p.add_argument("--influx-url", default=None, help="an InfluxDB 1.x to use (default: start one)")
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the embedded store's file in this directory and reuse it on later runs",
    )
    args = p.parse_args(argv)

    config = site(args.meters)
    period = Period.parse_month(args.month, ZoneInfo(TZ))
    formats = [f for f in args.formats.split(",") if f]
    print(
        f"{len(config.devices)} meters, {args.month}, 1-minute samples, "
        f"metrics {', '.join(m for m, _ in METRICS)}",
        flush=True,
    )
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="facmon-bench-reports-") as tmp_name:
        tmp = Path(tmp_name)
        for backend in args.backends.split(","):
            if backend == "embedded":
                figures += bench_embedded(args, config, period, formats, tmp)
            elif backend == "influxdb":
                figures += bench_influx(args, config, period, formats, tmp)
            else:
                p.error(f"unknown backend {backend!r}")
    width = max(len(f.what) for f in figures)
    print()
    for f in figures:
        print(f"{f.what:<{width}}  {f.seconds:8.2f} s  {f.note}")
    return 0


def bench_embedded(
    args: argparse.Namespace, config: SiteConfig, period: Period, formats: list[str], tmp: Path
) -> list[Figure]:
    db = tmp / "readings.duckdb"
    reuse = False
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        db = args.keep / f"readings-{args.meters}-{args.month}.duckdb"
        # The marker is written after a complete load: a file an interrupted run left behind
        # is loaded again from scratch.
        reuse = db.with_suffix(".loaded").exists()
        if not reuse:
            db.unlink(missing_ok=True)
            db.with_suffix(".duckdb.wal").unlink(missing_ok=True)

    def load(store: Store) -> int:
        if reuse:
            return 0
        total = 0
        for table in batches(config, period):
            store.write(ReadingBatch(table))
            total += table.num_rows
        if args.keep is not None:
            db.with_suffix(".loaded").touch()
        return total

    return run_backend("embedded", lambda: EmbeddedStore(db), load, config, period, formats, tmp)


def bench_influx(
    args: argparse.Namespace, config: SiteConfig, period: Period, formats: list[str], tmp: Path
) -> list[Figure]:
    from config.models import InfluxStorage
    from store.influx import InfluxStore, init_influx
    from tests.fixtures.influxd import InfluxServer, WriteShim

    if args.influx_url is None and shutil.which("influxd") is None:
        print("influxdb: skipped (no --influx-url and no influxd installed)")
        return []
    server = shim = None
    if args.influx_url is None:
        (tmp / "influxd").mkdir(exist_ok=True)  # InfluxServer writes its config there
        server = InfluxServer(tmp / "influxd")
        server.start()
        shim = WriteShim(server.http_port)
        shim.start()
        store_url = shim.url
    else:
        store_url = args.influx_url
    # A month of minute samples of every meter is one long query at ~170k points/s: the default
    # timeout (sized for dashboards) would fail the energy section instead of timing it.
    settings = InfluxStorage(
        url=store_url, bucket="facmon_bench_reports", timeout=timedelta(minutes=10)
    )
    try:
        init_influx(settings)

        def load(store: Store) -> int:
            # Through the store's own write, as the collector writes: it also writes the
            # counter summaries (store.rollups) the energy report reads.
            total = 0
            for table in batches(config, period):
                for chunk in table.to_batches(max_chunksize=50_000):
                    store.write(ReadingBatch(pa.Table.from_batches([chunk])))
                total += table.num_rows
            return total

        def make() -> Store:
            return InfluxStore(settings, rollup_metrics=config.report_counters)

        return run_backend("influxdb", make, load, config, period, formats, tmp)
    finally:
        if shim is not None:
            shim.stop()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
