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

Alerts and tickets: what the first start back-fills of the metrics the site's rules watch also
goes through the real alert engine, in time order and each sample at its own time
(:class:`AlertReplay`), so alerts and tickets open when the simulated faults happened; a seeded
maintenance team (:mod:`simulator.technicians`) works those tickets at historical times, and
leaves the repairs of the last day (``OPEN_DAYS``) under way. That adds a few seconds to the
first start (about 200 transactions on the ticket database per 100 tickets dominate). A restart
evaluates only what it writes after the stored history, so no ticket is opened twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alerts.engine import CHATTER_WINDOW, AlertEngine, selects
from alerts.paging import retire
from alerts.tickets import TicketStore
from collector.transport import describe_source
from config import ConfigError, SiteConfig, load_config_text
from config.escalation import WaitStep
from facmon.checks import CHECKS
from facmon.demo_broker import DemoBroker, find_mosquitto
from facmon.demo_receiver import DemoReceiver
from facmon.progress import Progress
from facmon.runtime import Pipeline, api_tokens, bind_socket, open_store
from reports.period import Period, local_midnight
from reports.uptime import LOOKBACK, STATE_METRICS
from simulator import (
    ElevatorParams,
    PowerMeterParams,
    SimulatedBuilding,
    default_params,
    with_ports,
)
from simulator.building import ModelParams
from simulator.mqtt_sensors import MqttPublisher
from simulator.technicians import TechnicianTeam
from store import Reading, Store
from store.columnar import ReadingBatch
from store.reading import Quality, from_us, to_us

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
# The demo's lifts fail a little more often than the simulator's default, and more of their
# faults shut a passenger in, so that every month's reports have faults and entrapments to
# show (about 3 faults and 1.3 entrapments per lift and month). A passenger is freed 10 to 36
# minutes after being shut in: mostly within the 30-minute rescue limit, now and then not.
LIFT_FAULTS_PER_WEEK = 0.75
LIFT_ENTRAPMENT_SHARE = 0.4
LIFT_ENTRAPMENT_MINUTES = (10.0, 36.0)
# Repairs of the back-filled history's last day are still under way at start-up, so the
# console and the maintenance backlog have current work to show.
OPEN_DAYS = 1.0


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
    """The simulator's defaults, with the measure in every power meter's air conditioning and
    the demo's fault rates in every lift (``LIFT_*``)."""
    at = local_midnight(measure, ZoneInfo(cfg.site.timezone))
    out = default_params(cfg)
    for dev, p in out.items():
        if isinstance(p, PowerMeterParams):
            out[dev] = replace(p, saving_from=at, saving_fraction=SAVING_FRACTION)
        elif isinstance(p, ElevatorParams):
            out[dev] = replace(
                p,
                faults_per_week=LIFT_FAULTS_PER_WEEK,
                entrapment_share=LIFT_ENTRAPMENT_SHARE,
                entrapment_minutes=LIFT_ENTRAPMENT_MINUTES,
            )
    return out


@dataclass(slots=True)
class _Series:
    """The newest sample taken of one watched series."""

    value: float
    changed: int  # time (us) of the latest change of value


_LONG_AGO = -(2**62)  # before any change (us); far enough from int64's end to subtract from


@contextlib.contextmanager
def _quiet_engine() -> Iterator[None]:
    """A year of alert transitions would bury the start-up lines; the replay's summary line
    says what happened. Warnings still come through."""
    engine_log = logging.getLogger(AlertEngine.__module__)
    level = engine_log.level
    engine_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        engine_log.setLevel(level)


class AlertReplay:
    """Back-filled readings through the real alert engine, as the live path would have fed it
    (``Pipeline.ingest``), so alerts and tickets open at their historical times; a
    :class:`~simulator.technicians.TechnicianTeam` may work the tickets in between.

    Only the metrics the site's rules watch are taken (:meth:`take`), and of those only the
    samples that can move an alert: one equal to the sample before it and further than
    ``horizon`` from the latest change of its series -- the longest timer its rules run
    (``for``, ``keep_firing_for``, the chatter hold) plus two polls -- finds its alert where the
    sample before left it. That keeps a month of 15-second lift states to a few hundred
    evaluations. :meth:`flush` puts what was taken in time order and :meth:`close` (or
    :meth:`finish`) evaluates it all, each sample at its own time (``now`` = the sample time),
    with the team acting up to each one. The engine is not ticked: only a slice of each
    device's metrics is fed, so the silence in between would read as communication loss, and a
    back-fill has no gap for NODATA to report.
    """

    def __init__(
        self, config: SiteConfig, engine: AlertEngine, team: TechnicianTeam | None = None
    ) -> None:
        self.engine = engine
        self.team = team
        self._horizon: dict[tuple[str, str], int] = {}
        for rule in config.rules:
            hold = max(rule.for_, rule.keep_firing_for, CHATTER_WINDOW)
            for device in config.devices:
                if selects(rule.select, device):
                    key = (device.id, rule.metric)
                    h = (hold + 2 * device.poll_interval) // timedelta(microseconds=1)
                    self._horizon[key] = max(self._horizon.get(key, 0), h)
        self.metrics = frozenset(m for _, m in self._horizon)
        self._metric_set = pa.array(sorted(self.metrics), pa.string())
        self._series: dict[tuple[str, str], _Series] = {}
        self._held: list[Reading] = []
        self.evaluated = 0  # samples evaluated
        self.transitions = 0
        self._queued: list[list[Reading]] = []
        self.seconds = 0.0  # spent filtering and evaluating, the team's work included

    def take(self, batch: Sequence[Reading]) -> None:
        """Keep the samples of ``batch`` that can move an alert, for the next :meth:`flush`.
        Each series must come in time order across calls."""
        began = time.perf_counter()
        if isinstance(batch, ReadingBatch):
            self._take_columns(batch)
        else:
            for r in batch:
                if r.metric in self.metrics and self._keep(r.device, r.metric, r.time_us, r.value):
                    self._held.append(r)
        self.seconds += time.perf_counter() - began

    def _keep(self, device: str, metric: str, t: int, v: float) -> bool:
        key = (device, metric)
        horizon = self._horizon.get(key)
        if horizon is None:
            return False
        s = self._series.get(key)
        if s is None:
            self._series[key] = _Series(v, t)
            return True
        if v != s.value:
            s.value, s.changed = v, t
            return True
        return t - s.changed <= horizon

    def _take_columns(self, batch: ReadingBatch) -> None:
        """:meth:`_keep` over whole columns: a day of lift states is some 20,000 samples."""
        table = batch.table
        if not table.num_rows:
            return
        table = table.filter(pc.is_in(table.column("metric"), value_set=self._metric_set))
        if not table.num_rows:
            return
        table = table.sort_by(
            [("device", "ascending"), ("metric", "ascending"), ("time", "ascending")]
        )
        devices = table.column("device")
        metrics = table.column("metric")
        times = table.column("time").to_numpy()
        values = table.column("value").to_numpy()
        quality = table.column("quality").to_numpy()
        # One run of rows per series after the sort: where (device, metric) changes.
        cut = pc.or_(
            pc.not_equal(devices.slice(1), devices.slice(0, len(devices) - 1)),
            pc.not_equal(metrics.slice(1), metrics.slice(0, len(metrics) - 1)),
        )
        edges = [0, *(np.flatnonzero(cut.to_numpy(zero_copy_only=False)) + 1), len(times)]
        for lo, hi in itertools.pairwise(edges):
            device, metric = devices[lo].as_py(), metrics[lo].as_py()
            horizon = self._horizon.get((device, metric))
            if horizon is None:
                continue
            rows = np.arange(lo, hi)
            t, v = times[lo:hi], values[lo:hi]
            s = self._series.get((device, metric))
            changed = np.empty(len(v), dtype=bool)
            changed[0] = s is None or bool(v[0] != s.value)
            changed[1:] = v[1:] != v[:-1]
            marks = np.where(changed, t, _LONG_AGO)
            if s is not None:
                marks[0] = max(int(marks[0]), s.changed)
            latest = np.maximum.accumulate(marks)
            keep = rows[t - latest <= horizon]
            self._series[(device, metric)] = _Series(float(v[-1]), int(latest[-1]))
            self._held.extend(
                Reading(
                    from_us(int(times[i])),
                    device,
                    metric,
                    float(values[i]),
                    quality=Quality(int(quality[i])),
                )
                for i in keep
            )

    def flush(self) -> None:
        """Put what was taken in time order, to be evaluated by :meth:`close`: each flush
        covers later samples than the one before. Evaluating is left until the back-fill's
        writes are done, because the ticket database's transactions run several times slower
        while the store's writer thread competes for the interpreter."""
        if self._held:
            self._queued.append(sorted(self._held, key=lambda r: r.time))
            self._held = []

    def close(self) -> None:
        """Evaluate everything flushed, in order, the team acting up to each sample."""
        queued, self._queued = self._queued, []
        for held in queued:
            self._evaluate(held)

    def abort(self) -> None:
        """Drop what was flushed and not evaluated yet."""
        self._queued.clear()

    def _evaluate(self, held: list[Reading]) -> None:
        began = time.perf_counter()
        team = self.team
        with _quiet_engine():
            for t, group in itertools.groupby(held, key=lambda r: r.time):
                rows = list(group)
                if team is not None:
                    team.act_until(t)
                out = self.engine.evaluate(rows, now=t)
                self.evaluated += len(rows)
                if out:
                    self.transitions += len(out)
                    if team is not None:
                        team.observe(out)
                        team.act_until(t)  # steps recorded after the fact: a rescue's arrival
        self.seconds += time.perf_counter() - began

    def finish(self, now: datetime) -> None:
        """The end of the history: evaluate everything; the team stops at ``now``."""
        self.flush()
        self.close()
        began = time.perf_counter()
        if self.team is not None:
            with _quiet_engine():  # the team's acknowledgements resolve alerts too
                self.team.finish(now)
        self.seconds += time.perf_counter() - began


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
    replay: AlertReplay | None = None,
) -> int:
    """Run the simulator from ``start`` to ``end`` and write what it produced after
    ``write_after`` straight into the store, with a progress line; ``polled`` metrics at each
    device's poll interval (see ``SimulatedBuilding.history``). What is written also goes
    to ``replay`` (the alert engine), in time order.

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
    # Whether the step batches carry any metric the rules watch (polled ones come apart).
    stepped = replay is not None and bool(
        (replay.metrics if metrics is None else replay.metrics & metrics) - polled
    )
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
                if replay is not None:
                    # Polled samples come after the steps of their stretch: all taken so far
                    # can be put in time order now.
                    replay.take(batch)
                    replay.flush()
                continue
            if batch and (write_after is None or batch[0].time > write_after):
                pending.extend(batch)
                if replay is not None and stepped:
                    replay.take(batch)
                    if not polled:
                        replay.flush()
            if len(pending) >= WRITE_CHUNK:  # one store write per step would cost far more
                submit(pending)
                pending = []
            if batch:
                bar.update((batch[-1].time - start).total_seconds() / 86400, f"{n:,} samples")
        for rest in (pending, ReadingBatch.concat(columns)):
            if len(rest):
                submit(rest)
        if replay is not None:
            replay.flush()
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
    sim: SimulatedBuilding,
    store: Store,
    state: dict[str, Any],
    now: datetime,
    tickets: TicketStore | None = None,
) -> datetime:
    """Back-fill the whole history up to ``now`` (where the models then stand). With
    ``tickets``, the rule metrics go through the alert engine as they are written and a
    simulated team works the tickets it opens (:func:`replay_for`) -- unless the ticket
    database already holds tickets (an earlier first start that did not finish), which would
    be doubled."""
    start = datetime.fromisoformat(state["history_start"])
    recent = datetime.fromisoformat(state["recent_start"])
    tz = ZoneInfo(sim.config.site.timezone)
    states = max(start, min(states_start(now, tz), recent))
    polls = _polls(sim.config)
    lifts = f", lift states every {polls}" if polls else ""
    replay = None
    if tickets is not None:
        if tickets.list_tickets(limit=1).total:
            print("Tickets found - the alert history is not replayed again")
        else:
            replay = replay_for(sim.config, tickets, start, now, int(state.get("seed", 1)))
    began = time.monotonic()
    try:
        if states > start:
            days = round((states - start).total_seconds() / 86400)
            label = f"Back-filling {days} days of 15-minute history (report metrics)"
            backfill(
                sim, store, start, states, label, step=ARCHIVE_STEP, metrics=ARCHIVE_METRICS,
                replay=replay,
            )  # fmt: skip
        if recent > states:
            days = round((recent - states).total_seconds() / 86400)
            label = f"Back-filling {days} days of 15-minute history (report metrics{lifts})"
            backfill(
                sim, store, states, recent, label, step=ARCHIVE_STEP, metrics=ARCHIVE_METRICS,
                polled=POLLED_METRICS, replay=replay,
            )  # fmt: skip
        days = round((now - recent).total_seconds() / 86400)
        label = f"Back-filling {days} days of 5-minute history{f' ({lifts[2:]})' if lifts else ''}"
        backfill(sim, store, recent, now, label, polled=POLLED_METRICS, replay=replay)
        tail = time.monotonic()
        if replay is not None:
            replay.finish(now)
    except BaseException:
        if replay is not None:
            replay.abort()
        raise
    done = time.monotonic()
    print(f"History back-filled in {done - began:.1f} s")
    if replay is not None and tickets is not None:
        print(_replay_summary(replay, tickets, done - tail))
    return now


def replay_for(
    config: SiteConfig, tickets: TicketStore, start: datetime, end: datetime, seed: int
) -> AlertReplay:
    """The alert engine on ``tickets`` with a technician team working from ``start`` to
    ``end``; the repairs of the last ``OPEN_DAYS`` are left under way."""
    engine = AlertEngine(config, tickets)
    team = TechnicianTeam(
        config, tickets, engine, start, seed=seed, open_from=end - timedelta(days=OPEN_DAYS)
    )
    return AlertReplay(config, engine, team)


def _replay_summary(replay: AlertReplay, tickets: TicketStore, tail: float) -> str:
    n = tickets.list_tickets(limit=1).total
    rules = ", ".join(sorted(replay.metrics)) or "none"
    team = replay.team
    worked = f", {team.stats.actions:,} steps by the maintenance team" if team else ""
    if team is not None and team.stats.refused:  # a bug in the team's plans, not the user's
        worked += f" ({team.stats.refused} refused by the ticket lifecycle)"
    return (
        f"Alert history: {n} tickets from the rules on {rules}{worked} "
        f"({replay.evaluated:,} samples evaluated in {replay.seconds:.1f} s, "
        f"{tail:.1f} s after the back-fill)"
    )


def _catch_up(
    sim: SimulatedBuilding,
    store: Store,
    state: dict[str, Any],
    now: datetime,
    last: datetime,
    tickets: TicketStore | None = None,
) -> datetime:
    """Same seed, same start: replay the models to where the stored data ends, then write on.

    Counters and lift timelines depend only on the first instant and the current one, so the
    models are advanced straight to the last stored sample without producing readings (the
    simulation alone: about a third of the first start) and history is written from there.
    With ``tickets``, what is written goes through the alert engine, as the live path would
    have seen it had the demo been running (nobody works those tickets: that is up to the
    user); nothing before ``last`` is evaluated again, so no ticket is opened twice.
    """
    start = datetime.fromisoformat(state["history_start"])
    resume = max(datetime.fromisoformat(state["recent_start"]), last)
    sim.update(start)
    sim.update(resume)
    if now <= resume:
        return resume
    label = "History found - skipping back-fill; catching up"
    replay = _engine_only(sim.config, tickets)
    try:
        backfill(sim, store, resume, now, label, last, polled=POLLED_METRICS, replay=replay)
    finally:
        if replay is not None:
            replay.close()
    return now


def _engine_only(config: SiteConfig, tickets: TicketStore | None) -> AlertReplay | None:
    return None if tickets is None else AlertReplay(config, AlertEngine(config, tickets))


def _top_up(
    sim: SimulatedBuilding,
    store: Store,
    since: datetime,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    tickets: TicketStore | None = None,
) -> None:
    """Back-fill what passed while the back-fill ran (tens of seconds), until less than a
    second is left: the live collector's first polls then follow the stored history within a
    poll or two -- inside the reports' gap tolerance, so no moment is left uncovered -- and
    its samples come after every back-filled one (no identity is written twice). With
    ``tickets`` those samples go through the alert engine too."""
    replay = _engine_only(sim.config, tickets)
    try:
        for _ in range(3):  # each round takes a fraction of the one before
            now = clock()
            if now - since < TOP_UP_LEFT:
                return
            label = f"Catching up the last {(now - since).total_seconds():.0f} s"
            backfill(sim, store, since, now, label, polled=POLLED_METRICS, replay=replay)
            since = now
    finally:
        if replay is not None:
            replay.close()


async def _inject_fault_later(sim: SimulatedBuilding, device: str, after: float) -> None:
    await asyncio.sleep(after)
    log.warning(
        "simulator: injecting fault %d with a passenger trapped on elevator %s", FAULT_CODE, device
    )
    sim.inject_fault(device, FAULT_CODE, FAULT_DURATION, entrapment=True)


def with_pager(cfg: SiteConfig, url: str, escalate_after: float | None) -> SiteConfig:
    """The demo site paging ``url`` (its own receiver) instead of the placeholder in
    demo_site.yaml; ``escalate_after`` seconds replace the urgent chain's first wait, so the
    escalation to the supervisor can be watched without waiting minutes."""
    channels = [c.model_copy(update={"url": url}) if c.id == "pager" else c for c in cfg.channels]
    chains = list(cfg.escalation.chains)
    if escalate_after is not None:
        for i, chain in enumerate(chains):
            if chain.id != "urgent":
                continue
            steps = list(chain.steps)
            first = next(j for j, st in enumerate(steps) if isinstance(st, WaitStep))
            steps[first] = WaitStep(wait=timedelta(seconds=escalate_after))
            chains[i] = chain.model_copy(update={"steps": steps})
    escalation = cfg.escalation.model_copy(update={"chains": chains})
    return cfg.model_copy(update={"channels": channels, "escalation": escalation})


def with_mqtt(cfg: SiteConfig, broker: tuple[str, int] | None) -> SiteConfig:
    """The demo site's ``mqtt`` block pointed at ``broker`` (host, port) instead of the
    placeholder in demo_site.yaml; without a broker, the site without MQTT (no ``mqtt`` block,
    no MQTT devices), so nothing waits for messages that cannot come."""
    if cfg.mqtt is None:
        return cfg
    if broker is None:
        devices = [d for d in cfg.devices if d.source.type != "mqtt"]
        return cfg.model_copy(update={"mqtt": None, "devices": devices})
    mqtt = cfg.mqtt.model_copy(update={"host": broker[0], "port": broker[1]})
    return cfg.model_copy(update={"mqtt": mqtt})


def _parse_broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--mqtt-broker wants HOST:PORT, not {text!r}")
    return host, int(port)


def run_demo(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    history_days: int = 430,
    fault_after: float = 60.0,
    seed: int = 1,
    escalate_after: float | None = None,
    mqtt_broker: str | None = None,
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
    try:
        given_broker = None if mqtt_broker is None else _parse_broker(mqtt_broker)
    except ValueError as e:
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
        # The back-filled history goes through the alert engine on this connection; the
        # pipeline opens its own once the history is in.
        tickets = TicketStore.for_site(cfg)
        try:
            if fresh or not stored:
                reached = await asyncio.to_thread(_first_start, sim, store, state, now, tickets)
                state_file.write_text(json.dumps(state), encoding="utf-8")
            else:
                last = max(r.time for r in stored)
                print(f"History found in {data_dir}")
                reached = await asyncio.to_thread(
                    _catch_up, sim, store, state, datetime.now(UTC), last, tickets
                )
            await asyncio.to_thread(_top_up, sim, store, reached, tickets=tickets)
            # The replayed history's tickets were never lived: nobody is paged about them.
            retire(tickets, datetime.now(UTC), "replayed history: not paged")
        finally:
            tickets.close()
        ports = await sim.start()
        # The MQTT sensors' broker: the one given, else a mosquitto of the demo's own.
        broker: DemoBroker | None = None
        mqtt_at, mqtt_note = given_broker, "given with --mqtt-broker"
        mosquitto = find_mosquitto()
        if mqtt_at is None and mosquitto is not None and sim.mqtt_sensors.probes:
            broker = DemoBroker(mosquitto, data_dir / "mqtt")
            mqtt_at = ("127.0.0.1", await asyncio.to_thread(broker.start))
            mqtt_note = f"mosquitto started by the demo, log {broker.log}"
        elif mqtt_at is None:
            mqtt_note = "none: install mosquitto or pass --mqtt-broker HOST:PORT for live MQTT"
        receiver = DemoReceiver(ZoneInfo(cfg.site.timezone))
        receiver.start()
        live = with_pager(with_ports(cfg, ports), receiver.url, escalate_after)
        live = with_mqtt(live, mqtt_at)
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
        print(f"  Console  {api}/console   (web console: tickets, reports)")
        print(f"  Token    {token}")
        print(f"  Try      curl -H 'Authorization: Bearer {token}' {api}/api/v1/readings/latest")
        print(f"  Data     {data_dir}")
        print(f"  Pages    printed below as they arrive (webhook receiver {receiver.url})")
        where = f"{mqtt_at[0]}:{mqtt_at[1]} " if mqtt_at else ""
        print(f"  MQTT     broker {where}({mqtt_note})")
        if elevators and fault_after >= 0:
            print(
                f"  In {fault_after:.0f} s the simulator traps a passenger in {elevators[0]}: "
                f"a P1 ticket pages the technician on call, and the supervisor when nobody "
                f"acknowledges; watch {api}/console/tickets"
            )
        print("Press Ctrl-C to stop.")
        extra = [asyncio.create_task(sim.run(), name="simulator")]
        if elevators and fault_after >= 0:
            extra.append(asyncio.create_task(_inject_fault_later(sim, elevators[0], fault_after)))
        publisher = None
        if mqtt_at is not None and sim.mqtt_sensors.probes:
            publisher = MqttPublisher(sim.mqtt_sensors, *mqtt_at)
            extra.append(asyncio.create_task(publisher.run(), name="mqtt-sensors"))
        try:
            await pipeline.serve(sock, tokens, stop, extra=extra)
        finally:
            if publisher is not None:
                publisher.stop()
            await sim.stop()
            receiver.close()
            if broker is not None:
                await asyncio.to_thread(broker.stop)
        print("facmon demo stopped.")

    asyncio.run(main())
    return 0
