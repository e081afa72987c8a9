"""GET /api/v1/tickets and /api/v1/tickets/{id}: the work orders alerts opened; POST
/api/v1/tickets/{id}/{action}: the people working them move them along their lifecycle
(../shared/alerting-semantics.md T2, T3, T5); GET /api/v1/me: who a token is and what it may do.

Technicians accept (acknowledge), report arrival, start, hold, resume and resolve; managers and
admins also assign, close and cancel; viewers only read. Every action is an event whose ``who``
is the token's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from alerts.tickets import (
    MAX_PAGE,
    OPEN_STATUSES,
    TICKET_MOVES,
    TicketRecord,
    TicketStatus,
    TicketTransitionError,
)
from api.auth import Principal, current_principal, require_role
from api.context import Context
from api.errors import ApiError, ErrorResponse, invalid_parameter
from api.routes.reports import parse_when

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
    occurrences: int = Field(description="Alert episodes on this ticket")
    source_alert_id: int | None


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


def next_page(request: Request, total: int, limit: int, offset: int) -> str | None:
    """The next page's link: this request with ``offset`` moved on; relative, so it stays
    right behind a proxy that rewrites the host."""
    if offset + limit >= total:
        return None
    url = request.url.include_query_params(limit=limit, offset=offset + limit)
    return f"{url.path}?{url.query}"


def _out(t: TicketRecord, now: datetime) -> dict[str, object]:
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


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["tickets"])

    @r.get("/tickets", response_model=TicketPageOut, summary="Tickets, newest first")
    def tickets(
        request: Request,
        status: Annotated[str | None, Query(description=_STATUS_HELP)] = None,
        device: Annotated[str | None, Query(description="Device id")] = None,
        building: Annotated[str | None, Query(description="Building id")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size")] = 50,
        offset: Annotated[int, Query(ge=0, description="Tickets to skip")] = 0,
    ) -> TicketPageOut:
        page = ctx.tickets.list_tickets(
            status=_statuses(status) if status else None,
            device=device,
            building=building,
            limit=limit,
            offset=offset,
        )
        now = ctx.clock()
        return TicketPageOut.model_validate(
            {
                "items": [_out(t, now) for t in page.items],
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
                "next": next_page(request, page.total, page.limit, page.offset),
            }
        )

    @r.get(
        "/tickets/{ticket_id}",
        response_model=TicketDetailOut,
        summary="One ticket with its events",
        responses={404: {"description": "No such ticket"}},
    )
    def ticket(ticket_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> TicketDetailOut:
        detail = ctx.tickets.get_ticket(ticket_id)
        if detail is None:
            raise ApiError(404, "not_found", f"no ticket {ticket_id}")
        events = [
            {"at": e.at, "who": e.who, "kind": e.kind, "note": e.note, "alert_id": e.alert_id}
            for e in detail.events
        ]
        return TicketDetailOut.model_validate(
            {**_out(detail.ticket, ctx.clock()), "events": events}
        )

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
                case _:  # pragma: no cover - ACTIONS and this match are kept together
                    raise AssertionError(spec.kind)
        except TicketTransitionError as e:
            if e.missing:
                raise ApiError(404, "not_found", f"no ticket {ticket_id}") from None
            if e.current is None:
                raise ApiError(409, "conflict", str(e)) from None
            raise ApiError(
                409,
                "conflict",
                f"Cannot {spec.what.format(n=e.number)}: it is {_STATUS_WORDS[e.current]}. "
                f"{spec.needs}",
            ) from None
        return ticket(ticket_id)

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
    + "\n\nBody fields: `note` (required by `resolve`: what was done, and by `close`: the "
    "verification), `reason` (`hold`, `cancel`), `resume_at` (`hold`: expected resume, ISO 8601, "
    "site-local without an offset), `assignee` (`assign`). Invalid in the ticket's status: 409."
)


class TicketActionIn(BaseModel):
    note: str = Field(
        default="",
        max_length=2000,
        description="resolve: what was done (required); close: the verification (required); "
        "any other action: an optional remark",
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


def _required(value: str | None, name: str) -> str:
    if value is None or not value.strip():
        raise invalid_parameter(name, _MISSING[name], "body")
    return value.strip()


_MISSING = {
    "note": "a note is required: for resolve, what was done; for close, how it was verified",
    "reason": "a reason is required",
    "resume_at": "the expected resume time is required (ISO 8601, e.g. 2024-03-04T09:00)",
    "assignee": "say who the ticket is assigned to",
}
