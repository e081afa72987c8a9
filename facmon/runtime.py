"""Process wiring: device -> collector -> durable writer -> store, with the alert engine on the
same stream and the API reading from the store and the ticket database.

``Pipeline`` owns the long-lived parts and their shutdown order; the CLI commands (``run`` and
``demo``) only decide what to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from alerts import AlertEngine, AlertTransition, TicketStore
from alerts.paging import Pager
from alerts.preventive import run_preventive
from api import create_app
from collector import ModbusCollector
from collector.mqtt import MqttCollector
from collector.uplink import UplinkPublisher
from config import ConfigError, SiteConfig, load_config
from facmon import selfmetrics
from facmon.checks import CHECKS
from facmon.handoff import Handoff
from facmon.health import Probe, components
from facmon.logs import redact, secret_values
from facmon.reload import (
    AppSlot,
    CollectorSlot,
    ReloadHistory,
    ReloadPlan,
    ReloadResult,
    plan_reload,
)
from reports.context import ReportContext
from reports.monthly.mail import MonthlyMailer, run_mailer
from store import Reading, Store
from store.outbox import DurableWriter, WriterStats

log = logging.getLogger("facmon")


def open_store(config: SiteConfig) -> Store:
    """The store the config asks for; the embedded one needs no setup at all."""
    if config.storage.backend == "influxdb":
        from store.influx import open_influx

        return open_influx(config)
    from store.embedded import EmbeddedStore

    path = config.embedded_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return EmbeddedStore(path)


def api_tokens(
    config: SiteConfig, env: Mapping[str, str] | None = None
) -> tuple[dict[str, str], str | None]:
    """Tokens from the config plus ``FACMON_API_TOKEN`` (admin).

    Returns ``(token -> role, generated)`` where ``generated`` is a fresh admin token made up
    when no token exists at all, so a newcomer's demo is never left open.
    """
    env = os.environ if env is None else env
    tokens: dict[str, str] = {t.token.get_secret_value(): t.role for t in config.api.tokens}
    from_env = env.get("FACMON_API_TOKEN", "").strip()
    if from_env:
        tokens[from_env] = "admin"
    generated = None
    if not tokens:
        generated = secrets.token_urlsafe(24)
        tokens[generated] = "admin"
    return tokens, generated


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the pipeline decides when to stop and in which
    order (collector first, then the writer flushes, then the stores close)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn so a taken port is a clear error and port 0 works."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SystemExit(f"facmon: cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


# What one facmon process does. "collector": poll, store, evaluate alerts on that stream, page
# (alerts need the live stream, so they run where it is collected); "api": serve the HTTP API
# and console from the store and ticket database. Both by default; split, the API can run (and
# be scaled) apart from collection, given a store other processes can read (InfluxDB).
ROLES: tuple[str, ...] = ("collector", "api")


@dataclass
class Pipeline:
    """Everything a facmon process runs, built from one site config."""

    config: SiteConfig
    store: Store
    writer: DurableWriter
    tickets: TicketStore
    engine: AlertEngine
    alert_errors: int = 0
    tick_interval: float = 1.0  # seconds between alert-engine ticks (silence, hold timers)
    mqtt: MqttCollector | None = None
    uplink: UplinkPublisher | None = None  # edge role: publishes what ingest stores
    collector: ModbusCollector | None = None  # the one polling now (a reload swaps it)
    config_path: Path | None = None  # what a reload re-reads; None: nothing (the demo)
    received: int = 0  # samples put into the outbox this run
    reloads: ReloadHistory = field(default_factory=ReloadHistory)
    pager: Pager | None = None  # escalation and notification delivery (alerts.paging)
    roles: frozenset[str] = frozenset(ROLES)
    # The MQTT collector ingests from its own thread, the Modbus collector and the alert tick
    # run on the event loop: the alert engine must see one caller at a time.
    _engine_lock: threading.Lock = field(default_factory=threading.Lock)
    _count_lock: threading.Lock = field(default_factory=threading.Lock)
    _alerts_failing: bool = False
    _tickets_probe: Probe | None = None
    _unresolved: int = 0  # unresolved alerts in the ticket database, as of the last probe
    _paging_queued: int = 0  # messages waiting in the paging outbox, as of the last probe
    _modbus: CollectorSlot[ModbusCollector] = field(
        default_factory=lambda: CollectorSlot("collector", ModbusCollector.stop)
    )
    _mqtt: CollectorSlot[MqttCollector] = field(default_factory=lambda: CollectorSlot("mqtt"))
    _app: AppSlot | None = None
    _sink: Callable[[Sequence[Reading]], None] | None = None
    _tokens: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        config: SiteConfig,
        store: Store | None = None,
        config_path: Path | None = None,
        roles: frozenset[str] = frozenset(ROLES),
    ) -> Pipeline:
        store = store or open_store(config)
        config.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        writer = DurableWriter(store, config.outbox_path, config.storage.outbox)
        tickets = TicketStore.for_site(config)
        engine = AlertEngine(config, tickets)
        pager = Pager(config, tickets)
        pipeline = cls(
            config,
            store,
            writer,
            tickets,
            engine,
            config_path=config_path,
            pager=pager if "collector" in roles else None,
            roles=roles,
        )
        pipeline.reloads.loaded_at = datetime.now(UTC)
        if config.uplink is not None and "collector" in roles:
            pipeline.uplink = UplinkPublisher(config)
        return pipeline

    def ingest(self, readings: Sequence[Reading]) -> None:
        """The one entry point for samples: durable first, then the alert engine.

        Thread-safe; the Modbus collector reaches it through a Handoff thread, MQTT from its
        network thread (it acknowledges a message only after this returns).
        """
        if not readings:
            return
        self.writer.put(readings)
        if self.uplink is not None:
            self.uplink.put(readings)  # on disk too before the caller (MQTT) acknowledges
        with self._count_lock:  # the Modbus handoff and MQTT ingest from their own threads
            self.received += len(readings)
        try:
            with self._engine_lock:
                transitions = self.engine.evaluate(readings, now=datetime.now(UTC))
            self._kick(transitions)
        except Exception:
            # A broken rule or ticket database must not stop collection; the samples are safe.
            self.alert_errors += 1
            self._alerts_failing = True
            log.exception("alert evaluation failed; samples are stored, alerts may lag")
        else:
            self._alerts_failing = False

    def record(self, readings: Sequence[Reading]) -> None:
        """facmon's own figures (facmon.selfmetrics): stored like samples, never evaluated."""
        self.writer.put(readings)
        with self._count_lock:
            self.received += len(readings)

    @property
    def writer_stats(self) -> WriterStats:
        return self.writer.stats

    async def tick_alerts(self) -> None:
        """Let the alert engine notice silence and expired holds (A6, A8), every
        ``tick_interval`` seconds. A failure is logged when it starts and when it ends; it
        never stops the loop."""
        failing = False
        while True:
            try:
                with self._engine_lock:
                    transitions = self.engine.tick(datetime.now(UTC))
                self._kick(transitions)
            except Exception:
                self.alert_errors += 1
                self._alerts_failing = True
                if not failing:
                    log.exception("alert tick failed; retried every %.0fs", self.tick_interval)
                    failing = True
            else:
                if failing:
                    log.info("alert tick works again")
                    failing = False
                    self._alerts_failing = False
            await asyncio.sleep(self.tick_interval)

    def _kick(self, transitions: Sequence[AlertTransition]) -> None:
        # A ticket opened or moved: page now rather than at the pager's next round.
        if self.pager is not None and any(t.ticket is not None or t.notify for t in transitions):
            self.pager.kick()

    def _acknowledge(self, fingerprint: str, who: str, now: datetime) -> object:
        """Alert acknowledgements from the API go through the running engine (a latched alert
        whose condition cleared resolves at once), one caller at a time."""
        with self._engine_lock:
            tr = self.engine.acknowledge(fingerprint, who, now)
        if self.pager is not None:
            self.pager.kick()
        return tr

    def status(self) -> dict[str, Any]:
        """Figures of every component for ``GET /health`` (and ``/metrics``: numbers at most
        two levels deep), with ``components``: their verdicts (facmon.health)."""
        s = self.writer.stats
        if self._tickets_probe is None:
            self._tickets_probe = Probe(self._count_unresolved, name="ticket-db-probe")
        db = self._tickets_probe.result()
        out: dict[str, Any] = {
            "store": {
                "backend": self.config.storage.backend,
                "up": s.store_up,
                "received": self.received,
                "written": s.written,
                "outbox_depth": s.depth,
                "last_write_ms": s.last_write_ms,
                "dropped_overflow": s.dropped_overflow,
                "dropped_rejected": s.dropped_rejected,
                "last_error": s.last_error,
            },
            "alerts": {
                "evaluation_errors": self.alert_errors,
                "failing": self._alerts_failing,
                "unresolved": self._unresolved if db.up else None,
            },
            "tickets": {"up": db.up, "detail": db.detail},
            "collector": self._collector_status(),
            "config": {
                "file": None if self.config_path is None else str(self.config_path),
                "loaded_at": _iso(self.reloads.loaded_at),
                "reloads": self.reloads.count,
                "reloads_failed": self.reloads.failed,
                "last_reload": None if self.reloads.last is None else self.reloads.last.as_dict(),
            },
        }
        if self.mqtt is not None:
            out["mqtt"] = self.mqtt.stats.as_dict()
        if self.uplink is not None:
            out["uplink"] = self.uplink.stats.as_dict()
        if self.pager is not None:
            out["paging"] = {
                "outbox_depth": self._paging_queued if db.up else None,
                "sent": self.pager.sent,
                "failed": self.pager.failed,
                "failing": self.pager.failing,
                "oncall_gaps_uncovered": sum(1 for g in self.pager.gaps if g.fallback is None),
            }
        out["components"] = components(out)
        return out

    def _count_unresolved(self) -> str:
        self._unresolved = sum(self.tickets.unresolved_alert_counts().values())
        if self.pager is not None:
            self._paging_queued = self.pager.outbox_depth()
        return f"{self.config.tickets_url.split(':', 1)[0]}, answering"

    def _collector_status(self) -> dict[str, Any]:
        health = {} if self.collector is None else dict(self.collector.health)
        states = {
            dev: {
                "up": h.up if h.polls else None,
                "polls": h.polls,
                "consecutive_failures": h.consecutive_failures,
                "last_ok": _iso(h.last_ok),
                "down_since": _iso(h.down_since),
                "last_error": h.last_error,
            }
            for dev, h in health.items()
        }
        return {
            "devices": len(states),
            "devices_up": sum(1 for v in states.values() if v["up"] is True),
            "devices_down": sum(1 for v in states.values() if v["up"] is False),
            "device_states": states,
        }

    async def serve(
        self,
        sock: socket.socket,
        tokens: Mapping[str, str],
        stop: asyncio.Event,
        extra: Sequence[asyncio.Task[Any]] = (),
        reload: asyncio.Event | None = None,
    ) -> None:
        """Collect, evaluate and serve until ``stop`` is set; then shut down in order.

        Setting ``reload`` (SIGHUP) re-reads ``config_path`` and applies it (:meth:`reload`).
        """
        redact([*tokens, *secret_values(self.config)])  # never in a log line, whatever logs
        collecting = "collector" in self.roles
        handoff = Handoff(self.ingest)
        self._tokens = tokens
        if collecting:
            self.writer.start()
            self._sink = handoff.put
            self.collector = ModbusCollector(
                self.config.devices, handoff.put, site_id=self.config.site.id
            )
            if self.config.mqtt is not None:
                self.mqtt = MqttCollector(self.config, self.ingest)
        self._app = AppSlot(self._api(self.config))
        # log_config=None: uvicorn's records go through facmon's handler (JSON when asked).
        server = _Server(
            uvicorn.Config(
                self._app, log_level="warning", access_log=False, lifespan="on", log_config=None
            )
        )
        tasks = [asyncio.create_task(server.serve(sockets=[sock]), name="api"), *extra]
        if collecting:
            tasks += [
                asyncio.create_task(self._modbus.run(self.collector), name="collector"),
                asyncio.create_task(self.tick_alerts(), name="alert-tick"),
                asyncio.create_task(self._mqtt.run(self.mqtt), name="mqtt"),
                asyncio.create_task(selfmetrics.run(self), name="self-metrics"),
                # T8: preventive tickets; the lambda lets a reloaded config's schedules apply.
                asyncio.create_task(
                    run_preventive(lambda: self.config, self.tickets), name="preventive"
                ),
            ]
        if self.pager is not None:
            tasks.append(asyncio.create_task(self.pager.run(), name="paging"))
        if self.uplink is not None:
            tasks.append(asyncio.create_task(self.uplink.run(), name="uplink"))
        if reload is not None:
            tasks.append(asyncio.create_task(self.reload_on(reload), name="reload"))
        if collecting and self.config.reports.monthly.schedule:
            rc = ReportContext(self.config, self.store, self.tickets)
            mailer = MonthlyMailer(rc, self.config.data_dir / "monthly-mail.json")
            tasks.append(asyncio.create_task(run_mailer(mailer, stop), name="monthly-mail"))
        try:
            await stop.wait()
        finally:
            server.should_exit = True
            for t in tasks:
                if t.get_name() != "api":
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            handoff.close()
            self.close()

    def close(self) -> None:
        if self.uplink is not None:
            self.uplink.close()  # what the broker has not acknowledged stays buffered on disk
        flushed = self.writer.close()
        self.store.close()
        self.tickets.close()
        log.info(
            "stopped; %d samples written this run, %d received%s",
            self.writer.stats.written,
            self.received,
            "" if flushed else " (the rest stays in the outbox for the next start)",
            extra={"written": self.writer.stats.written, "received": self.received},
        )

    def _api(self, config: SiteConfig) -> Any:
        collecting = "collector" in self.roles
        return create_app(
            config,
            self.store,
            self.tickets,
            tokens=self._tokens,
            status=self.status,
            # Without the live stream here, acknowledgements go to the database, where the
            # collecting process's engine finds them (AlertEngine.tick).
            acknowledge_alert=self._acknowledge if collecting else None,
            routes="all" if "api" in self.roles else "health",
        )

    async def reload_on(self, requested: asyncio.Event) -> None:
        """Reload each time ``requested`` is set; a burst of signals makes one reload."""
        while True:
            await requested.wait()
            requested.clear()
            try:
                await self.reload()
            except Exception:  # the running config keeps running whatever went wrong
                log.exception("config reload failed unexpectedly; the running config stays")

    async def reload(self) -> ReloadResult:
        """Re-read ``config_path`` and apply what changed while collection goes on.

        An invalid file changes nothing: its problems are logged with file, line and field.
        Everything that can fail (loading profiles, reading unresolved alerts) is built before
        anything is swapped, so a failure leaves the running config whole. See facmon.reload
        for what applies live and what needs a restart.
        """
        at = datetime.now(UTC)
        path = self.config_path
        if path is None:
            return self._reloaded(at, False, "no config file to reload (built-in config)")
        log.info("reloading the config from %s", path, extra={"config_file": str(path)})
        try:
            new = await asyncio.to_thread(load_config, path, checks=CHECKS)
        except ConfigError as e:
            return self._reloaded(
                at,
                False,
                f"invalid config, the running config stays:\n{e}",
                problems=[str(p) for p in e.problems],
            )
        except OSError as e:
            return self._reloaded(at, False, f"cannot read the file: {e.strerror or e}")
        redact(secret_values(new))
        plan = plan_reload(self.config, new)
        for name in plan.needs_restart:
            log.warning(
                "config reload: %s changed; that takes a restart, the running %s stays",
                name,
                name,
                extra={"config_file": str(path), "field": name},
            )
        if not plan.any_change:
            return self._reloaded(at, True, plan.summary())
        try:
            # Off the event loop: profiles, the ticket database and the API's routes take a
            # while, and the collector keeps polling meanwhile.
            collector, mqtt, engine, app = await asyncio.to_thread(self._build_parts, plan)
        except Exception as e:
            log.debug("config reload: building the new parts failed", exc_info=True)
            return self._reloaded(at, False, f"cannot apply, the running config stays: {e}")
        if engine is not None:
            await asyncio.to_thread(self._swap_engine, engine)
        self.config = plan.config
        if self.pager is not None:
            self.pager.reconfigure(plan.config)
        if app is not None and self._app is not None:
            self._app.app = app
        if plan.modbus and collector is not None:
            # The old collector finishes the polls in flight; the new one polls at once.
            await self._modbus.swap(collector)
            self.collector = collector
        if plan.mqtt and "collector" in self.roles:
            await self._mqtt.swap(mqtt)
            self.mqtt = mqtt
        return self._reloaded(at, True, plan.summary())

    def _build_parts(
        self, plan: ReloadPlan
    ) -> tuple[ModbusCollector | None, MqttCollector | None, AlertEngine | None, Any]:
        cfg = plan.config
        collector = None
        if plan.modbus and self._sink is not None:
            collector = ModbusCollector(cfg.devices, self._sink, site_id=cfg.site.id)
        collecting = "collector" in self.roles
        mqtt = (
            MqttCollector(cfg, self.ingest)
            if collecting and plan.mqtt and cfg.mqtt is not None
            else None
        )
        engine = AlertEngine(cfg, self.tickets) if plan.engine else None
        app = self._api(cfg) if self._app is not None else None
        return collector, mqtt, engine, app

    def _swap_engine(self, engine: AlertEngine) -> None:
        with self._engine_lock:
            self.engine = engine

    def _reloaded(self, at: datetime, ok: bool, message: str, **extra: Any) -> ReloadResult:
        result = self.reloads.record(ReloadResult(at, ok, message))
        path = "(none)" if self.config_path is None else str(self.config_path)
        fields = {"config_file": path, **extra}
        if ok:
            log.info("config reloaded from %s: %s", path, message, extra=fields)
        else:
            log.error("config reload from %s refused: %s", path, message, extra=fields)
        return result


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()
