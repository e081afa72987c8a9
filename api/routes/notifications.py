"""GET /api/v1/tickets/{id}/notifications: the pages, escalations, reminders and "resolved"
messages queued or sent about a ticket (the paging outbox, alerts/paging.py), oldest first.

Viewers read it: it answers "who was told, how, and did it arrive" next to the ticket's
timeline. Recipients and channels are ids in the outbox; the site config's on-call people and
channels give their display name and channel type (an id no longer in the config is shown as
it is). Message bodies are not returned: they repeat the ticket and carry contact details.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from alerts.paging import NotificationRecord, list_notifications
from api.context import Context
from api.errors import ApiError, ErrorResponse


class NotificationOut(BaseModel):
    id: int
    kind: str = Field(description="page, escalation, reminder or resolved")
    recipient: str = Field(description="Person id (oncall.people), or the webhook channel id")
    recipient_name: str = Field(description="The person's display name, else the id")
    channel: str = Field(description="Channel id (channels)")
    channel_type: str | None = Field(
        description="The channel's type (webhook, wecom, email, ...); null if no longer configured"
    )
    status: str = Field(description="pending (queued or retrying), sent or failed (gave up)")
    attempts: int = Field(description="Delivery attempts so far")
    created_at: datetime = Field(description="When it was queued")
    sent_at: datetime | None = Field(description="When it was delivered")
    last_error: str | None = Field(description="Why the last attempt failed, if it did")


class NotificationListOut(BaseModel):
    ticket_id: int
    items: list[NotificationOut]


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["tickets"])
    people = {p.id: p.name for p in ctx.config.oncall.people}
    channel_types = {c.id: c.type for c in ctx.config.channels}

    def out(n: NotificationRecord) -> NotificationOut:
        return NotificationOut(
            id=n.id,
            kind=n.kind,
            recipient=n.recipient,
            recipient_name=people.get(n.recipient, n.recipient),
            channel=n.channel,
            channel_type=channel_types.get(n.channel),
            status=n.status,
            attempts=n.attempts,
            created_at=n.created_at,
            sent_at=n.sent_at,
            last_error=n.last_error,
        )

    @r.get(
        "/tickets/{ticket_id}/notifications",
        response_model=NotificationListOut,
        summary="Messages queued or sent about a ticket (paging), oldest first",
        responses={404: {"model": ErrorResponse, "description": "No such ticket"}},
    )
    def notifications(
        ticket_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    ) -> NotificationListOut:
        if ctx.tickets.get_ticket(ticket_id) is None:
            raise ApiError(404, "not_found", f"no ticket {ticket_id}")
        items = [out(n) for n in list_notifications(ctx.tickets, ticket_id)]
        return NotificationListOut(ticket_id=ticket_id, items=items)

    return r
