"""GET /api/v1/tickets and /api/v1/tickets/{id}: the work orders alerts opened or people
reported; POST /api/v1/tickets: a technician opens one by hand, or for a tenant's repair
request (报修); POST /api/v1/tickets/{id}/{action}: the people working them move them along
their lifecycle (../shared/alerting-semantics.md T2, T3, T5); GET /api/v1/me: who a token is
and what it may do.

Technicians open tickets, accept (acknowledge), report arrival, start, hold, resume, resolve
and record the follow-up call (回访); managers and admins also assign, close and cancel; viewers
only read, and do not see who reported a tenant's request (a name and a phone number). Every
action is an event whose ``who`` is the token's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError

from alerts.tickets import (
    MAX_PAGE,
    OPEN_STATUSES,
    REQUESTER_MAX,
    TICKET_MOVES,
    TICKET_SOURCES,
    Priority,
    TicketRecord,
    TicketRequest,
    TicketSource,
    TicketStatus,
    TicketTransitionError,
)
from api.auth import Principal, current_principal, require_role
from api.context import Context
from api.errors import ApiError, ErrorDetail, ErrorResponse, invalid_parameter
from api.params import page_fields
from api.routes.reports import parse_when
from config.models import SiteConfig
from dashboards import device_panel_url

_STATUS_HELP = (
    "One or more statuses, comma-separated ("
    + ", ".join(s.value for s in TicketStatus)
    + "), or 'open' for every status that still needs work"
)


class TicketOut(BaseModel):
    id: int
    number: str = Field(description="Work-order number, e.g. WO-000123")
    title: str
    device: str
    building: str
    fault_class: str
    priority: str = Field(description="P1 (most urgent) .. P3")
    status: TicketStatus
    created_at: datetime
    due_at: datetime = Field(description="created_at + the SLA of the priority")
    updated_at: datetime
    overdue: bool = Field(description="Still open after due_at")
    occurrences: int = Field(description="Alert episodes and reports on this ticket")
    source_alert_id: int | None
    source: TicketSource = Field(
        description="alert (a rule fired), manual (a technician opened it), tenant (a "
        "tenant's repair request: needs a follow-up before closing), preventive (planned)"
    )
    requester: str | None = Field(
        description="Who asked, for a tenant's request (name, unit, phone); null for a "
        "viewer token, which may be a lobby screen"
    )
    grafana_url: str | None = Field(
        description="The Grafana panel of the ticket's device; null without grafana.url in "
        "the config or for a device no longer configured"
    )


class TicketEventOut(BaseModel):
    at: datetime
    who: str
    kind: str
    note: str
    alert_id: int | None


class TicketDetailOut(TicketOut):
    events: list[TicketEventOut]


class TicketPageOut(BaseModel):
    items: list[TicketOut]
    total: int = Field(description="Tickets matching the filters, over all pages")
    limit: int
    offset: int
    next: str | None = Field(
        description="Path and query of the next page (same filters); null on the last page"
    )


def _out(
    t: TicketRecord, now: datetime, config: SiteConfig, principal: Principal
) -> dict[str, object]:
    return {
        "id": t.id,
        "number": t.number,
        "title": t.title,
        "device": t.device,
        "building": t.building,
        "fault_class": t.fault_class,
        "priority": t.priority,
        "status": t.status,
        "created_at": t.created_at,
        "due_at": t.due_at,
        "updated_at": t.updated_at,
        "overdue": t.is_open and now > t.due_at,
        "occurrences": t.occurrences,
        "source_alert_id": t.source_alert_id,
        "source": t.source,
        "requester": t.requester if principal.has("technician") else None,
        "grafana_url": device_panel_url(config, t.device),
    }


def _statuses(text: str) -> frozenset[TicketStatus]:
    out: set[TicketStatus] = set()
    for part in text.split(","):
        name = part.strip().upper()
        if name == "OPEN":
            out |= OPEN_STATUSES
        elif name in TicketStatus.__members__:
            out.add(TicketStatus[name])
        else:
            raise invalid_parameter("status", f"unknown status {part.strip()!r}; {_STATUS_HELP}")
    return frozenset(out)


def _sources(text: str) -> frozenset[TicketSource]:
    out: set[TicketSource] = set()
    for part in text.split(","):
        name = part.strip().lower()
        if name not in TICKET_SOURCES:
            raise invalid_parameter(
                "source", f"unknown source {part.strip()!r}; one of {', '.join(TICKET_SOURCES)}"
            )
        out.add(name)
    return frozenset(out)


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["tickets"])

    @r.get("/tickets", response_model=TicketPageOut, summary="Tickets, newest first")
    def tickets(
        request: Request,
        principal: Annotated[Principal, Depends(current_principal)],
        status: Annotated[str | None, Query(description=_STATUS_HELP)] = None,
        device: Annotated[str | None, Query(description="Device id")] = None,
        building: Annotated[str | None, Query(description="Building id")] = None,
        source: Annotated[str | None, Query(description=_SOURCE_HELP)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size")] = 50,
        offset: Annotated[int, Query(ge=0, description="Tickets to skip")] = 0,
    ) -> TicketPageOut:
        page = ctx.tickets.list_tickets(
            status=_statuses(status) if status else None,
            device=device,
            building=building,
            source=_sources(source) if source else None,
            limit=limit,
            offset=offset,
        )
        now = ctx.clock()
        return TicketPageOut.model_validate(
            {
                "items": [_out(t, now, ctx.config, principal) for t in page.items],
                **page_fields(request, page),
            }
        )

    @r.get(
        "/tickets/{ticket_id}",
        response_model=TicketDetailOut,
        summary="One ticket with its events",
        responses={404: {"description": "No such ticket"}},
    )
    def ticket(
        ticket_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> TicketDetailOut:
        detail = ctx.tickets.get_ticket(ticket_id)
        if detail is None:
            raise ApiError(404, "not_found", f"no ticket {ticket_id}")
        events = [
            {"at": e.at, "who": e.who, "kind": e.kind, "note": e.note, "alert_id": e.alert_id}
            for e in detail.events
        ]
        return TicketDetailOut.model_validate(
            {**_out(detail.ticket, ctx.clock(), ctx.config, principal), "events": events}
        )

    @r.post(
        "/tickets",
        response_model=TicketDetailOut,
        status_code=201,
        summary="Open a ticket by hand, or for a tenant's repair request (technician)",
        description="For faults no sensor sees and for tenants' repair requests (报修) taken by "
        "phone or at the front desk. The building is the device's; the `created` event's "
        "`who` is the token's name, and paging starts as for a ticket an alert opens. If the "
        "device already has an open ticket of the same fault class, the report is added to it "
        "as an occurrence (D4; a tenant's report makes it a tenant ticket), or a ticket of it "
        "finished within the reopen window is reopened, and the answer is 200 instead of 201. "
        "A tenant ticket needs the `follow_up` action after it is resolved before it can be "
        "closed (T5). Every bad field is named in one 400.",
        responses={
            200: {"model": TicketDetailOut, "description": "Added to an existing ticket (D4)"},
            403: {"model": ErrorResponse, "description": "Needs the technician role"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": TicketCreateIn.model_json_schema()}},
            }
        },
    )
    def create(
        request: Request,
        response: Response,
        principal: Annotated[Principal, Depends(current_principal)],
        # Untyped here so that the role is checked before the fields, and every bad field is
        # named at once (_parse_new_ticket); the schema above documents the body.
        body: Annotated[dict[str, Any] | None, Body()] = None,
    ) -> TicketDetailOut:
        require_role(principal, "technician", "open tickets")
        spec = _parse_new_ticket(body or {}, ctx)
        now = ctx.clock()
        req = TicketRequest(
            title=spec.title,
            device=spec.device,
            building=ctx.devices[spec.device].location.building,
            fault_class=spec.fault_class,
            severity=_SEVERITY_OF[spec.priority],
            note=spec.note,
            source=spec.source,
            requester=spec.requester,
            created_by=principal.name,
            priority=spec.priority,
        )
        t = ctx.tickets.open_or_add_occurrence(req, now)
        # A ticket this request opened is NEW with one occurrence from now; anything else is
        # an earlier ticket that took the report (D4).
        if not (t.status is TicketStatus.NEW and t.occurrences == 1 and t.created_at == now):
            response.status_code = 200
        # Relative, like the page links: right behind a proxy that rewrites the host.
        response.headers["Location"] = f"{request.url.path.rstrip('/')}/{t.id}"
        return ticket(t.id, principal)

    @r.get("/me", response_model=MeOut, summary="The calling token's name, role and actions")
    def me(principal: Annotated[Principal, Depends(current_principal)]) -> MeOut:
        return MeOut.model_validate(
            {
                "name": principal.name,
                "role": principal.role,
                "actions": {
                    a: sorted(TICKET_MOVES[spec.kind][1])
                    for a, spec in ACTIONS.items()
                    if principal.has(spec.role)
                },
            }
        )

    # Before the generic action route, which would otherwise take "reopen" as an unknown action.
    @r.post(
        "/tickets/{ticket_id}/reopen",
        response_model=TicketDetailOut,
        summary="Reopen a resolved or closed ticket by hand (manager): a repeat repair",
        description="RESOLVED or CLOSED -> REOPENED, with a new due time; counts as a repeat "
        "repair like a reopening by a new alert episode (D4). Body: `note` (required), why "
        "the repair did not hold. A manager's call, like closing: it undoes a verified "
        "repair and counts against the repair figures. Refused (409) while another ticket of "
        "the same device and fault class is open.",
        responses={
            403: {"model": ErrorResponse, "description": "Needs the manager role"},
            404: {"model": ErrorResponse, "description": "No such ticket"},
            409: {"model": ErrorResponse, "description": "Not resolved or closed"},
        },
    )
    def reopen(
        ticket_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
        principal: Annotated[Principal, Depends(current_principal)],
        body: Annotated[TicketActionIn | None, Body()] = None,
    ) -> TicketDetailOut:
        require_role(principal, "manager", "reopen tickets")
        note = (body or TicketActionIn()).note
        if not note.strip():
            raise invalid_parameter(
                "note", "a note is required: why the repair did not hold", "body"
            )
        try:
            ctx.tickets.reopen_ticket(ticket_id, ctx.clock(), principal.name, note)
        except TicketTransitionError as e:
            raise _refused(
                ticket_id, e, "reopen {n}", "Only a resolved or closed ticket can be reopened."
            ) from None
        return ticket(ticket_id, principal)

    @r.post(
        "/tickets/{ticket_id}/{action}",
        response_model=TicketDetailOut,
        summary="Move a ticket: accept, arrived, start, hold, resume, resolve, close, ...",
        description=_ACTIONS_HELP,
        responses={
            403: {"model": ErrorResponse, "description": "The token's role may not do this"},
            404: {"model": ErrorResponse, "description": "No such ticket"},
            409: {"model": ErrorResponse, "description": "Not allowed in the ticket's status"},
        },
    )
    def act(
        ticket_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
        action: Annotated[Action, Path(description="What to do; see the list above")],
        principal: Annotated[Principal, Depends(current_principal)],
        body: Annotated[TicketActionIn | None, Body()] = None,
    ) -> TicketDetailOut:
        spec = ACTIONS[action]
        require_role(principal, spec.role, spec.what.format(n="tickets"))
        b = body or TicketActionIn()
        now = ctx.clock()
        who = principal.name
        t = ctx.tickets
        try:
            match spec.kind:
                case "assigned":
                    t.assign_ticket(ticket_id, now, who, _required(b.assignee, "assignee"), b.note)
                case "accepted":
                    t.accept_ticket(ticket_id, now, who, b.note)
                case "arrived":
                    t.record_arrival(ticket_id, now, who, b.note)
                case "started":
                    t.start_work(ticket_id, now, who, b.note)
                case "on_hold":
                    reason = _required(b.reason or b.note, "reason")
                    resume = parse_when("resume_at", _required(b.resume_at, "resume_at"), ctx.tz)
                    if resume <= now:
                        raise invalid_parameter(
                            "resume_at", "the expected resume time must be in the future", "body"
                        )
                    t.hold_ticket(ticket_id, now, who, reason, resume.astimezone(ctx.tz))
                case "resumed":
                    t.resume_work(ticket_id, now, who, b.note)
                case "resolved":
                    t.resolve_ticket(ticket_id, now, who, _required(b.note, "note"))
                case "closed":
                    t.close_ticket(ticket_id, now, who, _required(b.note, "note"))
                case "cancelled":
                    t.cancel_ticket(ticket_id, now, who, _required(b.reason or b.note, "reason"))
                case "follow_up":
                    t.record_follow_up(ticket_id, now, who, _required(b.note, "follow_up_note"))
                case _:  # pragma: no cover - ACTIONS and this match are kept together
                    raise AssertionError(spec.kind)
        except TicketTransitionError as e:
            raise _refused(ticket_id, e, spec.what, spec.needs) from None
        return ticket(ticket_id, principal)

    return r


# -- actions ----------------------------------------------------------------------------------
Action = Literal[
    "acknowledge",
    "accept",
    "arrived",
    "start",
    "hold",
    "resume",
    "resolve",
    "assign",
    "close",
    "cancel",
    "follow_up",
]


@dataclass(frozen=True, slots=True)
class _Spec:
    kind: str  # the move in alerts.tickets.TICKET_MOVES, and the event it writes
    role: str  # the least role allowed to do it
    what: str  # "accept {n}": for "cannot ..." messages, {n} the ticket number or "tickets"
    needs: str  # when it is allowed, in words a technician reads on a phone


ACTIONS: dict[str, _Spec] = {
    "acknowledge": _Spec(
        "accepted",
        "technician",
        "accept {n}",
        "Only a new, assigned or reopened ticket can be accepted.",
    ),
    "accept": _Spec(
        "accepted",
        "technician",
        "accept {n}",
        "Only a new, assigned or reopened ticket can be accepted.",
    ),
    "arrived": _Spec(
        "arrived",
        "technician",
        "report arrival on {n}",
        "Arrival on site is reported on an accepted ticket, or while work is under way.",
    ),
    "start": _Spec(
        "started",
        "technician",
        "start work on {n}",
        "Work starts on an accepted ticket; a ticket on hold is resumed instead.",
    ),
    "hold": _Spec(
        "on_hold", "technician", "put {n} on hold", "Only work in progress can be put on hold."
    ),
    "resume": _Spec("resumed", "technician", "resume {n}", "Only a ticket on hold can be resumed."),
    "resolve": _Spec(
        "resolved", "technician", "resolve {n}", "Only a ticket that is still open can be resolved."
    ),
    "assign": _Spec(
        "assigned",
        "manager",
        "assign {n}",
        "Only a ticket on which work has not started can be assigned.",
    ),
    "close": _Spec(
        "closed", "manager", "close {n}", "Resolve it first: only a resolved ticket can be closed."
    ),
    "cancel": _Spec(
        "cancelled",
        "manager",
        "cancel {n}",
        "Only a ticket on which work has not started can be cancelled.",
    ),
    "follow_up": _Spec(
        "follow_up",
        "technician",
        "record the follow-up on {n}",
        "The follow-up call comes after the repair: only a resolved or closed ticket takes it.",
    ),
}

_STATUS_WORDS: dict[TicketStatus, str] = {
    TicketStatus.NEW: "new and not yet accepted",
    TicketStatus.ASSIGNED: "assigned but not yet accepted",
    TicketStatus.ACCEPTED: "accepted, with work not started",
    TicketStatus.IN_PROGRESS: "in progress",
    TicketStatus.ON_HOLD: "on hold",
    TicketStatus.RESOLVED: "already resolved",
    TicketStatus.CLOSED: "already closed",
    TicketStatus.CANCELLED: "cancelled",
    TicketStatus.REOPENED: "reopened and not yet accepted",
}

_ACTIONS_HELP = (
    "The caller's token name is the event's `who`; the time is now.\n\n"
    + "\n".join(f"* `{a}` ({s.role} or above): {s.needs}" for a, s in ACTIONS.items())
    + "\n\nBody fields: `note` (required by `resolve`: what was done, by `close`: the "
    "verification, and by `follow_up`: what the requester said when called back), `reason` "
    "(`hold`, `cancel`), `resume_at` (`hold`: expected resume, ISO 8601, "
    "site-local without an offset), `assignee` (`assign`). Invalid in the ticket's status: 409."
)


class TicketActionIn(BaseModel):
    note: str = Field(
        default="",
        max_length=2000,
        description="resolve: what was done (required); close: the verification (required); "
        "follow_up: what the requester said (required); any other action: an optional remark",
    )
    reason: str = Field(
        default="", max_length=2000, description="hold and cancel: why (required; or in note)"
    )
    resume_at: str | None = Field(
        default=None,
        description="hold: expected resume time, ISO 8601; without an offset it is site-local",
    )
    assignee: str | None = Field(
        default=None, max_length=64, description="assign: who is to do the work"
    )


class MeOut(BaseModel):
    name: str = Field(description="The token's name from api.tokens (FACMON_API_TOKEN for it)")
    role: Literal["viewer", "technician", "manager", "admin"]
    actions: dict[str, list[TicketStatus]] = Field(
        description="The ticket actions this token may take, each with the statuses it "
        "applies to; empty for a viewer"
    )


def _refused(ticket_id: int, e: TicketTransitionError, what: str, needs: str) -> ApiError:
    """404 for an unknown ticket, else 409 saying what the ticket's status allows: ``what``
    as in :attr:`_Spec.what`, ``needs`` as in :attr:`_Spec.needs`."""
    if e.missing:
        return ApiError(404, "not_found", f"no ticket {ticket_id}")
    if e.current is None:
        return ApiError(409, "conflict", str(e))
    return ApiError(
        409,
        "conflict",
        f"Cannot {what.format(n=e.number)}: it is {_STATUS_WORDS[e.current]}. {needs}",
    )


def _required(value: str | None, name: str) -> str:
    # "follow_up_note": the note field, with the follow-up's own words for what is missing.
    if value is None or not value.strip():
        raise invalid_parameter(name.removeprefix("follow_up_"), _MISSING[name], "body")
    return value.strip()


_MISSING = {
    "note": "a note is required: for resolve, what was done; for close, how it was verified",
    "reason": "a reason is required",
    "resume_at": "the expected resume time is required (ISO 8601, e.g. 2024-03-04T09:00)",
    "assignee": "say who the ticket is assigned to",
    "follow_up_note": "a note is required: what the requester said when called back",
}


# -- opening a ticket by hand -----------------------------------------------------------------
_SOURCE_HELP = (
    "One or more sources, comma-separated: " + ", ".join(TICKET_SOURCES) + " (tenant: repair "
    "requests from tenants, which need a follow-up call before closing)"
)
# A person picks the priority; the severity recorded with it reads the same way (T1).
_SEVERITY_OF: dict[Priority, str] = {"P1": "critical", "P2": "major", "P3": "minor"}


class TicketCreateIn(BaseModel):
    """POST /api/v1/tickets."""

    title: str = Field(min_length=1, max_length=300, description="What is wrong, in a line")
    device: str = Field(
        max_length=64, description="A configured device id; the ticket's building is its"
    )
    fault_class: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Fault class (letters, digits, '_', '-', '.'; at most 64), e.g. "
        "'door_fault'; a device's open ticket of the same class takes the report (D4)",
    )
    priority: Priority = Field(default="P3", description="P1 (most urgent) .. P3")
    note: str = Field(default="", max_length=2000, description="What was reported, details")
    source: Literal["manual", "tenant"] = Field(
        default="manual",
        description="manual: a technician found it; tenant: a tenant's repair request (报修), "
        "which needs a follow-up call (回访) before it can be closed",
    )
    requester: str | None = Field(
        default=None,
        max_length=REQUESTER_MAX,
        description="Required for tenant: the tenant's name, unit and phone as one line",
    )


def _parse_new_ticket(body: dict[str, Any], ctx: Context) -> TicketCreateIn:
    """The body as a :class:`TicketCreateIn`, or one 400 naming every bad field: the shape
    checks and the ones that need the site (a configured device, a tenant's requester)."""
    details: list[ErrorDetail] = []
    spec: TicketCreateIn | None = None
    try:
        spec = TicketCreateIn.model_validate(body)
    except ValidationError as e:
        for err in e.errors():
            loc = [str(x) for x in err.get("loc", ())]
            details.append(
                ErrorDetail(parameter=loc[0] if loc else None, location="body", message=err["msg"])
            )
    bad = {d.parameter for d in details}

    def check(name: str, ok: bool, message: str) -> None:
        if name not in bad and not ok:
            details.append(ErrorDetail(parameter=name, location="body", message=message))
            bad.add(name)

    title, device, source = body.get("title"), body.get("device"), body.get("source", "manual")
    requester = body.get("requester")
    check("title", not isinstance(title, str) or bool(title.strip()), "the title is empty")
    check(
        "device",
        not isinstance(device, str) or device in ctx.devices,
        f"no configured device {device!r}",
    )
    check(
        "requester",
        source != "tenant" or (isinstance(requester, str) and bool(requester.strip())),
        "a tenant's repair request needs the requester: name, unit and phone",
    )
    if details or spec is None:
        names = sorted({d.parameter for d in details if d.parameter})
        plural = "s" if len(names) > 1 else ""
        raise ApiError(
            400, "invalid_parameter", f"invalid parameter{plural}: {', '.join(names)}", details
        )
    return spec.model_copy(
        update={
            "title": spec.title.strip(),
            "note": spec.note.strip(),
            "requester": spec.requester.strip() if spec.requester else None,
        }
    )
