"""GET /api/v1/tickets/{id}/notifications: the paging outbox of one ticket, filled by a real
Pager over a real SQLite ticket database and delivered to a real HTTP receiver on loopback.
Time is stepped through ``now=``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from alerts.tickets import TicketRequest
from api import create_app
from store.embedded import EmbeddedStore
from tests.alerts.test_paging import T0, open_ticket, pager_for, paging_config
from tests.fixtures.receiver import Receiver

TOKEN = "notifications-viewer-token"


@pytest.fixture
def tickets(tmp_path: Path) -> Iterator[TicketStore]:
    store = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    yield store
    store.close()


def _get(client: TestClient, path: str, token: str | None = TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get(path, headers=headers)


def test_a_ticket_lists_who_was_paged_how_and_whether_it_arrived(
    tickets: TicketStore, receiver: Receiver
) -> None:
    config = paging_config(receiver.url)
    pager = pager_for(config, tickets)
    tid = open_ticket(tickets, T0)
    quiet = tickets.open_or_add_occurrence(
        TicketRequest("pm-1 电压过低", "pm-1", "A", "power_quality", "minor"), T0
    ).id
    pager.escalate(T0)
    assert asyncio.run(pager.deliver(T0)) == 1
    later = T0 + timedelta(minutes=5)
    pager.escalate(later)  # nobody acknowledged: the supervisor
    receiver.script = [500]
    assert asyncio.run(pager.deliver(later)) == 0

    store = EmbeddedStore(":memory:")
    app = create_app(config, store, tickets, tokens={TOKEN: "viewer"}, clock=lambda: later)
    try:
        with TestClient(app) as client:
            resp = _get(client, f"/api/v1/tickets/{tid}/notifications")
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["ticket_id"] == tid
            page, escalation = body["items"]
            assert page == {
                "id": page["id"],
                "kind": "page",
                "recipient": "li-na",
                "recipient_name": "李娜",
                "channel": "pager",
                "channel_type": "webhook",
                "status": "sent",
                "attempts": 1,
                "created_at": page["created_at"],
                "sent_at": page["sent_at"],
                "last_error": None,
            }
            assert page["sent_at"] is not None
            assert escalation["kind"] == "escalation"
            assert escalation["recipient_name"] == "Supervisor Zhao"
            assert escalation["status"] == "pending"  # retried later
            assert escalation["attempts"] == 1
            assert escalation["sent_at"] is None
            assert "500" in escalation["last_error"]

            # A ticket nobody was paged about: an empty list, not an error.
            empty = _get(client, f"/api/v1/tickets/{quiet}/notifications").json()
            assert empty == {"ticket_id": quiet, "items": []}

            missing = _get(client, "/api/v1/tickets/9999/notifications")
            assert missing.status_code == 404
            assert missing.json()["error"]["message"] == "no ticket 9999"
            assert _get(client, f"/api/v1/tickets/{tid}/notifications", None).status_code == 401
            assert _get(client, "/api/v1/tickets/0/notifications").status_code == 400
    finally:
        store.close()
