"""The health of a running facmon, component by component, for ``GET /health`` and
``facmon status``.

:func:`components` turns the figures of ``Pipeline.status`` into rows of (component, state,
detail). States: ``up``; ``degraded`` (working, with a problem: some devices down, samples
dropped, the last config reload refused); ``down``; ``starting`` (nothing to say yet); ``off``
(not configured). The rows are computed in the process, so every client (``facmon status``,
a load balancer, a person with curl) reads the same verdict.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

UP, DEGRADED, DOWN, STARTING, OFF = "up", "degraded", "down", "starting", "off"
STATES = (UP, DEGRADED, DOWN, STARTING, OFF)
HEALTHY = frozenset({UP, OFF})


@dataclass(frozen=True)
class ProbeResult:
    up: bool | None  # None: no answer yet
    detail: str


class Probe:
    """A reachability check that cannot hang its caller.

    The check runs on a thread of its own, one at a time and at most once per ``ttl`` seconds;
    :meth:`result` waits up to ``wait`` seconds for a fresh answer and otherwise reports the
    check as not answering. A ticket database that hangs (a PostgreSQL host gone without a
    reset) so costs ``/health`` two seconds, not a request timeout.
    """

    def __init__(
        self, check: Callable[[], str], *, ttl: float = 5.0, wait: float = 2.0, name: str = "probe"
    ) -> None:
        self._check = check
        self._ttl = ttl
        self._wait = wait
        self._name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = float("-inf")
        self._result = ProbeResult(None, "not checked yet")

    def result(self) -> ProbeResult:
        with self._lock:
            thread = self._thread
            running = thread is not None and thread.is_alive()
            if not running and time.monotonic() - self._started >= self._ttl:
                self._started = time.monotonic()
                thread = self._thread = threading.Thread(
                    target=self._run, name=f"facmon-{self._name}", daemon=True
                )
                thread.start()
                running = True
        if running and thread is not None:
            thread.join(self._wait)
            if thread.is_alive():
                waited = time.monotonic() - self._started
                return ProbeResult(False, f"no answer for {waited:.0f} s")
        with self._lock:
            return self._result

    def _run(self) -> None:
        try:
            result = ProbeResult(True, self._check())
        except Exception as e:
            result = ProbeResult(False, f"{type(e).__name__}: {e}".splitlines()[0][:200])
        with self._lock:
            self._result = result


def _when(iso: Any) -> str:
    """``2026-11-27T11:27:22.502850+00:00`` -> ``2026-11-27 11:27:22 UTC``."""
    text = str(iso)
    if len(text) >= 19 and text.endswith("+00:00"):
        return f"{text[:10]} {text[11:19]} UTC"
    return text


def _row(component: str, state: str, detail: str) -> dict[str, str]:
    return {"component": component, "state": state, "detail": detail}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def components(status: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rows for every component in a ``Pipeline.status`` dict; sections it lacks are left
    out. One row per device that is down, after the collector's."""
    rows: list[dict[str, str]] = []
    col = status.get("collector")
    down_devices: list[dict[str, str]] = []
    if isinstance(col, Mapping):
        n, up, down = int(col["devices"]), int(col["devices_up"]), int(col["devices_down"])
        waiting = n - up - down
        if n == 0:
            state, detail = OFF, "no Modbus devices"
        else:
            if down == n:
                state = DOWN
            elif down:
                state = DEGRADED
            elif waiting:
                state = STARTING
            else:
                state = UP
            detail = f"{up}/{n} devices up"
            if down:
                detail += f", {down} down"
            if waiting:
                detail += f", {waiting} not polled yet"
        rows.append(_row("collector", state, detail))
        for dev, h in sorted(col.get("device_states", {}).items()):
            if h.get("up") is False:
                why = h.get("last_error") or "not answering"
                since = h.get("down_since")
                down_devices.append(
                    _row(f"device {dev}", DOWN, why + (f" (since {_when(since)})" if since else ""))
                )
    mqtt = status.get("mqtt")
    if isinstance(mqtt, Mapping):
        detail = (
            f"{mqtt['received']} messages received, {mqtt['stored']} stored, "
            f"{mqtt['pending']} pending"
        )
        if mqtt.get("bad_total"):
            detail += f", {mqtt['bad_total']} malformed"
        if not mqtt["connected"] and mqtt.get("last_error"):
            detail += f"; {mqtt['last_error']}"
        rows.append(_row("mqtt", UP if mqtt["connected"] else DOWN, detail))
    elif "collector" in status:
        rows.append(_row("mqtt", OFF, "not configured"))
    store = status.get("store")
    if isinstance(store, Mapping):
        detail = f"{store['backend']}, {store['written']} samples written this run"
        if not store["up"] and store.get("last_error"):
            detail += f"; {store['last_error']}"
        rows.append(_row("store", UP if store["up"] else DOWN, detail))
        dropped = int(store["dropped_overflow"]) + int(store["dropped_rejected"])
        detail = f"{store['outbox_depth']} samples queued"
        if dropped:
            detail += (
                f", {store['dropped_overflow']} dropped (full), "
                f"{store['dropped_rejected']} refused by the store"
            )
        rows.append(_row("outbox", DEGRADED if dropped else UP, detail))
    alerts = status.get("alerts")
    if isinstance(alerts, Mapping):
        detail = _plural(int(alerts["evaluation_errors"]), "evaluation error") + " this run"
        if alerts.get("unresolved") is not None:
            detail = f"{_plural(int(alerts['unresolved']), 'unresolved alert')}, {detail}"
        rows.append(_row("alert engine", DOWN if alerts.get("failing") else UP, detail))
    tickets = status.get("tickets")
    if isinstance(tickets, Mapping):
        answered = tickets.get("up")
        state = STARTING if answered is None else UP if answered else DOWN
        rows.append(_row("ticket database", state, str(tickets.get("detail", ""))))
    paging = status.get("paging")
    if isinstance(paging, Mapping):
        detail = f"{paging['sent']} messages sent, {paging['failed']} given up this run"
        if paging.get("outbox_depth") is not None:
            detail = f"{paging['outbox_depth']} queued, {detail}"
        uncovered = int(paging.get("oncall_gaps_uncovered") or 0)
        if uncovered:
            detail += f"; {_plural(uncovered, 'on-call gap')} without fallback ahead"
        state = DOWN if paging.get("failing") else DEGRADED if uncovered else UP
        rows.append(_row("paging", state, detail))
    cfg = status.get("config")
    if isinstance(cfg, Mapping):
        last = cfg.get("last_reload")
        source = cfg.get("file") or "built in"
        if isinstance(last, Mapping):
            verdict = "reloaded" if last["ok"] else "reload refused"
            message = " ".join(str(last["message"]).split())
            if len(message) > 160:
                message = message[:157] + "..."
            detail = f"{source}; {verdict} {_when(last['at'])}: {message}"
            state = UP if last["ok"] else DEGRADED
        else:
            detail, state = f"{source}; loaded {_when(cfg.get('loaded_at'))}", UP
        rows.append(_row("config", state, detail))
    return rows + down_devices


def healthy(rows: list[dict[str, str]]) -> bool:
    return all(r["state"] in HEALTHY for r in rows)
