"""Modbus polling at scale: the real collector against many simulated devices on loopback.

    .venv/bin/python benchmarks/modbus_poll.py [--devices N] [--registers 60] [--interval 1.0]
        [--seconds 20] [--sink all|batched|direct|none] [--scale] [--uvloop] [--cprofile FILE]

What runs:

* A cheap Modbus TCP server (benchmarks/cheap_modbus_server.py) in a separate process: N units,
  50 unit ids per port like RS-485 gateways, answering function codes 3/4 from precomputed
  register images. It counts every request and register it serves: requests/s and registers/s
  below are counted there, not inferred from the client.
* The real ``collector.modbus.ModbusCollector`` polling N power meters with a benchmark profile
  of ``--registers / 2`` float32 values (one planned read for 60 registers), timeout 1 s, every
  ``--interval``; every poll batch goes to a real ``DurableWriter`` -> ``EmbeddedStore`` (DuckDB)
  in a temp dir. At the end the writer is flushed and the rows in the DuckDB file are counted
  and compared with the samples the collector emitted (and one metric's values are checked).
  Sinks (``--sink``): ``batched`` gathers poll batches on the loop for up to 100 ms and puts
  them from one worker thread; ``direct`` calls ``DurableWriter.put`` for every poll on the
  event loop, as ``facmon.runtime.Pipeline.ingest`` does; ``none`` only counts (no store, no
  writer threads): the collector's own CPU, for the ratio to the bare client.
* Poll lateness, without touching the collector: ``ModbusCollector(clock=...)`` is called once
  at the start of every poll and its value becomes the poll's timestamp, so the benchmark passes
  a clock that maps the monotonic clock onto UTC and reads each poll's start (1 ms resolution:
  the collector truncates to ms) from the batch the sink receives; the sink call time is the
  poll's end. Each device's fixed-rate schedule ``phase + k * interval`` is reconstructed from
  those: slots the collector skips after a poll ended past the next due time are reproduced from
  the end times (and counted as missed), and the phase is fitted as the earliest
  ``start - k * interval`` over the run (a poll never starts before it is due).
  Lateness = start - due, over polls due in the measurement window (after a warm-up; polling
  goes on briefly after the window so a late poll is not taken for a missed one). Missed slots
  = slots due in the window without a poll. Poll duration (start to sink call) shows the time
  a request waits for its port: one request in flight per gateway connection.
* CPU: ``time.thread_time`` of the event-loop thread (the collector plus the in-loop part of
  the sink; the sink's share is measured around the sink call and also shown apart) and
  ``time.process_time`` of the whole benchmark process (adds the outbox/DuckDB writer threads).
  The simulator's CPU is its own process's, reported separately.
* References, in the same run and against the same simulated devices:
  (a) naive polling: one ``read_holding_registers`` per field, one pymodbus client per port,
      one request at a time per port (ports in parallel), back to back, no decoding;
  (b) bare pymodbus: the same clients doing exactly the collector's planned reads, no decoding,
      no storing, twice: back to back (one task per port), and paced like the collector (one
      task per device sleeping to its slot, offsets spread per port, a lock per port); the
      collector/bare CPU-per-request ratios are printed for both. Per request, the event loop's
      wake-ups cost more when paced, so the paced figure is the like-for-like one. The
      collector itself speaks Modbus TCP with facmon's own client (``collector.modbus_client``),
      not pymodbus: the bare pymodbus loop stays as it was, the issue's reference figure.
  Plus fields vs planned reads of the shipped profiles (``collector.planner.plan``).
* ``--scale``: runs the collector at growing device counts and prints the largest that keeps
  p99 lateness under 250 ms with every sample stored, no missed slot, no failed poll and the
  store keeping up.

Everything listens on 127.0.0.1; every phase is bounded in time; the server process is stopped
at exit (and exits by itself if this process dies).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import logging
import math
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb
import yaml
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from benchmarks.cheap_modbus_server import HOST, UNITS_PER_PORT, SimulatorProcess
from collector.modbus import ModbusCollector
from collector.planner import plan
from collector.profile import Profile, available_profiles, load_profile
from config.models import Device, OutboxSettings
from store.embedded import EmbeddedStore
from store.outbox import DurableWriter
from store.polls import PollBatch, concat_readings
from store.reading import Reading

log = logging.getLogger("benchmarks.modbus_poll")

SHIPPED_PROFILES = ("generic_power_meter_3p", "elevator_gbt24476", "generic_water_meter")
SCALE_STEPS = (500, 1000, 1500, 2000, 3000, 5000, 7500, 10000)
GOAL_P99_S = 0.250
GOAL_CPU_RATIO = 1.5
GOAL_REQUEST_RATIO = 10.0
BATCH_HOLD_S = 0.1
SinkMode = Literal["batched", "direct", "none"]


# -- setup --------------------------------------------------------------------------------------
def write_bench_profile(directory: Path, registers: int) -> Path:
    """A power-meter profile of ``registers // 2`` float32 values at 0, 2, 4, ...; its path."""
    fields = registers // 2
    data = {
        "name": f"bench_meter_{2 * fields}",
        "description": f"Benchmark meter: {fields} float32 values in consecutive registers",
        "kind": "power_meter",
        "source": "facmon benchmark (synthetic)",
        "defaults": {"table": "holding", "word_order": "ABCD", "unit": "V"},
        "registers": [
            {"metric": f"value_{k:03d}", "address": 2 * k, "type": "float32"} for k in range(fields)
        ],
    }
    path = directory / f"bench_meter_{2 * fields}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def make_devices(
    sim: SimulatorProcess, n: int, profile: Path, interval: float, timeout: float
) -> list[Device]:
    out: list[Device] = []
    for i in range(n):
        port, unit = sim.address(i)
        out.append(
            Device.model_validate(
                {
                    "id": f"pm-{i:05d}",
                    "name": f"bench meter {i}",
                    "kind": "power_meter",
                    "location": {"building": "A", "floor": f"{i % 30 + 1}F"},
                    "source": {
                        "type": "modbus_tcp",
                        "host": HOST,
                        "port": port,
                        "unit_id": unit,
                        "profile": str(profile),
                        "timeout": timeout,
                    },
                    "poll_interval": interval,
                }
            )
        )
    return out


def _fields(profile: Profile) -> list[tuple[int, int, int]]:
    """(function code, address, count) of every numeric field: the per-field requests."""
    regs = [r for r in profile.registers if r.type != "string"]
    return [(plan([r])[0].function_code, r.address, r.count) for r in regs]


def _planned(profile: Profile) -> list[tuple[int, int, int]]:
    regs = [r for r in profile.registers if r.type != "string"]
    return [(rd.function_code, rd.address, rd.count) for rd in plan(regs)]


# -- collector run ------------------------------------------------------------------------------
class PollLog:
    """Poll starts (from the collector's ``clock=``) and ends (sink calls), per device."""

    def __init__(self) -> None:
        self._m0 = time.monotonic()
        self._base = datetime.now(UTC)
        self.polls: list[tuple[str, datetime, float]] = []  # device, poll timestamp, end
        self.samples = 0
        self.down = 0  # polls that reported device_up = 0

    def clock(self) -> datetime:
        # Monotonic mapped onto UTC: poll starts stay comparable if the wall clock steps.
        return self._base + timedelta(seconds=time.monotonic() - self._m0)

    def monotonic_of(self, t: datetime) -> float:
        return self._m0 + (t - self._base).total_seconds()


class BenchSink:
    """The collector's sink: records the poll, then hands the batch to the DurableWriter."""

    def __init__(self, writer: DurableWriter | None, polls: PollLog, mode: SinkMode) -> None:
        self.writer = writer
        self.polls = polls
        self.mode = mode
        self.cpu_s = 0.0  # event-loop thread CPU spent inside the sink
        self._pending: list[Sequence[Reading]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="bench-put")
        self._futures: list[Future[None]] = []
        self.put_errors = 0

    def __call__(self, readings: Sequence[Reading]) -> None:
        c0 = time.thread_time()
        self.polls.samples += len(readings)
        if isinstance(readings, PollBatch):  # columns: no Reading built here
            device, t = readings.device, readings.time
            # A failed poll carries only health samples, device_up first.
            down = readings.metrics[0] == "device_up" and readings.values[0] == 0.0
        else:
            first = readings[0]  # never empty: every poll carries its health samples
            device, t = first.device, first.time
            down = any(r.metric == "device_up" and r.value == 0 for r in readings)
        if down:
            self.polls.down += 1
        if self.mode == "direct":
            assert self.writer is not None
            self.writer.put(readings)
        elif self.mode == "batched":
            # Polls kept as they came (as facmon.handoff does): extending one list of readings
            # would build every Reading of a PollBatch on the loop.
            self._pending.append(readings)
            if self._handle is None:
                self._handle = asyncio.get_running_loop().call_later(BATCH_HOLD_S, self._flush)
        # The end of the poll for the schedule: the collector reads its clock right after this.
        self.polls.polls.append((device, t, time.monotonic()))
        self.cpu_s += time.thread_time() - c0

    def _flush(self) -> None:
        self._handle = None
        if not self._pending:
            return
        parts, self._pending = self._pending, []
        assert self.writer is not None
        self._futures = [f for f in self._futures if not f.done() or self._failed(f)]
        self._futures.append(self._pool.submit(self.writer.put, concat_readings(parts)))

    def _failed(self, f: Future[None]) -> bool:
        if f.exception() is not None:
            self.put_errors += 1
            log.error("outbox put failed: %s", f.exception())
        return False

    def drain(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._flush()
        for f in self._futures:
            f.exception()  # waits
            self._failed(f)
        self._futures = []
        self._pool.shutdown(wait=True)


@dataclass
class CollectorRun:
    devices: int
    registers: int
    interval: float
    sink: SinkMode
    window_s: float = 0.0
    requests: int = 0
    registers_read: int = 0
    server_errors: int = 0
    samples_window: int = 0
    loop_cpu_s: float = 0.0
    process_cpu_s: float = 0.0
    sink_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0
    lateness: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # poll start to sink call
    polls_window: int = 0
    missed_slots: int = 0
    overruns: int = 0
    down_polls: int = 0
    emitted: int = 0
    stored: int = -1
    wrong_values: int = -1
    flushed: bool = False
    flush_s: float = 0.0
    backlog_start: int = 0
    backlog_end: int = 0
    dropped: int = 0
    put_errors: int = 0
    extra_cancels: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.window_s if self.window_s else 0.0

    def per_request_us(self, cpu_s: float) -> float:
        return cpu_s / self.requests * 1e6 if self.requests else float("nan")

    def pct(self, q: float) -> float:
        return percentile(self.lateness, q)

    @property
    def all_stored(self) -> bool:
        return (
            self.sink != "none"
            and self.flushed
            and self.stored == self.emitted
            and self.put_errors == 0
        )

    @property
    def store_keeps_up(self) -> bool:
        # The outbox may hold up to about two flush intervals' worth; more growth over the
        # window means the store falls behind and the backlog would grow without end.
        per_s = self.samples_window / self.window_s if self.window_s else 0.0
        return self.backlog_end - self.backlog_start <= 2.0 * per_s

    @property
    def meets_goal(self) -> bool:
        return (
            self.pct(0.99) < GOAL_P99_S
            and self.all_stored
            and self.wrong_values == 0
            and self.missed_slots == 0
            and self.down_polls == 0
            and self.store_keeps_up
        )


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _slots(seq: Sequence[tuple[float, float]], interval: float, anchor: float) -> list[int]:
    # The collector's rule: next_due += interval; if that is already past when the poll ended,
    # skip ahead by whole intervals (counted as an overrun, not stacked).
    slots: list[int] = []
    k = 0
    prev_end = 0.0
    for i, (_start, end) in enumerate(seq):
        if i:
            k += 1
            due = anchor + k * interval
            if due < prev_end:
                k += math.ceil((prev_end - due) / interval)
        slots.append(k)
        prev_end = end
    return slots


def analyse_lateness(
    polls: PollLog, interval: float, w0: float, w1: float, devices: int = 0
) -> tuple[list[float], int, list[float]]:
    """(lateness, missed slots, durations) of the polls due in the window [w0, w1].

    Missed slots = slots due in the window minus polls made for them, per device (a device
    that never polled misses all of its slots: ``devices`` says how many there should be).
    """
    by_dev: dict[str, list[tuple[float, float]]] = {}
    for dev, t, end in polls.polls:
        by_dev.setdefault(dev, []).append((polls.monotonic_of(t), end))
    lateness: list[float] = []
    durations: list[float] = []
    slots_in_window = round((w1 - w0) / interval)
    missed = max(0, devices - len(by_dev)) * slots_in_window
    for seq in by_dev.values():
        seq.sort()
        # A first guess that is exact when some early poll was on time: skips and lateness
        # only ever make start - i * interval larger.
        anchor = min(s - i * interval for i, (s, _) in enumerate(seq))
        for _ in range(4):
            slots = _slots(seq, interval, anchor)
            fitted = min(s - k * interval for (s, _), k in zip(seq, slots, strict=True))
            if fitted == anchor:
                break
            anchor = fitted
        made = 0
        for (start, end), k in zip(seq, slots, strict=True):
            if w0 <= anchor + k * interval <= w1:
                made += 1
                lateness.append(max(0.0, start - (anchor + k * interval)))
                durations.append(end - start)
        first = max(0, math.ceil((w0 - anchor) / interval))
        due = sum(
            1
            for j in range(first, first + slots_in_window + 2)
            if w0 <= anchor + j * interval <= w1
        )
        missed += max(0, due - made)
    return lateness, missed, durations


def _count_store(path: Path) -> tuple[int, int]:
    """(rows, rows of value_000 whose value is not the simulator's) in the DuckDB file."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        total = con.execute("SELECT count(*) FROM readings").fetchone()
        # Device i serves value_000 = 100 + i / 1000 (float32): checks the whole path.
        wrong = con.execute(
            "SELECT count(*) FROM readings WHERE metric = 'value_000' "
            "AND abs(value - (100 + CAST(substr(device, 4) AS INTEGER) / 1000.0)) > 0.001"
        ).fetchone()
    finally:
        con.close()
    return int(total[0]) if total else -1, int(wrong[0]) if wrong else -1


async def _stop(task: asyncio.Task[None]) -> int:
    """Cancel the collector and wait for it; the number of extra cancels it needed.

    Bounded: if a poll task swallows its cancellation (Python 3.11's ``asyncio.wait_for``, which
    pymodbus uses, returns a result that arrived together with the cancel), the remaining poll
    tasks are cancelled again, for up to 20 s, and then the run is abandoned with an error.
    """
    task.cancel()
    for extra in range(20):
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if done:
            if extra:
                log.error("the collector needed %d extra cancel(s) to stop", extra)
            return extra
        left = [
            t
            for t in asyncio.all_tasks()
            if t is not task and t is not asyncio.current_task() and not t.done()
        ]
        log.error("collector still running 1 s after cancel; %d tasks left", len(left))
        for t in left[:3]:
            t.print_stack(limit=8, file=sys.stderr)
        for t in left:
            t.cancel()
    raise RuntimeError("the collector did not stop when cancelled")


async def _collect(
    sim: SimulatorProcess,
    devices: list[Device],
    run: CollectorRun,
    tmp: Path,
    seconds: float,
    warmup: float,
    profiler: cProfile.Profile | None,
) -> None:
    store_path = tmp / "readings.duckdb"
    store: EmbeddedStore | None = None
    writer: DurableWriter | None = None
    if run.sink != "none":
        store = EmbeddedStore(store_path)
        settings = OutboxSettings(
            max_samples=1_000_000_000, batch_size=5000, flush_interval=timedelta(seconds=1)
        )
        writer = DurableWriter(store, tmp / "outbox.db", settings)
        writer.start()
    polls = PollLog()
    sink = BenchSink(writer, polls, run.sink)
    collector = ModbusCollector(devices, sink, site_id="bench", clock=polls.clock)
    task = asyncio.create_task(collector.run(), name="collector")
    try:
        await asyncio.sleep(warmup)
        s0 = sim.stats()  # blocks the loop ~1 ms: the snapshot lines up with the window
        c0, p0, k0, n0 = time.thread_time(), time.process_time(), sink.cpu_s, polls.samples
        run.backlog_start = writer.stats.depth if writer else 0
        w0 = time.monotonic()
        if profiler is not None:
            profiler.enable()
        await asyncio.sleep(seconds)
        if profiler is not None:
            profiler.disable()
        w1 = time.monotonic()
        c1, p1, k1, n1 = time.thread_time(), time.process_time(), sink.cpu_s, polls.samples
        run.backlog_end = writer.stats.depth if writer else 0
        s1 = sim.stats()  # blocks the loop ~1 ms: the snapshot lines up with the window
        # Keep polling a little: a poll due just before the window's end may start after it,
        # and must not be counted as missed (figures above are taken at the window's end).
        await asyncio.sleep(min(run.interval, 5.0) + 0.25)
    finally:
        run.extra_cancels = await _stop(task)
        sink.drain()
        if writer is not None and store is not None:
            f0 = time.monotonic()
            run.flushed = await asyncio.to_thread(writer.flush, max(60.0, 3 * seconds))
            run.flush_s = time.monotonic() - f0
            stats = writer.stats
            run.dropped = stats.dropped_overflow + stats.dropped_rejected
            writer.close(flush_timeout=1.0)
            store.close()
    run.window_s = w1 - w0
    run.requests = s1.requests - s0.requests
    run.registers_read = s1.registers - s0.registers
    run.server_errors = s1.errors - s0.errors
    run.sim_cpu_s = s1.cpu_s - s0.cpu_s
    run.loop_cpu_s, run.process_cpu_s, run.sink_cpu_s = c1 - c0, p1 - p0, k1 - k0
    run.samples_window = n1 - n0
    run.lateness, run.missed_slots, run.durations = analyse_lateness(
        polls, run.interval, w0, w1, run.devices
    )
    run.polls_window = len(run.lateness)
    run.overruns = sum(h.overruns for h in collector.health.values())
    run.down_polls = polls.down
    run.emitted = polls.samples
    run.put_errors = sink.put_errors
    if store is not None:
        run.stored, run.wrong_values = _count_store(store_path)


def run_collector(
    sim: SimulatorProcess,
    n: int,
    args: argparse.Namespace,
    sink: SinkMode,
    seconds: float,
    profiler: cProfile.Profile | None = None,
) -> CollectorRun:
    tmp = Path(tempfile.mkdtemp(prefix="facmon-bench-", dir=args.tmp_dir))
    try:
        profile = write_bench_profile(tmp, args.registers)
        devices = make_devices(sim, n, profile, args.interval, args.timeout)
        run = CollectorRun(n, args.registers, args.interval, sink)
        asyncio.run(_collect(sim, devices, run, tmp, seconds, args.warmup, profiler))
        return run
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- references ---------------------------------------------------------------------------------
@dataclass
class ClientLoopRun:
    name: str
    window_s: float = 0.0
    requests: int = 0
    errors: int = 0
    loop_cpu_s: float = 0.0
    process_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.window_s if self.window_s else 0.0

    @property
    def cpu_us(self) -> float:
        return self.loop_cpu_s / self.requests * 1e6 if self.requests else float("nan")


async def _client_loop(
    sim: SimulatorProcess,
    n: int,
    reads: Sequence[tuple[int, int, int]],
    run: ClientLoopRun,
    seconds: float,
    warmup: float,
    interval: float | None,
) -> None:
    """Every device's ``reads`` with one pymodbus client and one request in flight per port.

    ``interval`` None: back to back, one task per port walking its units. Otherwise paced like
    the collector: one task per device, first poll offset over the interval per port, each
    request under the port's lock, overrun slots skipped.
    """
    units: dict[int, list[int]] = {}
    for i in range(n):
        port, unit = sim.address(i)
        units.setdefault(port, []).append(unit)
    clients = {
        port: AsyncModbusTcpClient(HOST, port=port, timeout=1.0, retries=0, reconnect_delay=0)
        for port in units
    }
    done = False
    counts = [0, 0]  # requests answered, errors
    loop = asyncio.get_running_loop()

    async def request(client: AsyncModbusTcpClient, unit: int, fc: int, a: int, c: int) -> None:
        try:
            if fc == 3:
                rr = await client.read_holding_registers(a, count=c, device_id=unit)
            else:
                rr = await client.read_input_registers(a, count=c, device_id=unit)
            counts[0] += 1
            if rr.isError():
                counts[1] += 1
        except ModbusException:
            counts[1] += 1

    async def walker(client: AsyncModbusTcpClient, port_units: list[int]) -> None:
        while not done:
            for unit in port_units:
                for fc, a, c in reads:
                    await request(client, unit, fc, a, c)
                    if done:
                        return

    async def device(
        client: AsyncModbusTcpClient, lock: asyncio.Lock, unit: int, offset: float, every: float
    ) -> None:
        next_due = loop.time() + offset
        while not done:
            delay = next_due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for fc, a, c in reads:
                async with lock:
                    await request(client, unit, fc, a, c)
            next_due += every
            now = loop.time()
            if next_due < now:
                next_due += math.ceil((now - next_due) / every) * every

    tasks: list[asyncio.Task[None]] = []
    try:
        connected = await asyncio.gather(*(c.connect() for c in clients.values()))
        if not all(connected):
            raise RuntimeError("reference client cannot connect to the simulator")
        for port, port_units in units.items():
            if interval is None:
                tasks.append(asyncio.create_task(walker(clients[port], port_units)))
                continue
            lock = asyncio.Lock()
            for k, unit in enumerate(port_units):
                offset = interval * k / len(port_units)
                tasks.append(
                    asyncio.create_task(device(clients[port], lock, unit, offset, interval))
                )
        await asyncio.sleep(warmup)
        s0 = sim.stats()  # blocks the loop ~1 ms: the snapshot lines up with the window
        r0, e0, c0, p0 = counts[0], counts[1], time.thread_time(), time.process_time()
        w0 = time.monotonic()
        await asyncio.sleep(seconds)
        w1 = time.monotonic()
        r1, e1, c1, p1 = counts[0], counts[1], time.thread_time(), time.process_time()
        s1 = sim.stats()  # blocks the loop ~1 ms: the snapshot lines up with the window
    finally:
        done = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients.values():
            client.close()
    run.window_s, run.requests, run.errors = w1 - w0, r1 - r0, e1 - e0
    run.loop_cpu_s, run.process_cpu_s = c1 - c0, p1 - p0
    run.sim_cpu_s = s1.cpu_s - s0.cpu_s


def run_client_loop(
    sim: SimulatorProcess,
    name: str,
    n: int,
    reads: Sequence[tuple[int, int, int]],
    seconds: float,
    warmup: float,
    interval: float | None = None,
) -> ClientLoopRun:
    run = ClientLoopRun(name)
    asyncio.run(_client_loop(sim, n, reads, run, seconds, warmup, interval))
    return run


# -- report -------------------------------------------------------------------------------------
def _ok(good: bool) -> str:
    return "ok" if good else "MISSED"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def section(self, title: str) -> None:
        self.rows.append((title, "", ""))

    def row(self, name: str, value: str, goal: str = "") -> None:
        self.rows.append(("  " + name, value, goal))

    def render(self) -> str:
        data = [r for r in self.rows if r[1] or r[2]]
        w0 = max((len(r[0]) for r in data), default=0)
        w1 = max((len(r[1]) for r in data), default=0)
        lines: list[str] = []
        for name, value, goal in self.rows:
            if not value and not goal:
                lines.append(name)
            else:
                lines.append(f"{name:<{w0}}  {value:>{w1}}  {goal}".rstrip())
        return "\n".join(lines)


def _ms(s: float) -> str:
    return f"{s * 1000:.1f}"


def collector_rows(t: Table, run: CollectorRun) -> None:
    t.section(
        f"collector: {run.devices} devices x {run.registers} registers every {run.interval:g} s, "
        f"sink={run.sink}, {run.window_s:.1f} s window"
    )
    t.row("requests/s (counted by the server)", f"{run.rps:,.0f}")
    t.row("registers/s", f"{run.registers_read / run.window_s:,.0f}")
    t.row("samples/s emitted", f"{run.samples_window / run.window_s:,.0f}")
    if run.sink == "none":
        t.row("samples stored", "not stored (sink=none)")
    else:
        stored = (
            f"{run.stored:,} of {run.emitted:,}"
            + ("" if run.flushed else " (flush timed out)")
            + (f", {run.dropped} dropped" if run.dropped else "")
        )
        t.row("samples stored in DuckDB / emitted", stored, f"all  {_ok(run.all_stored)}")
        t.row(
            "value_000 rows with a wrong value",
            str(run.wrong_values),
            f"0  {_ok(run.wrong_values == 0)}",
        )
        t.row(
            "outbox backlog at window start / end",
            f"{run.backlog_start:,} / {run.backlog_end:,}",
            f"store keeps up  {_ok(run.store_keeps_up)}",
        )
        t.row("flush after the run (s)", f"{run.flush_s:.1f}")
    t.row("collector CPU us/request, loop thread", f"{run.per_request_us(run.loop_cpu_s):.1f}")
    t.row(
        "  of which in the sink (outbox put when direct)",
        f"{run.per_request_us(run.sink_cpu_s):.1f}",
    )
    t.row(
        "  collector alone (loop thread - sink)",
        f"{run.per_request_us(run.loop_cpu_s - run.sink_cpu_s):.1f}",
    )
    t.row(
        "process CPU us/request (+ outbox/DuckDB threads)",
        f"{run.per_request_us(run.process_cpu_s):.1f}",
    )
    t.row("process CPU, % of one core", f"{run.process_cpu_s / run.window_s * 100:.0f}")
    t.row("simulator CPU, % of one core (own process)", f"{run.sim_cpu_s / run.window_s * 100:.0f}")
    t.row(
        "poll lateness p50 / p99 / max (ms)",
        f"{_ms(run.pct(0.5))} / {_ms(run.pct(0.99))} / {_ms(run.pct(1.0))}",
        f"p99 < {GOAL_P99_S * 1000:.0f}  {_ok(run.pct(0.99) < GOAL_P99_S)}",
    )
    d = run.durations
    t.row(
        "poll duration p50 / p99 / max (ms; queueing at the port)",
        f"{_ms(percentile(d, 0.5))} / {_ms(percentile(d, 0.99))} / {_ms(percentile(d, 1.0))}",
    )
    t.row(
        "polls in window / missed slots / overruns",
        f"{run.polls_window:,} / {run.missed_slots:,} / {run.overruns:,}",
        f"0 missed  {_ok(run.missed_slots == 0)}",
    )
    t.row("failed polls (device_up=0) / server errors", f"{run.down_polls} / {run.server_errors}")
    if run.extra_cancels:
        t.row("extra cancels needed to stop the collector", str(run.extra_cancels), "0  MISSED")


def reference_rows(
    t: Table,
    naive: ClientLoopRun,
    bare: ClientLoopRun,
    paced: ClientLoopRun,
    runs: Sequence[CollectorRun],
    bench: Profile,
    n: int,
) -> None:
    fields, planned = len(_fields(bench)), len(_planned(bench))
    t.section(f"(a) naive: one read per field, per-port sequential, {naive.window_s:.1f} s")
    t.row("requests/s", f"{naive.rps:,.0f}")
    t.row("client CPU us/request, loop thread", f"{naive.cpu_us:.1f}")
    t.row(
        "requests per device poll: per field / planned",
        f"{fields} / {planned}",
        f"{fields / planned:.1f}x fewer",
    )
    sweep = n * fields / naive.rps if naive.rps else float("inf")
    t.row("time to read every device once (s)", f"{sweep:.2f}")
    t.section("shipped profiles: fields (one request each) vs planned reads")
    names = [*SHIPPED_PROFILES, *(p for p in available_profiles() if p not in SHIPPED_PROFILES)]
    for name in names:
        prof = load_profile(name)
        f, p = len(_fields(prof)), len(_planned(prof))
        good = f / p >= GOAL_REQUEST_RATIO
        t.row(name, f"{f} -> {p}", f"{f / p:.1f}x  (goal >= {GOAL_REQUEST_RATIO:g}x) {_ok(good)}")
    for ref, what in ((bare, "back to back"), (paced, "paced like the collector")):
        t.section(
            f"(b) bare pymodbus client, planned reads, no decoding/storing, {what}, "
            f"{ref.window_s:.1f} s"
        )
        t.row("requests/s", f"{ref.rps:,.0f}")
        t.row("client CPU us/request, loop thread", f"{ref.cpu_us:.1f}")
        for run in runs:
            # The loop thread minus what the sink itself spent there: the collector's own cost.
            ratio = run.per_request_us(run.loop_cpu_s - run.sink_cpu_s) / ref.cpu_us
            goal = f"<= {GOAL_CPU_RATIO:g}x  {_ok(ratio <= GOAL_CPU_RATIO)}"
            t.row(f"CPU/request collector / this, sink={run.sink}", f"{ratio:.2f}x", goal)


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(
            "Poll N simulated Modbus TCP power meters with facmon's collector (every sample "
            "through the durable outbox into DuckDB) and print requests/s, registers/s, "
            "samples/s stored, CPU per request, poll lateness; plus naive per-field polling "
            "and a bare pymodbus loop as references. The simulator runs in its own process."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--devices", type=int, default=2000, help="simulated devices")
    p.add_argument("--registers", type=int, default=60, help="registers per device (even)")
    p.add_argument("--interval", type=float, default=1.0, help="poll interval in seconds")
    p.add_argument(
        "--seconds", type=float, default=20.0, help="measured window of the (first) collector run"
    )
    p.add_argument(
        "--side-seconds",
        type=float,
        default=8.0,
        help="measured window of the further collector runs (--sink all)",
    )
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    p.add_argument("--ref-seconds", type=float, default=6.0, help="window of each reference")
    p.add_argument("--timeout", type=float, default=1.0, help="per-request timeout (s)")
    p.add_argument(
        "--sink",
        choices=("all", "batched", "direct", "none"),
        default="all",
        help=f"batched: polls gathered for {BATCH_HOLD_S * 1000:.0f} ms, put from a worker "
        "thread; direct: DurableWriter.put per poll on the event loop (as facmon.runtime "
        "does); none: count only, nothing stored (the collector's own CPU); all: batched for "
        "--seconds, then direct and none for --side-seconds",
    )
    p.add_argument("--units-per-port", type=int, default=UNITS_PER_PORT, help="units per port")
    p.add_argument(
        "--scale",
        action="store_true",
        help="instead: find the largest device count meeting p99 lateness < 250 ms with every "
        "sample stored (steps " + ", ".join(map(str, SCALE_STEPS)) + "; sink batched unless "
        "--sink direct); each step runs --seconds",
    )
    p.add_argument(
        "--steps", type=str, default="", help="comma-separated device counts for --scale"
    )
    p.add_argument("--no-refs", action="store_true", help="skip the two reference loops")
    p.add_argument(
        "--cprofile",
        type=Path,
        help="write a cProfile of the event-loop thread "
        "during the first collector window to this file",
    )
    p.add_argument("--tmp-dir", type=str, default=None, help="where the outbox/DuckDB files go")
    p.add_argument(
        "--uvloop",
        action="store_true",
        help="run the collector and the references on uvloop (must be installed)",
    )
    args = p.parse_args(argv)
    if args.registers < 2 or args.registers % 2 or args.registers > 2 * 1000:
        p.error("--registers must be even, 2..2000")
    if not 0.1 <= args.interval <= 3600:
        p.error("--interval must be 0.1..3600 s")
    if args.devices < 1 or args.seconds <= 0 or args.side_seconds <= 0:
        p.error("--devices, --seconds and --side-seconds must be positive")
    return args


def _image_registers(args: argparse.Namespace) -> int:
    # Room for the benchmark profile and for reading the shipped power-meter map.
    return max(int(args.registers), 64)


def main_default(args: argparse.Namespace) -> int:
    sinks: list[SinkMode] = ["batched", "direct", "none"] if args.sink == "all" else [args.sink]
    n = args.devices
    with tempfile.TemporaryDirectory() as d:
        bench = load_profile(str(write_bench_profile(Path(d), args.registers)))
    started = time.monotonic()
    with SimulatorProcess(n, _image_registers(args), args.units_per_port) as sim:
        print(f"simulator pid {sim.pid}: {n} devices on {len(sim.ports)} ports", file=sys.stderr)
        runs: list[CollectorRun] = []
        for i, sink in enumerate(sinks):
            print(f"collector, sink={sink} ...", file=sys.stderr)
            profiler = cProfile.Profile() if args.cprofile is not None and i == 0 else None
            seconds = args.seconds if i == 0 else args.side_seconds
            runs.append(run_collector(sim, n, args, sink, seconds, profiler))
            if profiler is not None:
                profiler.dump_stats(str(args.cprofile))
        refs: list[ClientLoopRun] = []
        if not args.no_refs:
            print("reference (a): naive per-field polling ...", file=sys.stderr)
            refs.append(run_client_loop(sim, "naive", n, _fields(bench), args.ref_seconds, 1.0))
            print("reference (b): bare pymodbus loop ...", file=sys.stderr)
            refs.append(run_client_loop(sim, "bare", n, _planned(bench), args.ref_seconds, 1.0))
            print("reference (b): bare pymodbus loop, paced ...", file=sys.stderr)
            refs.append(
                run_client_loop(
                    sim, "paced", n, _planned(bench), args.ref_seconds, args.warmup, args.interval
                )
            )
    t = Table()
    for run in runs:
        collector_rows(t, run)
    if refs:
        naive, bare, paced = refs
        reference_rows(t, naive, bare, paced, runs, bench, n)
    print(t.render())
    print(f"(total {time.monotonic() - started:.0f} s)")
    return 0


def main_scale(args: argparse.Namespace) -> int:
    steps = [int(s) for s in args.steps.split(",") if s.strip()] if args.steps else SCALE_STEPS
    if args.sink == "none":
        raise SystemExit("--scale needs stored samples: use --sink batched or direct")
    sink: SinkMode = "direct" if args.sink == "direct" else "batched"
    results: list[CollectorRun] = []
    with SimulatorProcess(max(steps), _image_registers(args), args.units_per_port) as sim:
        for n in steps:
            print(f"scale step: {n} devices, sink={sink} ...", file=sys.stderr)
            run = run_collector(sim, n, args, sink, args.seconds)
            results.append(run)
            print(
                f"  {n}: p99 {_ms(run.pct(0.99))} ms, {run.rps:,.0f} req/s, stored "
                f"{run.stored:,}/{run.emitted:,}, missed {run.missed_slots}, down "
                f"{run.down_polls}, CPU {run.process_cpu_s / run.window_s * 100:.0f}% -> "
                f"{'ok' if run.meets_goal else 'fails'}",
                file=sys.stderr,
            )
            if not run.meets_goal:
                break
    t = Table()
    for run in results:
        collector_rows(t, run)
    print(t.render())
    best = max((r.devices for r in results if r.meets_goal), default=0)
    line = " | ".join(
        f"{r.devices}: p99 {_ms(r.pct(0.99))} ms {'ok' if r.meets_goal else 'FAIL'}"
        for r in results
    )
    print(
        f"scaling ({args.registers} registers, {args.interval:g} s interval, sink={sink}): {line}"
    )
    print(
        f"largest device count meeting p99 < {GOAL_P99_S * 1000:.0f} ms with every sample "
        f"stored: {best if best else 'none of the steps'}"
    )
    return 0


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM as an exception, so the finally blocks stop the simulator and remove temp files.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.uvloop:
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            raise SystemExit("--uvloop: uvloop is not installed (pip install uvloop)") from None
        # The simulator process keeps the default loop: only the client side changes.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    main_fn: Callable[[argparse.Namespace], int] = main_scale if args.scale else main_default
    return main_fn(args)


if __name__ == "__main__":
    sys.exit(main())
