"""The HTTP API: ``create_app`` builds a FastAPI app around a config, a store and tickets.

Nothing is read from the environment or built at import time: the caller passes the tokens
(config ``api.tokens`` merged with ``FACMON_API_TOKEN``) and a ``status`` callable for
``/health``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI

from alerts.tickets import TicketStore
from api.auth import TokenSpec, bearer_auth, named_tokens
from api.console import install_console
from api.context import Context
from api.errors import ERROR_RESPONSES, ApiError, ErrorResponse, install_error_handlers
from api.metrics import install_metrics
from api.routes import alerts as alert_routes
from api.routes import devices, maintenance, monthly, readings, reports, savings, uptime, water
from api.routes import notifications as notification_routes
from api.routes import silences as silence_routes
from api.routes import tickets as ticket_routes
from config.models import SiteConfig
from reports.context import utc_now
from store.base import Store

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(
    config: SiteConfig,
    store: Store,
    tickets: TicketStore,
    *,
    tokens: Mapping[str, TokenSpec] | None = None,
    status: Callable[[], dict[str, Any]] | None = None,
    clock: Callable[[], datetime] = utc_now,
    acknowledge_alert: alert_routes.AcknowledgeHook | None = None,
    routes: Literal["all", "health"] = "all",
) -> FastAPI:
    """The facmon API for one site.

    ``tokens`` maps bearer tokens to roles, or to (name, role); a bare role takes the name of
    the same token in ``config.api.tokens``, else "FACMON_API_TOKEN". None takes
    ``config.api.tokens`` as they are (the caller adds ``FACMON_API_TOKEN``). With no token
    at all every ``/api`` request is refused. The web console is served at ``/console``.
    ``status`` adds figures to ``GET /health`` (store up, outbox depth, ...). ``clock`` gives
    "now" for ages and overdue flags. ``acknowledge_alert(fingerprint, who, now)`` routes
    alert acknowledgements through the running AlertEngine (serialised with its other calls)
    so its state sees them; None writes them to the ticket database directly. ``routes``
    "health" serves only ``/health`` and ``/metrics`` (a collector-only process, whose API runs
    elsewhere).
    """
    if tokens is None:
        tokens = {t.token.get_secret_value(): (t.name, t.role) for t in config.api.tokens}
    tokens = named_tokens(tokens, config.api.tokens)
    if not tokens:
        log.warning("no API token configured: every /api request will be refused (401)")
    ctx = Context(config, store, tickets, clock)

    app = FastAPI(
        title="facmon",
        summary="Building facilities monitor: devices, readings, tickets and energy reports",
        description=(
            f"Site **{config.site.name}** ({config.site.id}, {config.site.timezone}). "
            "Every /api route needs `Authorization: Bearer <token>`. Every error has the shape "
            '`{"error": {"status", "code", "message", "details"}}`.'
        ),
        version="1",
    )
    install_error_handlers(app)

    @app.get(
        "/health",
        tags=["health"],
        summary="Liveness and pipeline figures (no authentication)",
        responses={503: {"model": ErrorResponse, "description": "Status check failed"}},
    )
    def health() -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ok"}
        if status is not None:
            try:
                body.update(status())
            except Exception:
                log.exception("health status check failed")
                raise ApiError(503, "unavailable", "status check failed") from None
        return body

    if routes == "all":
        _install_api(app, ctx, tokens, acknowledge_alert)
    # Last, so its middleware is the outermost and counts the status clients really got.
    install_metrics(
        app,
        tickets=tickets,
        auth=bearer_auth(tokens),
        status=status,
        clock=clock,
        severities={r.severity for r in config.rules},
    )
    return app


def _install_api(
    app: FastAPI,
    ctx: Context,
    tokens: Mapping[str, TokenSpec],
    acknowledge_alert: alert_routes.AcknowledgeHook | None,
) -> None:
    api = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(bearer_auth(tokens))], responses=ERROR_RESPONSES
    )
    for module in (
        devices,
        readings,
        ticket_routes,
        reports,
        savings,
        uptime,
        water,
        maintenance,
        monthly,
        notification_routes,
    ):
        api.include_router(module.router(ctx))
    api.include_router(alert_routes.router(ctx, acknowledge_alert))
    api.include_router(silence_routes.router(ctx))
    app.include_router(api)
    install_console(app, ctx, API_PREFIX)
