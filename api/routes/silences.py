"""GET/POST /api/v1/silences and GET/DELETE /api/v1/silences/{id}: silences and maintenance
windows, which keep people from being paged about the alerts and tickets they select (E2).

Viewers read; managers and admins create and cancel. A silence selects by device kinds,
buildings, devices, device tags, rule ids and fault classes (at least one), runs from
``starts_at`` (default now) to ``ends_at`` (or for ``duration``), at most
``tickets.max_silence``, and says why in ``comment``. A maintenance window is a silence with
``purpose: maintenance``. Cancelling ends it now; nothing is deleted, so the record stays.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from alerts.silences import (
    PURPOSES,
    Matchers,
    Silence,
    SilenceError,
    SilencePurpose,
    SilenceState,
    SilenceStore,
)
from alerts.tickets import MAX_PAGE
from api.auth import Principal, current_principal, require_role
from api.context import Context
from api.errors import ApiError, ErrorResponse, invalid_parameter
from api.params import end_in_body, page_fields, refusal_error
from api.routes.reports import parse_when
from config.models import COMMUNICATION_LOSS_RULE, DeviceKind

_STATE_HELP = "One or more states, comma-separated (" + ", ".join(SilenceState) + ")"
_WHEN = "ISO 8601; without an offset it is site-local"
_ID = Path(ge=1, le=2**31 - 1)
_COMM_FAULT_CLASS = "communication_loss"  # of the built-in communication-loss alert


class MatchersIn(BaseModel):
    """What the silence selects; an empty field matches anything, at least one is required."""

    model_config = ConfigDict(extra="forbid")

    kinds: list[DeviceKind] = Field(default_factory=list, description="Device kinds")
    buildings: list[str] = Field(default_factory=list, description="Building ids")
    devices: list[str] = Field(default_factory=list, description="Device ids")
    tags: dict[str, str] = Field(default_factory=dict, description="Device tags, all must match")
    rule_ids: list[str] = Field(default_factory=list, description="Rule ids")
    fault_classes: list[str] = Field(default_factory=list, description="Ticket fault classes")


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: SilencePurpose = Field(
        default="silence", description="silence, or maintenance for a maintenance window"
    )
    matchers: MatchersIn = Field(default_factory=MatchersIn)
    starts_at: str | None = Field(default=None, description=f"Start, default now; {_WHEN}")
    ends_at: str | None = Field(default=None, description=f"End (exclusive); {_WHEN}")
    duration: str | None = Field(
        default=None, description="Instead of ends_at: how long, e.g. 2h or 3d"
    )
    comment: str = Field(
        default="", max_length=2000, description="Why (required): the work, the reason"
    )


class SilenceOut(BaseModel):
    id: int
    purpose: SilencePurpose = Field(description="silence, or maintenance (a maintenance window)")
    state: SilenceState = Field(description="At the time of the request")
    matchers: dict[str, Any]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    created_at: datetime
    comment: str
    cancelled_at: datetime | None
    cancelled_by: str | None


class SilencePageOut(BaseModel):
    items: list[SilenceOut]
    total: int = Field(description="Silences matching the filters, over all pages")
    limit: int
    offset: int
    next: str | None = Field(
        description="Path and query of the next page (same filters); null on the last page"
    )


def _out(x: Silence, now: datetime) -> SilenceOut:
    return SilenceOut(
        id=x.id,
        purpose=x.purpose,
        state=x.state(now),
        matchers=x.matchers.to_json(),
        starts_at=x.starts_at,
        ends_at=x.ends_at,
        created_by=x.created_by,
        created_at=x.created_at,
        comment=x.comment,
        cancelled_at=x.cancelled_at,
        cancelled_by=x.cancelled_by,
    )


def _states(text: str) -> frozenset[SilenceState]:
    out: set[SilenceState] = set()
    for part in text.split(","):
        name = part.strip().upper()
        if name not in SilenceState.__members__:
            raise invalid_parameter("state", f"unknown state {part.strip()!r}; {_STATE_HELP}")
        out.add(SilenceState[name])
    return frozenset(out)


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["silences"])
    store = SilenceStore(ctx.tickets)
    max_silence = ctx.config.tickets.max_silence
    known: dict[str, set[str]] = {
        "buildings": set(ctx.buildings),
        "devices": set(ctx.devices),
        "rule_ids": {rule.id for rule in ctx.config.rules} | {COMMUNICATION_LOSS_RULE},
        "fault_classes": {rule.fault_class for rule in ctx.config.rules} | {_COMM_FAULT_CLASS},
    }

    def one(silence_id: int) -> SilenceOut:
        x = store.get(silence_id)
        if x is None:
            raise ApiError(404, "not_found", f"no silence {silence_id}")
        return _out(x, ctx.clock())

    @r.get(
        "/silences",
        response_model=SilencePageOut,
        summary="Silences and maintenance windows, newest first",
    )
    def list_silences(
        request: Request,
        state: Annotated[str | None, Query(description=_STATE_HELP)] = None,
        purpose: Annotated[
            SilencePurpose | None, Query(description="silence or maintenance")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size")] = 50,
        offset: Annotated[int, Query(ge=0, description="Silences to skip")] = 0,
    ) -> SilencePageOut:
        now = ctx.clock()
        page = store.list(
            now=now,
            states=_states(state) if state else None,
            purpose=purpose,
            limit=limit,
            offset=offset,
        )
        return SilencePageOut(
            items=[_out(x, now) for x in page.items], **page_fields(request, page)
        )

    @r.get(
        "/silences/{silence_id}",
        response_model=SilenceOut,
        summary="One silence or maintenance window",
        responses={404: {"model": ErrorResponse, "description": "No such silence"}},
    )
    def get_silence(silence_id: Annotated[int, _ID]) -> SilenceOut:
        return one(silence_id)

    @r.post(
        "/silences",
        response_model=SilenceOut,
        status_code=201,
        summary="Create a silence or maintenance window (manager)",
        description=f"At least one matcher; a comment saying why; `ends_at` or `duration`; "
        f"at most {max_silence} long (config tickets.max_silence). Purposes: "
        + ", ".join(PURPOSES),
        responses={403: {"model": ErrorResponse, "description": "Needs the manager role"}},
    )
    def create_silence(
        principal: Annotated[Principal, Depends(current_principal)],
        body: Annotated[SilenceIn | None, Body()] = None,
    ) -> SilenceOut:
        require_role(principal, "manager", "create silences")
        b = body or SilenceIn()
        now = ctx.clock()
        m = b.matchers
        for name in ("buildings", "devices", "rule_ids", "fault_classes"):
            unknown = sorted(set(getattr(m, name)) - known[name])
            if unknown:
                raise invalid_parameter(
                    f"matchers.{name}", f"unknown: {', '.join(unknown)}", "body"
                )
        if not b.comment.strip():
            raise invalid_parameter("comment", "a comment saying why is required", "body")
        starts = parse_when("starts_at", b.starts_at, ctx.tz) if b.starts_at else now
        ends = end_in_body(
            ctx,
            "ends_at",
            b.ends_at,
            b.duration,
            starts,
            longest=timedelta(days=3660),
            example="2h",
        )
        matchers = Matchers(
            kinds=tuple(m.kinds),
            buildings=tuple(m.buildings),
            devices=tuple(m.devices),
            tags=dict(m.tags),
            rule_ids=tuple(m.rule_ids),
            fault_classes=tuple(m.fault_classes),
        )
        try:
            x = store.create(
                matchers,
                starts_at=starts,
                ends_at=ends,
                created_by=principal.name,
                comment=b.comment,
                now=now,
                purpose=b.purpose,
                max_duration=max_silence,
            )
        except SilenceError as e:
            if e.parameter == "ends_at" and b.duration is not None:
                e.parameter = "duration"  # name what the caller sent
            raise refusal_error("silence", 0, e) from None
        return _out(x, now)

    @r.delete(
        "/silences/{silence_id}",
        response_model=SilenceOut,
        summary="Cancel a silence or maintenance window now (manager); the record stays",
        responses={
            403: {"model": ErrorResponse, "description": "Needs the manager role"},
            404: {"model": ErrorResponse, "description": "No such silence"},
            409: {"model": ErrorResponse, "description": "Already expired or cancelled"},
        },
    )
    def cancel_silence(
        silence_id: Annotated[int, _ID],
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> SilenceOut:
        require_role(principal, "manager", "cancel silences")
        now = ctx.clock()
        try:
            x = store.cancel(silence_id, principal.name, now)
        except SilenceError as e:
            raise refusal_error("silence", silence_id, e) from None
        return _out(x, now)

    return r
