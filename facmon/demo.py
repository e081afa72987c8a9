"""``facmon demo``: a simulated building and the whole pipeline in one process.

Real Modbus TCP servers on loopback stand in for the devices, so the collector, the durable
writer, the embedded store, the alert engine and the API run exactly as they do on a site.

History: on first start the demo back-fills ``history_days`` (default 430, enough for a
year-long savings baseline plus the months after the measure). The most recent
``RECENT_DAYS`` are written at the 5-minute step with every metric; older days every 15
minutes and only the metrics reports read (``ARCHIVE_METRICS``). The lifts' states
(``POLLED_METRICS``, what the uptime report decides from) are written at each lift's poll
interval from a day before the first day of the last full month (:func:`states_start`): the
uptime report counts a sample for at most 3 polls, so 5- or 15-minute steps would leave most
of those months UNKNOWN. They come from the lift model's fault and maintenance spans as arrays
(``SimulatedBuilding.history(polled=...)``), not from stepping the model every poll. In all
about 3.4 million samples, written in ~40 s on a busy 2-core machine; a restart replays the
simulation without readings (~15 s). Before the live collector starts, the time the back-fill
took is back-filled too, so stored history runs into the first live polls without a gap.
About 60 days before the first start the simulator's air conditioning becomes 30% more
efficient (``SAVING_FRACTION``): that is the measure the savings report verifies, and
``reports.savings`` is set around it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.compute as pc

from collector.transport import describe_source
from config import ConfigError, SiteConfig, load_config_text
from facmon.checks import CHECKS
from facmon.progress import Progress
from facmon.runtime import Pipeline, api_tokens, bind_socket, open_store
from reports.period import Period, local_midnight
from reports.uptime import LOOKBACK, STATE_METRICS
from simulator import PowerMeterParams, SimulatedBuilding, default_params, with_ports
from simulator.building import ModelParams
from store import Reading, Store
from store.columnar import ReadingBatch
from store.reading import to_us

log = logging.getLogger("facmon.demo")

HISTORY_STEP = timedelta(minutes=5)
ARCHIVE_STEP = timedelta(minutes=15)
RECENT_DAYS = 35
# What the reports read from older history: energy and demand, lift states and use, water use
# and night flow, outdoor temperature.
ARCHIVE_METRICS = frozenset(
    {
        "energy_import",
        "active_power",
        "service_mode",
        "running",
        "door_zone",
        "passenger_in_car",
        "fault_code",
        "entrapment",
        "run_count",
        "volume",
        "flow_rate",
        "outdoor_temperature",
    }
)
# Back-filled at each lift's own poll interval, as the collector stores them (see the module doc).
POLLED_METRICS = frozenset(STATE_METRICS)
SAVING_FRACTION = 0.3  # the measure: air conditioning uses 30% less from the measure day on
MEASURE_DAYS_AGO = 60
STATE_FILE = "demo-state.json"
STATE_VERSION = 2  # the state file written by this simulator (weather, measure)
WRITE_CHUNK = 50_000
TOP_UP_LEFT = timedelta(seconds=1)
FAULT_CODE = 31  # "door lock circuit open" in the simulator's fault table
FAULT_DURATION = timedelta(minutes=4)


def demo_config(data_dir: Path, measure: date | None = None) -> SiteConfig:
    """The demo site; with ``measure`` its savings report compares the 365 days before the
    measure with the days from it on. Without one, the measure of the demo whose data is in
    ``data_dir`` (its state file), so reports run on that data find it too."""
    text = resources.files("simulator").joinpath("demo_site.yaml").read_text(encoding="utf-8")
    cfg = load_config_text(text, filename="demo_site.yaml", base_dir=data_dir, checks=CHECKS)
    cfg = cfg.model_copy(update={"data_dir": data_dir})
    if measure is None:
        state = _load_state(data_dir / STATE_FILE)
        measure = date.fromisoformat(state["measure"]) if state is not None else None
    if measure is None:
        return cfg
    savings = cfg.reports.savings.model_copy(
        update={
            "baseline_start": measure - timedelta(days=365),
            "baseline_end": measure,
            "reporting_start": measure,
        }
    )
    reports = cfg.reports.model_copy(update={"savings": savings})
    return cfg.model_copy(update={"reports": reports})


def measure_day(now: datetime, tz: ZoneInfo) -> date:
    """About ``MEASURE_DAYS_AGO`` days before ``now``, and no later than the first day of the
    last full month, so that month's savings report lies wholly after the measure."""
    today = now.astimezone(tz).date()
    last_full = Period.month(today.year, today.month, tz).previous_month().first
    return min(today - timedelta(days=MEASURE_DAYS_AGO), last_full)


def states_start(now: datetime, tz: ZoneInfo) -> datetime:
    """Where the lifts' states start at their poll interval: the uptime report's look-back
    before the first day of the last full month, so that month and the current one are
    covered whole."""
    today = now.astimezone(tz).date()
    first = Period.month(today.year, today.month, tz).previous_month().first
    return local_midnight(first, tz) - LOOKBACK


def demo_params(cfg: SiteConfig, measure: date) -> dict[str, ModelParams]:
    """The simulator's defaults, with the measure in every power meter's air conditioning."""
    at = local_midnight(measure, ZoneInfo(cfg.site.timezone))
    out = default_params(cfg)
    for dev, p in out.items():
        if isinstance(p, PowerMeterParams):
            out[dev] = replace(p, saving_from=at, saving_fraction=SAVING_FRACTION)
    return out


def backfill(
    sim: SimulatedBuilding,
    store: Store,
    start: datetime,
    end: datetime,
    label: str,
    write_after: datetime | None = None,
    step: timedelta = HISTORY_STEP,
    metrics: frozenset[str] | None = None,
    polled: frozenset[str] = frozenset(),
) -> int:
    """Run the simulator from ``start`` to ``end`` and write what it produced after
    ``write_after`` straight into the store, with a progress line; ``polled`` metrics at each
    device's poll interval (see ``SimulatedBuilding.history``).

    The simulator's counters are exact integrals from the first instant it was run at, so
    replaying from the same start after a restart brings them back to where the stored history
    left them, whatever the steps. Chunks are written on a second thread while the simulator
    produces the next one (the store's insert runs outside the GIL); one chunk is in flight at
    a time, so a store error surfaces at the next chunk. Polled samples arrive as columnar
    batches and go to the store as they are (the embedded store inserts the Arrow table).
    """
    days = (end - start).total_seconds() / 86400
    bar = Progress(label, days, "days")
    n = 0
    pending: list[Reading] = []
    columns: list[ReadingBatch] = []
    held = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-write") as writer:
        in_flight: Future[None] | None = None

        def submit(rows: Sequence[Reading]) -> None:
            nonlocal in_flight, n
            if in_flight is not None:
                in_flight.result()
            in_flight = writer.submit(store.write, rows)
            n += len(rows)

        for batch in sim.history(start, end, step, metrics, polled):
            if isinstance(batch, ReadingBatch):
                if write_after is not None:
                    batch = _after(batch, write_after)
                columns.append(batch)
                held += len(batch)
                if held >= WRITE_CHUNK:
                    submit(ReadingBatch.concat(columns))
                    columns, held = [], 0
                continue
            if batch and (write_after is None or batch[0].time > write_after):
                pending.extend(batch)
            if len(pending) >= WRITE_CHUNK:  # one store write per step would cost far more
                submit(pending)
                pending = []
            if batch:
                bar.update((batch[-1].time - start).total_seconds() / 86400, f"{n:,} samples")
        for rest in (pending, ReadingBatch.concat(columns)):
            if len(rest):
                submit(rest)
        if in_flight is not None:
            in_flight.result()
    bar.finish(f"{n:,} samples written")
    return n


def _after(batch: ReadingBatch, t: datetime) -> ReadingBatch:
    table = batch.table
    return ReadingBatch(table.filter(pc.greater(table.column("time"), to_us(t))))


def _polls(cfg: SiteConfig) -> str:
    """The lifts' poll intervals, for the progress lines."""
    every = sorted({d.poll_interval for d in cfg.devices if d.kind == "elevator"})
    return "/".join(f"{e.total_seconds():g} s" for e in every)


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        datetime.fromisoformat(state["history_start"])
        datetime.fromisoformat(state["recent_start"])
        date.fromisoformat(state["measure"])
        int(state["seed"])
        if state.get("version") != STATE_VERSION:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def _first_start(
    sim: SimulatedBuilding, store: Store, state: dict[str, Any], now: datetime
) -> datetime:
    """Back-fill the whole history up to ``now`` (where the models then stand)."""
    start = datetime.fromisoformat(state["history_start"])
    recent = datetime.fromisoformat(state["recent_start"])
    tz = ZoneInfo(sim.config.site.timezone)
    states = max(start, min(states_start(now, tz), recent))
    polls = _polls(sim.config)
    lifts = f", lift states every {polls}" if polls else ""
    began = time.monotonic()
    if states > start:
        days = round((states - start).total_seconds() / 86400)
        label = f"Back-filling {days} days of 15-minute history (report metrics)"
        backfill(sim, store, start, states, label, step=ARCHIVE_STEP, metrics=ARCHIVE_METRICS)
    if recent > states:
        days = round((recent - states).total_seconds() / 86400)
        label = f"Back-filling {days} days of 15-minute history (report metrics{lifts})"
        backfill(
            sim, store, states, recent, label, step=ARCHIVE_STEP, metrics=ARCHIVE_METRICS,
            polled=POLLED_METRICS,
        )  # fmt: skip
    days = round((now - recent).total_seconds() / 86400)
    label = f"Back-filling {days} days of 5-minute history{f' ({lifts[2:]})' if lifts else ''}"
    backfill(sim, store, recent, now, label, polled=POLLED_METRICS)
    print(f"History back-filled in {time.monotonic() - began:.1f} s")
    return now


def _catch_up(
    sim: SimulatedBuilding, store: Store, state: dict[str, Any], now: datetime, last: datetime
) -> datetime:
    """Same seed, same start: replay the models to where the stored data ends, then write on.

    Counters and lift timelines depend only on the first instant and the current one, so the
    models are advanced straight to the last stored sample without producing readings (the
    simulation alone: about a third of the first start) and history is written from there.
    """
    start = datetime.fromisoformat(state["history_start"])
    resume = max(datetime.fromisoformat(state["recent_start"]), last)
    sim.update(start)
    sim.update(resume)
    if now <= resume:
        return resume
    label = "History found - skipping back-fill; catching up"
    backfill(sim, store, resume, now, label, last, polled=POLLED_METRICS)
    return now


def _top_up(
    sim: SimulatedBuilding,
    store: Store,
    since: datetime,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Back-fill what passed while the back-fill ran (tens of seconds), until less than a
    second is left: the live collector's first polls then follow the stored history within a
    poll or two -- inside the reports' gap tolerance, so no moment is left uncovered -- and
    its samples come after every back-filled one (no identity is written twice)."""
    for _ in range(3):  # each round takes a fraction of the one before
        now = clock()
        if now - since < TOP_UP_LEFT:
            return
        label = f"Catching up the last {(now - since).total_seconds():.0f} s"
        backfill(sim, store, since, now, label, polled=POLLED_METRICS)
        since = now


async def _inject_fault_later(sim: SimulatedBuilding, device: str, after: float) -> None:
    await asyncio.sleep(after)
    log.warning("simulator: injecting fault %d on elevator %s", FAULT_CODE, device)
    sim.inject_fault(device, FAULT_CODE, FAULT_DURATION)


def run_demo(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    history_days: int = 430,
    fault_after: float = 60.0,
    seed: int = 1,
) -> int:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    state_file = data_dir / STATE_FILE
    state = _load_state(state_file)
    if state is None and state_file.exists():
        print(
            f"{data_dir} holds data of an older facmon demo (a different simulation); delete "
            "it or pass another --data-dir"
        )
        return 2
    now = datetime.now(UTC)
    fresh = state is None
    if state is None:
        tz = ZoneInfo(demo_config(data_dir).site.timezone)
        start = now - timedelta(days=history_days)
        state = {
            "version": STATE_VERSION,
            "history_start": start.isoformat(),
            "recent_start": max(start, now - timedelta(days=RECENT_DAYS)).isoformat(),
            "measure": measure_day(now, tz).isoformat(),
            "seed": seed,
        }
    measure = date.fromisoformat(state["measure"])
    try:
        cfg = demo_config(data_dir, measure)
    except ConfigError as e:  # a packaging error, not a user error
        print(e)
        return 2
    sock = bind_socket(host, port)
    tokens, generated = api_tokens(cfg)

    async def main() -> None:
        stop = asyncio.Event()
        from facmon.cli import _install_stop

        _install_stop(stop)
        store = open_store(cfg)
        stored = store.latest(metrics=["device_up"])
        sim = SimulatedBuilding(cfg, params=demo_params(cfg, measure), seed=int(state["seed"]))
        if fresh or not stored:
            reached = await asyncio.to_thread(_first_start, sim, store, state, now)
            state_file.write_text(json.dumps(state), encoding="utf-8")
        else:
            last = max(r.time for r in stored)
            print(f"History found in {data_dir}")
            reached = await asyncio.to_thread(_catch_up, sim, store, state, datetime.now(UTC), last)
        await asyncio.to_thread(_top_up, sim, store, reached)
        ports = await sim.start()
        live = with_ports(cfg, ports)
        pipeline = Pipeline.build(live, store=store)
        api = f"http://{host}:{sock.getsockname()[1]}"
        token = generated or os.environ.get("FACMON_API_TOKEN", "<your FACMON_API_TOKEN>")
        elevators = [d.id for d in live.devices if d.kind == "elevator"]
        print()
        print(f"facmon demo: {live.site.name} - {len(live.devices)} simulated devices")
        for d in live.devices:
            src = d.source
            print(f"  {d.id:<18} {d.kind:<12} {describe_source(src)}")
        print(f"  API      {api}   (interactive docs: {api}/docs)")
        print(f"  Token    {token}")
        print(f"  Try      curl -H 'Authorization: Bearer {token}' {api}/api/v1/readings/latest")
        print(f"  Data     {data_dir}")
        if elevators and fault_after >= 0:
            print(
                f"  In {fault_after:.0f} s the simulator injects a fault on {elevators[0]}: "
                f"watch {api}/api/v1/tickets"
            )
        print("Press Ctrl-C to stop.")
        extra = [asyncio.create_task(sim.run(), name="simulator")]
        if elevators and fault_after >= 0:
            extra.append(asyncio.create_task(_inject_fault_later(sim, elevators[0], fault_after)))
        try:
            await pipeline.serve(sock, tokens, stop, extra=extra)
        finally:
            await sim.stop()
        print("facmon demo stopped.")

    asyncio.run(main())
    return 0
