"""Config reload (SIGHUP): what a new version of the site config changes in a running process,
and the swappable parts that apply it without stopping collection.

What is applied live: devices (the Modbus collector is swapped: the old one finishes the polls
in flight, the new one polls at once, so a device's samples keep their pace), the MQTT block
and subscriptions (the MQTT collector reconnects with the same client id; the broker keeps
QoS 1/2 messages of the persistent session meanwhile), rules and site (the alert engine is
rebuilt and reloads the unresolved alerts from the ticket database), and everything the API
shows (a new API app is put behind the listening socket). The durable writer, its outbox and
the store stay open throughout.

What needs a restart (:data:`RESTART_FIELDS`): where data lives and what listens -- storage,
the ticket database, ``data_dir``, the API's address and tokens -- and the monthly report
mailer's settings. A reload keeps the running values of those and logs which ones changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from config.models import Device, ModbusSource, SiteConfig

log = logging.getLogger(__name__)

# Top-level config blocks a running process cannot change: the store, the outbox and the
# ticket database are open, and the API's socket is bound with its tokens.
RESTART_FIELDS = ("data_dir", "storage", "tickets", "api", "uplink")


@dataclass(frozen=True)
class ReloadPlan:
    """What applying ``new`` over ``old`` does."""

    config: SiteConfig  # the config to run: ``new`` with RESTART_FIELDS kept as they run
    needs_restart: list[str]  # changed settings kept at their running values
    added: list[str]  # device ids
    removed: list[str]
    changed: list[str]
    rules_changed: bool
    modbus: bool  # swap the Modbus collector
    mqtt: bool  # swap the MQTT collector
    engine: bool  # rebuild the alert engine
    any_change: bool  # anything at all differs from the running config

    def summary(self) -> str:
        parts = []
        for what, ids in (("added", self.added), ("removed", self.removed)):
            if ids:
                parts.append(f"{what} {len(ids)} device(s): {', '.join(ids)}")
        if self.changed:
            parts.append(f"changed {', '.join(self.changed)}")
        if self.rules_changed:
            parts.append("rules changed")
        if self.mqtt:
            parts.append("MQTT collector restarted")
        if not parts:
            if self.any_change:
                parts.append("settings changed")
            else:
                parts.append("nothing applied" if self.needs_restart else "config unchanged")
        if self.needs_restart:
            parts.append(f"needs a restart: {', '.join(self.needs_restart)}")
        return "; ".join(parts)


def _modbus_devices(config: SiteConfig) -> list[Device]:
    return [d for d in config.devices if isinstance(d.source, ModbusSource)]


def plan_reload(old: SiteConfig, new: SiteConfig) -> ReloadPlan:
    keep: dict[str, Any] = {}
    needs_restart: list[str] = []
    for name in RESTART_FIELDS:
        if getattr(old, name) != getattr(new, name):
            needs_restart.append(name)
            keep[name] = getattr(old, name)
    if old.reports.monthly != new.reports.monthly:
        needs_restart.append("reports.monthly")
        keep["reports"] = new.reports.model_copy(update={"monthly": old.reports.monthly})
    config = new.model_copy(update=keep) if keep else new
    before = {d.id: d for d in old.devices}
    after = {d.id: d for d in config.devices}
    devices_changed = old.devices != config.devices
    rules_changed = old.rules != config.rules
    return ReloadPlan(
        config=config,
        needs_restart=needs_restart,
        added=[i for i in after if i not in before],
        removed=[i for i in before if i not in after],
        changed=[i for i in after if i in before and after[i] != before[i]],
        rules_changed=rules_changed,
        modbus=_modbus_devices(old) != _modbus_devices(config),
        # The MQTT mapper resolves device ids and tags from the whole device list.
        mqtt=old.mqtt != config.mqtt or (config.mqtt is not None and devices_changed),
        engine=devices_changed or rules_changed or old.site != config.site,
        any_change=old != config,
    )


@dataclass(frozen=True)
class ReloadResult:
    at: datetime
    ok: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "ok": self.ok, "message": self.message}


@dataclass
class ReloadHistory:
    loaded_at: datetime | None = None
    count: int = 0
    last: ReloadResult | None = None
    failed: int = 0

    def record(self, result: ReloadResult) -> ReloadResult:
        self.count += 1
        if not result.ok:
            self.failed += 1
        self.last = result
        return result


class Runnable(Protocol):
    def run(self) -> Awaitable[None]: ...


C = TypeVar("C", bound=Runnable)


class CollectorSlot(Generic[C]):
    """Runs one collector at a time, for as long as its :meth:`run` task runs.

    ``serve`` keeps :meth:`run` in its task list; cancelling it stops the collector at once
    (shutdown). :meth:`swap` replaces the collector: ``stop_gracefully`` (when given) asks the
    old one to finish what is in flight, up to ``grace`` seconds, before it is cancelled; then
    the new one starts.
    """

    def __init__(
        self,
        name: str,
        stop_gracefully: Callable[[C], None] | None = None,
        grace: float = 30.0,
    ) -> None:
        self.name = name
        self.current: C | None = None
        self._stop_gracefully = stop_gracefully
        self._grace = grace
        self._task: asyncio.Task[None] | None = None

    async def run(self, first: C | None) -> None:
        self._start(first)
        try:
            await asyncio.Event().wait()
        finally:
            await self._stop(graceful=False)

    async def swap(self, new: C | None) -> None:
        await self._stop(graceful=True)
        self._start(new)

    def _start(self, collector: C | None) -> None:
        self.current = collector
        if collector is None:
            self._task = None
            return
        self._task = asyncio.create_task(_run(collector), name=self.name)
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped with an error", self.name, exc_info=task.exception())

    async def _stop(self, graceful: bool) -> None:
        task, collector = self._task, self.current
        self._task = None
        if task is None or collector is None:
            return
        try:
            if graceful and self._stop_gracefully is not None and not task.done():
                self._stop_gracefully(collector)
                await asyncio.wait({task}, timeout=self._grace)
        finally:
            # Also when the swap itself is cancelled (shutdown during a reload): no collector
            # may outlive the slot.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _run(collector: Runnable) -> None:
    await collector.run()


class AppSlot:
    """The ASGI app uvicorn serves: a reload puts a new API app behind the bound socket.

    Requests in progress finish on the app they started on. Lifespan events go to the app of
    the moment (the first one: uvicorn sends them at start and stop only). Each app has its
    own ``/metrics`` registry, so the HTTP request counters restart at a reload (Prometheus
    reads that as a counter reset).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
