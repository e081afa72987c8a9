"""GET /api/v1/alerts and /api/v1/alerts/{id}: alert episodes as the engine recorded them;
POST /api/v1/alerts/{id}/acknowledge, /shelve and /unshelve: what people do about them
(../shared/alerting-semantics.md A10, A11).

Viewers read; technicians and above acknowledge, shelve and unshelve. Acknowledging changes no
state (A10). Shelving needs a reason and an expiry no further away than ``tickets.max_shelve``
(A11); it only quiets notifications and escalation, the engine goes on evaluating and recording
the alert. Every action is recorded with the token's name: on the alert row and as an event on
the alert's ticket.

Acknowledgements go through the running alert engine when the app is given a hook to it
(``create_app(acknowledge_alert=...)``), so that the engine's own state sees them (a latched
alert whose condition cleared resolves on acknowledgement, A10). Without the hook they are
written to the ticket database directly; the engine then learns of them only when it next
re-reads the alert (a conflict or a restart).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, get_args

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from alerts.silences import SilenceStore, silenced
from alerts.tickets import (
    MAX_PAGE,
    AlertActionError,
    AlertConflict,
    AlertRecord,
    AlertState,
    is_shelved,
)
from api.auth import Principal, current_principal, require_role
from api.context import Context
from api.errors import ApiError, ErrorResponse, invalid_parameter
from api.params import end_in_body, known_building, page_fields, refusal_error
from api.routes.reports import parse_when
from config.models import COMMUNICATION_LOSS_RULE, Severity

# (fingerprint, who, now): acknowledge through the running AlertEngine (the caller serialises
# it with the engine's other calls), e.g. AlertEngine.acknowledge under the runtime's engine
# lock. Raises KeyError when the engine has no such unresolved alert. The request's note is
# not passed: the engine's acknowledgement writes its own.
AcknowledgeHook = Callable[[str, str, datetime], object]

# The fault class of the built-in communication-loss alert (alerts.engine), for silences.
_COMM_FAULT_CLASS = "communication_loss"
_STATES = [s for s in AlertState if s is not AlertState.INACTIVE]
_STATE_HELP = (
    "One or more states, comma-separated ("
    + ", ".join(s.value for s in _STATES)
    + "), or 'unresolved' for every state but RESOLVED"
)
_SEVERITIES: tuple[str, ...] = get_args(Severity)
_WHEN = "ISO 8601 date or date-time; without an offset it is site-local"
_ID = Path(ge=1, le=2**31 - 1)
_ACTION_ERRORS: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorResponse, "description": "The token's role may not do this"},
    404: {"model": ErrorResponse, "description": "No such alert"},
    409: {"model": ErrorResponse, "description": "Not possible in the alert's state"},
}


class ShelveOut(BaseModel):
    by: str = Field(description="Who shelved it")
    reason: str
    at: datetime = Field(description="When it was shelved")
    until: datetime = Field(description="When the shelve ends (or ended, if unshelved)")


class AlertOut(BaseModel):
    id: int
    fingerprint: str = Field(description="Identity of the alert instance (D1)")
    rule_id: str
    building: str
    device: str
    metric: str
    state: AlertState
    severity: str
    started_at: datetime = Field(description="Start of the episode (PENDING or FIRING)")
    fired_at: datetime | None
    resolved_at: datetime | None
    last_value: float | None = Field(description="Value at the last transition")
    ticket_id: int | None
    acknowledged: bool = Field(description="Someone acknowledged this episode (A10)")
    acked_at: datetime | None
    acked_by: str | None
    shelved: bool = Field(description="Shelved now (A11): evaluated, but nobody is notified")
    shelve: ShelveOut | None = Field(description="The latest shelve, also after it ended")
    silenced_by: int | None = Field(
        description="Id of the silence or maintenance window covering the alert now, if any"
    )


class AlertPageOut(BaseModel):
    items: list[AlertOut]
    total: int = Field(description="Alerts matching the filters, over all pages")
    limit: int
    offset: int
    next: str | None = Field(
        description="Path and query of the next page (same filters); null on the last page"
    )


class AcknowledgeIn(BaseModel):
    note: str = Field(default="", max_length=2000, description="An optional remark")


class ShelveIn(BaseModel):
    reason: str = Field(default="", max_length=2000, description="Why (required)")
    until: str | None = Field(
        default=None,
        description="When the shelve ends, ISO 8601; without an offset it is site-local. "
        "Give this or duration",
    )
    duration: str | None = Field(
        default=None, description="How long, e.g. 30m, 4h; give this or until"
    )


class UnshelveIn(BaseModel):
    note: str = Field(default="", max_length=2000, description="An optional remark")


def _states(text: str) -> frozenset[AlertState]:
    out: set[AlertState] = set()
    for part in text.split(","):
        name = part.strip().upper()
        if name == "UNRESOLVED":
            out |= set(_STATES) - {AlertState.RESOLVED}
        elif name in AlertState.__members__ and name != AlertState.INACTIVE.value:
            out.add(AlertState[name])
        else:
            raise invalid_parameter("state", f"unknown state {part.strip()!r}; {_STATE_HELP}")
    return frozenset(out)


def _severities(text: str) -> frozenset[str]:
    out = {p.strip().lower() for p in text.split(",")}
    unknown = sorted(out - set(_SEVERITIES))
    if unknown:
        raise invalid_parameter(
            "severity", f"unknown severity {unknown[0]!r}; one of {', '.join(_SEVERITIES)}"
        )
    return frozenset(out)


def router(ctx: Context, acknowledge: AcknowledgeHook | None = None) -> APIRouter:
    r = APIRouter(tags=["alerts"])
    silences = SilenceStore(ctx.tickets)
    rule_ids = {rule.id for rule in ctx.config.rules} | {COMMUNICATION_LOSS_RULE}
    fault_class = {rule.id: rule.fault_class for rule in ctx.config.rules}
    fault_class[COMMUNICATION_LOSS_RULE] = _COMM_FAULT_CLASS
    max_shelve = ctx.config.tickets.max_shelve

    def out(a: AlertRecord, now: datetime, silence_id: int | None) -> AlertOut:
        shelve = None
        if a.shelved_at is not None and a.shelved_until is not None:
            shelve = ShelveOut(
                by=a.shelved_by or "",
                reason=a.shelved_reason or "",
                at=a.shelved_at,
                until=a.shelved_until,
            )
        value = a.last_value
        return AlertOut(
            id=a.id,
            fingerprint=a.fingerprint,
            rule_id=a.rule_id,
            building=a.building,
            device=a.device,
            metric=a.metric,
            state=a.state,
            severity=a.severity,
            started_at=a.started_at,
            fired_at=a.fired_at,
            resolved_at=a.resolved_at,
            last_value=value if value is not None and math.isfinite(value) else None,
            ticket_id=a.ticket_id,
            acknowledged=a.acked_at is not None,
            acked_at=a.acked_at,
            acked_by=a.acked_by,
            shelved=is_shelved(a, now),
            shelve=shelve,
            silenced_by=silence_id,
        )

    def many(alerts: tuple[AlertRecord, ...] | list[AlertRecord], now: datetime) -> list[AlertOut]:
        active = silences.active(now)
        result: list[AlertOut] = []
        for a in alerts:
            hit = None
            if active and a.resolved_at is None:
                device = ctx.devices.get(a.device)
                hit = silenced(
                    active,
                    device=a.device,
                    building=a.building,
                    kind=device.kind if device is not None else "",
                    tags=device.tags if device is not None else {},
                    rule_id=a.rule_id,
                    fault_class=fault_class.get(a.rule_id, ""),
                    now=now,
                )
            result.append(out(a, now, hit.id if hit is not None else None))
        return result

    def one(alert_id: int) -> AlertOut:
        a = ctx.tickets.get_alert(alert_id)
        if a is None:
            raise ApiError(404, "not_found", f"no alert {alert_id}")
        return many([a], ctx.clock())[0]

    @r.get("/alerts", response_model=AlertPageOut, summary="Alert episodes, newest first")
    def list_alerts(
        request: Request,
        state: Annotated[str | None, Query(description=_STATE_HELP)] = None,
        severity: Annotated[
            str | None, Query(description="One or more severities, comma-separated")
        ] = None,
        building: Annotated[str | None, Query(description="Building id")] = None,
        device: Annotated[str | None, Query(description="Device id")] = None,
        rule: Annotated[str | None, Query(description="Rule id")] = None,
        shelved: Annotated[bool | None, Query(description="Shelved now, or not")] = None,
        acknowledged: Annotated[
            bool | None, Query(description="Acknowledged at least once, or never")
        ] = None,
        since: Annotated[
            str | None, Query(description=f"Episodes still open at or after this; {_WHEN}")
        ] = None,
        until: Annotated[
            str | None, Query(description=f"Episodes that started before this; {_WHEN}")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size")] = 50,
        offset: Annotated[int, Query(ge=0, description="Alerts to skip")] = 0,
    ) -> AlertPageOut:
        known_building(ctx, building)
        if device is not None and device not in ctx.devices:
            raise invalid_parameter("device", f"unknown device {device!r}")
        if rule is not None and rule not in rule_ids:
            raise invalid_parameter("rule", f"unknown rule {rule!r}")
        start = parse_when("since", since, ctx.tz) if since is not None else None
        end = parse_when("until", until, ctx.tz) if until is not None else None
        if start is not None and end is not None and end <= start:
            raise invalid_parameter("until", "must be after since")
        now = ctx.clock()
        page = ctx.tickets.list_alerts(
            states=_states(state) if state else None,
            severities=_severities(severity) if severity else None,
            building=building,
            device=device,
            rule_id=rule,
            shelved=shelved,
            acknowledged=acknowledged,
            since=start,
            until=end,
            now=now,
            limit=limit,
            offset=offset,
        )
        return AlertPageOut(items=many(page.items, now), **page_fields(request, page))

    @r.get(
        "/alerts/{alert_id}",
        response_model=AlertOut,
        summary="One alert episode",
        responses={404: {"model": ErrorResponse, "description": "No such alert"}},
    )
    def get_alert(alert_id: Annotated[int, _ID]) -> AlertOut:
        return one(alert_id)

    @r.post(
        "/alerts/{alert_id}/acknowledge",
        response_model=AlertOut,
        summary="Acknowledge an unresolved alert (A10): no state changes",
        responses=_ACTION_ERRORS,
    )
    def acknowledge_alert(
        alert_id: Annotated[int, _ID],
        principal: Annotated[Principal, Depends(current_principal)],
        body: Annotated[AcknowledgeIn | None, Body()] = None,
    ) -> AlertOut:
        require_role(principal, "technician", "acknowledge alerts")
        note = (body or AcknowledgeIn()).note.strip()
        now = ctx.clock()
        for _ in range(3):
            a = ctx.tickets.get_alert(alert_id)
            if a is None:
                raise ApiError(404, "not_found", f"no alert {alert_id}")
            if a.resolved_at is not None:
                raise ApiError(409, "conflict", f"alert {alert_id} is already resolved")
            try:
                if acknowledge is not None:
                    acknowledge(a.fingerprint, principal.name, now)
                else:
                    ctx.tickets.acknowledge_alert(a, principal.name, now, note)
            except AlertConflict:
                continue  # the engine moved it meanwhile: read it again
            except KeyError:
                raise ApiError(
                    409, "conflict", f"alert {alert_id} is no longer unresolved"
                ) from None
            except RuntimeError:  # the engine gave up on writers that kept moving it
                break
            return one(alert_id)
        raise ApiError(409, "conflict", f"alert {alert_id} keeps changing; try again")

    @r.post(
        "/alerts/{alert_id}/shelve",
        response_model=AlertOut,
        summary="Shelve an unresolved alert until a time (A11)",
        description=f"Needs a reason and either `until` or `duration`; at most "
        f"{max_shelve} ahead (config tickets.max_shelve). The alert is still evaluated and "
        "recorded; only notifications and escalation are held back. Shelving again replaces "
        "the earlier shelve.",
        responses=_ACTION_ERRORS,
    )
    def shelve_alert(
        alert_id: Annotated[int, _ID],
        principal: Annotated[Principal, Depends(current_principal)],
        body: Annotated[ShelveIn | None, Body()] = None,
    ) -> AlertOut:
        require_role(principal, "technician", "shelve alerts")
        b = body or ShelveIn()
        now = ctx.clock()
        if not b.reason.strip():
            raise invalid_parameter("reason", "a reason is required", "body")
        until = _shelve_end(ctx, b, now)
        if until - now > max_shelve:
            raise invalid_parameter(
                "until" if b.until is not None else "duration",
                f"an alert can be shelved for at most {max_shelve} (tickets.max_shelve)",
                "body",
            )
        try:
            ctx.tickets.shelve_alert(
                alert_id, principal.name, b.reason, until, now, max_shelve=max_shelve
            )
        except AlertActionError as e:
            raise refusal_error("alert", alert_id, e) from None
        return one(alert_id)

    @r.post(
        "/alerts/{alert_id}/unshelve",
        response_model=AlertOut,
        summary="End an alert's shelve now",
        responses=_ACTION_ERRORS,
    )
    def unshelve_alert(
        alert_id: Annotated[int, _ID],
        principal: Annotated[Principal, Depends(current_principal)],
        body: Annotated[UnshelveIn | None, Body()] = None,
    ) -> AlertOut:
        require_role(principal, "technician", "unshelve alerts")
        note = (body or UnshelveIn()).note
        try:
            ctx.tickets.unshelve_alert(alert_id, principal.name, ctx.clock(), note)
        except AlertActionError as e:
            raise refusal_error("alert", alert_id, e) from None
        return one(alert_id)

    return r


def _shelve_end(ctx: Context, b: ShelveIn, now: datetime) -> datetime:
    until = end_in_body(
        ctx, "until", b.until, b.duration, now, longest=timedelta(days=366), example="4h"
    )
    if until <= now:  # only a time can be: a duration is positive
        raise invalid_parameter("until", "must be in the future", "body")
    return until
