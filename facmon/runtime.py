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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn

from alerts import AlertEngine, TicketStore
from api import create_app
from collector import ModbusCollector
from collector.mqtt import MqttCollector
from config import SiteConfig
from facmon.handoff import Handoff
from reports.context import ReportContext
from reports.monthly.mail import MonthlyMailer, run_mailer
from store import Reading, Store
from store.outbox import DurableWriter

log = logging.getLogger("facmon")


def open_store(config: SiteConfig) -> Store:
    """The store the config asks for; the embedded one needs no setup at all."""
    if config.storage.backend == "influxdb":
        from store.influx import InfluxStore

        assert config.storage.influxdb is not None  # guaranteed by the model validator
        return InfluxStore(config.storage.influxdb)
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
    # The MQTT collector ingests from its own thread, the Modbus collector and the alert tick
    # run on the event loop: the alert engine must see one caller at a time.
    _engine_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, config: SiteConfig, store: Store | None = None) -> Pipeline:
        store = store or open_store(config)
        config.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        writer = DurableWriter(store, config.outbox_path, config.storage.outbox)
        tickets = TicketStore(config.tickets_url)
        engine = AlertEngine(config, tickets)
        return cls(config, store, writer, tickets, engine)

    def ingest(self, readings: Sequence[Reading]) -> None:
        """The one entry point for samples: durable first, then the alert engine.

        Thread-safe; the Modbus collector reaches it through a Handoff thread, MQTT from its
        network thread (it acknowledges a message only after this returns).
        """
        if not readings:
            return
        self.writer.put(readings)
        try:
            with self._engine_lock:
                self.engine.evaluate(readings, now=datetime.now(UTC))
        except Exception:
            # A broken rule or ticket database must not stop collection; the samples are safe.
            self.alert_errors += 1
            log.exception("alert evaluation failed; samples are stored, alerts may lag")

    async def tick_alerts(self) -> None:
        """Let the alert engine notice silence and expired holds (A6, A8), every
        ``tick_interval`` seconds. A failure is logged when it starts and when it ends; it
        never stops the loop."""
        failing = False
        while True:
            try:
                with self._engine_lock:
                    self.engine.tick(datetime.now(UTC))
            except Exception:
                self.alert_errors += 1
                if not failing:
                    log.exception("alert tick failed; retried every %.0fs", self.tick_interval)
                    failing = True
            else:
                if failing:
                    log.info("alert tick works again")
                    failing = False
            await asyncio.sleep(self.tick_interval)

    def status(self) -> dict[str, Any]:
        s = self.writer.stats
        out: dict[str, Any] = {
            "store": {
                "backend": self.config.storage.backend,
                "up": s.store_up,
                "written": s.written,
                "outbox_depth": s.depth,
                "dropped_overflow": s.dropped_overflow,
                "dropped_rejected": s.dropped_rejected,
                "last_error": s.last_error,
            },
            "alerts": {"evaluation_errors": self.alert_errors},
        }
        if self.mqtt is not None:
            out["mqtt"] = self.mqtt.stats.as_dict()
        return out

    async def serve(
        self,
        sock: socket.socket,
        tokens: Mapping[str, str],
        stop: asyncio.Event,
        extra: Sequence[asyncio.Task[Any]] = (),
    ) -> None:
        """Collect, evaluate and serve until ``stop`` is set; then shut down in order."""
        self.writer.start()
        handoff = Handoff(self.ingest)
        collector = ModbusCollector(self.config.devices, handoff.put, site_id=self.config.site.id)
        if self.config.mqtt is not None:
            self.mqtt = MqttCollector(self.config, self.ingest)
        app = create_app(self.config, self.store, self.tickets, tokens=tokens, status=self.status)
        server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        tasks = [
            asyncio.create_task(collector.run(), name="collector"),
            asyncio.create_task(server.serve(sockets=[sock]), name="api"),
            asyncio.create_task(self.tick_alerts(), name="alert-tick"),
            *extra,
        ]
        if self.mqtt is not None:
            tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt"))
        if self.config.reports.monthly.schedule:
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
        self.writer.close()
        self.store.close()
        self.tickets.close()
        log.info("stopped; %d samples written this run", self.writer.stats.written)
