"""GET /metrics: Prometheus text exposition, one registry per app (nothing global, so two apps
in one process, as in the tests, never share or double-register a metric).

What is exported:

* ``facmon_http_requests_total{route, method, status}`` and
  ``facmon_http_request_duration_seconds{route, method}`` (histogram), counted by a middleware.
  ``route`` is the route template (``/api/v1/tickets/{ticket_id}``), never the raw path, and
  ``unmatched`` for a path no route serves, so a scanner cannot blow up the label set;
* read at scrape time from the ticket database: ``facmon_tickets_open{priority}``,
  ``facmon_tickets_overdue{priority}``, ``facmon_alerts_unresolved{severity, state}`` (zero
  series for every priority and for the severities the rules use, so "== 0" alerts work) and
  ``facmon_ticket_db_up``;
* from the ``status`` callable that also feeds ``/health`` (facmon/runtime.py
  ``Pipeline.status``): ``facmon_status_ok`` and every number or boolean at most two levels
  deep as ``facmon_<section>_<name>``, e.g. ``facmon_store_up``, ``facmon_store_outbox_depth``,
  ``facmon_mqtt_connected``. They are exported as ``untyped`` because the callable does not say
  which are counters. Deeper maps (per-topic or per-device tallies) are left out: their keys
  are data, not metric names.

Authentication: the same bearer tokens as ``/api``, any role. Ticket counts and pipeline
figures are operational data, and Prometheus sends a token natively::

    scrape_configs:
      - job_name: facmon
        metrics_path: /metrics
        authorization:
          credentials_file: /etc/prometheus/facmon.token
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric, UnknownMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.tickets import SLA_BY_PRIORITY, AlertState, TicketStore

log = logging.getLogger(__name__)

PREFIX = "facmon"
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNRESOLVED_STATES = tuple(s.value for s in AlertState if s not in ("INACTIVE", "RESOLVED"))
_NAME_PART = re.compile(r"[^a-zA-Z0-9_]+")


class _HttpMetrics:
    """Counts every HTTP request by route template, method and status, and times it."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before answering
        began = time.perf_counter()

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = route_template(scope)
            method = scope.get("method", "")
            method = method if method in _METHODS else "other"
            self.requests.labels(route, method, str(status)).inc()
            self.latency.labels(route, method).observe(time.perf_counter() - began)


def route_template(scope: Scope) -> str:
    """The template of the route that served ``scope`` (``/api/v1/tickets/{ticket_id}``), or
    :data:`UNMATCHED`.

    The router leaves the matched route in the scope, which a middleware shares, but a route
    inside an included router or a mount knows only its own part of the path. The prefix is
    the part of the request path before the tail the route's pattern matches: text of the
    app's own routers, never a client's value (a path no route serves is UNMATCHED).
    """
    route = scope.get("route")
    fmt = getattr(route, "path_format", None)
    if not isinstance(fmt, str) or not fmt:
        return UNMATCHED
    regex = getattr(route, "path_regex", None)
    path = str(scope.get("path", ""))
    if regex is not None:
        for i, ch in enumerate(path):
            if ch == "/" and regex.match(path[i:]):
                return path[:i] + fmt
    return fmt


def status_figures(status: Mapping[str, Any]) -> dict[str, float]:
    """``{"store": {"up": True, "outbox_depth": 3}}`` -> ``{"store_up": 1.0, "store_outbox_depth":
    3.0}``: numbers and booleans at most two levels deep; text, None and deeper maps skipped."""
    out: dict[str, float] = {}

    def put(path: tuple[str, ...], v: Any) -> None:
        if isinstance(v, bool | int | float) and not (isinstance(v, float) and v != v):
            name = "_".join(_NAME_PART.sub("_", p).strip("_").lower() for p in path)
            out[name] = float(v)

    for key, value in status.items():
        if isinstance(value, Mapping):
            for sub, v in value.items():
                put((str(key), str(sub)), v)
        else:
            put((str(key),), value)
    return out


class _LiveCollector:
    """Reads the ticket database and ``status`` at scrape time."""

    def __init__(
        self,
        tickets: TicketStore,
        status: Callable[[], dict[str, Any]] | None,
        clock: Callable[[], datetime],
        severities: Iterable[str],
        reserved: Iterable[str],
    ) -> None:
        self.tickets = tickets
        self.status = status
        self.clock = clock
        self.severities = sorted(set(severities))
        self.reserved = frozenset(reserved)
        self._db_failing = False

    def collect(self) -> Iterable[Metric]:
        yield from self._tickets()
        if self.status is not None:
            yield from self._status(self.status)

    def _tickets(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            f"{PREFIX}_ticket_db_up", "1 if the ticket database answered this scrape, else 0"
        )
        try:
            counts = self.tickets.open_ticket_counts(self.clock())
            alerts = self.tickets.unresolved_alert_counts()
        except Exception:
            # Logged when it starts failing, not at every scrape.
            if not self._db_failing:
                log.exception("/metrics: the ticket database did not answer")
            self._db_failing = True
            up.add_metric([], 0)
            yield up
            return
        self._db_failing = False
        up.add_metric([], 1)
        yield up
        open_ = GaugeMetricFamily(
            f"{PREFIX}_tickets_open", "Open tickets (work orders) by priority", labels=["priority"]
        )
        overdue = GaugeMetricFamily(
            f"{PREFIX}_tickets_overdue",
            "Open tickets past their due time, by priority",
            labels=["priority"],
        )
        for p in sorted(set(SLA_BY_PRIORITY) | set(counts)):
            n, late = counts.get(p, (0, 0))
            open_.add_metric([p], n)
            overdue.add_metric([p], late)
        yield open_
        yield overdue
        unresolved = GaugeMetricFamily(
            f"{PREFIX}_alerts_unresolved",
            "Alerts not yet resolved, by severity and state",
            labels=["severity", "state"],
        )
        keys = {(s, st) for s in self.severities for st in _UNRESOLVED_STATES} | set(alerts)
        for sev, state in sorted(keys):
            unresolved.add_metric([sev, state], alerts.get((sev, state), 0))
        yield unresolved

    def _status(self, status: Callable[[], dict[str, Any]]) -> Iterable[Metric]:
        ok = GaugeMetricFamily(f"{PREFIX}_status_ok", "1 if the status check ran, else 0")
        try:
            figures = status_figures(status())
        except Exception:
            log.exception("/metrics: status check failed")
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        for name, value in sorted(figures.items()):
            full = f"{PREFIX}_{name}"
            if full in self.reserved:
                continue  # never shadow a metric of this module
            m = UnknownMetricFamily(full, f"From the status check: {name}")
            m.add_metric([], value)
            yield m


def install_metrics(
    app: FastAPI,
    *,
    tickets: TicketStore,
    auth: Callable[..., Any],
    status: Callable[[], dict[str, Any]] | None = None,
    clock: Callable[[], datetime],
    severities: Iterable[str] = (),
) -> CollectorRegistry:
    """Count ``app``'s requests and serve ``GET /metrics`` behind the ``auth`` dependency.

    Call it last in ``create_app``: the middleware added here is then the outermost, so it
    sees the status the client got, error handlers included. ``severities`` (those the rules
    use) get zero series even with no alert.
    """
    registry = CollectorRegistry()
    requests = Counter(
        f"{PREFIX}_http_requests",
        "HTTP requests by route template, method and status",
        ["route", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        f"{PREFIX}_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template and method",
        ["route", "method"],
        registry=registry,
    )
    reserved = {
        f"{PREFIX}_{n}"
        for n in (
            "ticket_db_up",
            "tickets_open",
            "tickets_overdue",
            "alerts_unresolved",
            "status_ok",
            "http_requests_total",
            "http_request_duration_seconds",
        )
    }
    registry.register(_LiveCollector(tickets, status, clock, severities, reserved))
    app.add_middleware(_HttpMetrics, requests=requests, latency=latency)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (bearer token of any role)",
        response_class=Response,
        dependencies=[Depends(auth)],
        responses={
            200: {
                "content": {CONTENT_TYPE_PLAIN_0_0_4: {}},
                "description": "Prometheus text format, or OpenMetrics if the Accept header asks",
            }
        },
    )
    def metrics(request: Request) -> Response:
        # A sync handler: FastAPI runs it in a worker thread, so the database reads of the
        # collectors do not block the event loop. The format follows the scraper's Accept
        # header, as prometheus_client's own exporters do.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), media_type=content_type)

    return registry
