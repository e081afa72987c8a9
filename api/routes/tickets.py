"""GET /api/v1/tickets and /api/v1/tickets/{id}: the work orders alerts opened."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from alerts.tickets import MAX_PAGE, OPEN_STATUSES, TicketRecord, TicketStatus
from api.context import Context
from api.errors import ApiError, invalid_parameter

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

    return r
