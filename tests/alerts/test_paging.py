"""Escalation chains and the notification outbox (E1-E8, D3 of
../shared/alerting-semantics.md) on a real ticket database (SQLite file and PostgreSQL), paging
a real HTTP receiver on loopback. Time is stepped through ``now=``; nothing sleeps."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts import TicketStatus, TicketStore
from alerts.paging import Pager
from alerts.tickets import TicketRequest
from config.loader import ConfigError, load_config_text
from config.models import SiteConfig
from tests.alerts.test_engine import site_config
from tests.fixtures.receiver import Receiver

# 10:00 in Shanghai: inside the day rotation's hours.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SECRET = "s3cret-hmac-key"


def paging_config(url: str, chains: list[dict[str, Any]] | None = None, **esc: Any) -> SiteConfig:
    return site_config(
        channels=[
            {"id": "pager", "type": "webhook", "url": url, "secret_env": "FACMON_TEST_HOOK_KEY"}
        ],
        oncall={
            "people": [
                {"id": "li-na", "name": "李娜", "phone": "13800000001", "contacts": ["pager"]},
                {"id": "wang", "name": "王强", "contacts": ["pager"], "language": "en"},
                {"id": "boss", "name": "Supervisor Zhao", "contacts": ["pager"]},
            ],
            "rotations": [
                {
                    "id": "primary",
                    "name": "值班",
                    "members": ["li-na", "wang"],
                    "handoff": "weekly",
                    "handoff_time": "09:00",
                    "start": "2026-03-02",
                }
            ],
            "fallback": "boss",
        },
        escalation={
            "chains": chains
            if chains is not None
            else [
                {
                    "id": "urgent",
                    "match": {"priorities": ["P1"]},
                    "steps": [
                        {"notify": {"rotation": "primary"}},
                        {"wait": "5m"},
                        {"notify": {"person": "boss"}},
                        {"wait": "10m"},
                        {"repeat": {"times": "until_ack"}},
                    ],
                }
            ],
            **esc,
        },
    )


def open_ticket(store: TicketStore, at: datetime, severity: str = "critical") -> int:
    req = TicketRequest(
        title="el-1 名称: 电梯困人",
        device="el-1",
        building="A",
        fault_class="entrapment",
        severity=severity,
        note="entrapment = 1",
    )
    return store.open_or_add_occurrence(req, at).id


@pytest.fixture
def store(db_url: str) -> Any:
    s = TicketStore(db_url)
    yield s
    s.close()


def pager_for(config: SiteConfig, store: TicketStore) -> Pager:
    return Pager(config, store, env={"FACMON_TEST_HOOK_KEY": SECRET})


def events(store: TicketStore, ticket_id: int) -> list[str]:
    detail = store.get_ticket(ticket_id)
    assert detail is not None
    return [e.kind for e in detail.events]


def step(pager: Pager, now: datetime) -> int:
    pager.escalate(now)
    return asyncio.run(pager.deliver(now))


def test_page_escalate_and_stop_on_acknowledge(store: TicketStore, receiver: Receiver) -> None:
    config = paging_config(receiver.url)
    pager = pager_for(config, store)
    tid = open_ticket(store, T0)

    assert step(pager, T0) == 1
    [page] = receiver.bodies()
    assert page["kind"] == "page"
    assert page["recipient"]["id"] == "li-na"  # first week of the rotation
    assert page["ticket"]["priority"] == "P1"
    assert page["link"].endswith(f"/console/tickets/{tid}")
    # Signed as the webhook channel documents it (verified by the channel's own helper).
    from alerts.channels import verify_webhook_signature

    req = receiver.requests[0]
    assert verify_webhook_signature(
        SECRET,
        req.headers["X-Facmon-Timestamp"],
        req.body,
        req.headers["X-Facmon-Signature"],
    )
    assert req.headers["Idempotency-Key"] == page["idempotency_key"]

    # Nobody acknowledges: nothing more before the wait ends, the supervisor at 5 minutes.
    assert step(pager, T0 + timedelta(minutes=4, seconds=59)) == 0
    assert step(pager, T0 + timedelta(minutes=5)) == 1
    assert receiver.bodies()[-1]["recipient"]["id"] == "boss"
    assert receiver.bodies()[-1]["kind"] == "escalation"

    # Li Na accepts: the chain stops at once (E2), no repeat at 15 minutes.
    store.accept_ticket(tid, T0 + timedelta(minutes=6), "li-na")
    assert step(pager, T0 + timedelta(minutes=16)) == 0
    kinds = events(store, tid)
    assert kinds[:6] == ["created", "paged", "delivered", "escalated", "delivered", "accepted"]
    assert len(receiver.requests) == 2


def test_critical_repeats_until_acknowledged(store: TicketStore, receiver: Receiver) -> None:
    """E8: the chain goes round again and again until someone acknowledges."""
    config = paging_config(receiver.url)
    pager = pager_for(config, store)
    tid = open_ticket(store, T0)
    for minute in (0, 5, 15, 20, 30, 35):
        step(pager, T0 + timedelta(minutes=minute))
    who = [b["recipient"]["id"] for b in receiver.bodies()]
    assert who == ["li-na", "boss", "li-na", "boss", "li-na", "boss"]
    assert events(store, tid).count("repaged") == 4
    # Every message has its own idempotency key (D3).
    assert len({b["idempotency_key"] for b in receiver.bodies()}) == 6


def test_bounded_repeat_then_finished(store: TicketStore, receiver: Receiver) -> None:
    chains = [
        {
            "id": "normal",
            "steps": [
                {"notify": {"person": "wang"}},
                {"wait": "30m"},
                {"repeat": {"times": 1}},
            ],
        }
    ]
    pager = pager_for(paging_config(receiver.url, chains), store)
    tid = open_ticket(store, T0, severity="major")
    for minute in (0, 30, 60, 90):
        step(pager, T0 + timedelta(minutes=minute))
    assert len(receiver.requests) == 2
    assert receiver.bodies()[0]["text"]  # rendered in Wang's language (en)
    assert "paging_finished" in events(store, tid)


def test_resolved_message_reaches_everyone_paged(store: TicketStore, receiver: Receiver) -> None:
    pager = pager_for(paging_config(receiver.url), store)
    tid = open_ticket(store, T0)
    step(pager, T0)
    step(pager, T0 + timedelta(minutes=5))
    store.resolve_ticket(tid, T0 + timedelta(minutes=7), "li-na", "passenger released")
    step(pager, T0 + timedelta(minutes=7))
    resolved = [b for b in receiver.bodies() if b["kind"] == "resolved"]
    assert sorted(b["recipient"]["id"] for b in resolved) == ["boss", "li-na"]
    # Closing afterwards sends nothing more.
    store.close_ticket(tid, T0 + timedelta(minutes=9), "boss", "checked on site")
    assert step(pager, T0 + timedelta(minutes=30)) == 0


def test_unacknowledged_when_nobody_arrives(store: TicketStore, receiver: Receiver) -> None:
    """E3: an accepted ticket without arrival gets a reminder after the class's ack timeout,
    then loses its acknowledgement and paging starts again."""
    config = paging_config(receiver.url, ack_timeouts={"entrapment": "15m"})
    pager = pager_for(config, store)
    tid = open_ticket(store, T0)
    step(pager, T0)
    store.accept_ticket(tid, T0 + timedelta(minutes=1), "li-na")
    step(pager, T0 + timedelta(minutes=1))
    assert step(pager, T0 + timedelta(minutes=15)) == 0
    assert step(pager, T0 + timedelta(minutes=16)) == 1
    assert receiver.bodies()[-1]["kind"] == "reminder"
    assert receiver.bodies()[-1]["recipient"]["id"] == "li-na"
    step(pager, T0 + timedelta(minutes=31))
    detail = store.get_ticket(tid)
    assert detail is not None
    assert detail.ticket.status is TicketStatus.NEW
    kinds = [e.kind for e in detail.events]
    assert "ack_reminder" in kinds and "unacknowledged" in kinds
    assert receiver.bodies()[-1]["kind"] == "page"  # the chain restarted

    # Arriving on site in time ends the watch quietly.
    store.accept_ticket(tid, T0 + timedelta(minutes=32), "wang")
    store.record_arrival(tid, T0 + timedelta(minutes=40), "wang")
    n = len(receiver.requests)
    step(pager, T0 + timedelta(hours=2))
    assert len(receiver.requests) == n


def test_retry_then_give_up(store: TicketStore, receiver: Receiver) -> None:
    receiver.script = [503, 503]
    config = paging_config(receiver.url, retry_for="1m")
    pager = pager_for(config, store)
    tid = open_ticket(store, T0)
    assert step(pager, T0) == 0  # 503: retried later
    assert step(pager, T0 + timedelta(seconds=4)) == 0  # backoff not over
    assert step(pager, T0 + timedelta(seconds=5)) == 0  # second 503
    assert step(pager, T0 + timedelta(seconds=15)) == 1
    [n] = [x for x in pager.notifications(tid) if x.recipient == "li-na"]
    assert n.status == "sent" and n.attempts == 3
    # The same message each time: the receiver de-duplicates by its key.
    assert len({r.headers["Idempotency-Key"] for r in receiver.requests}) == 1

    receiver.script = [400]
    step(pager, T0 + timedelta(minutes=5))  # supervisor: a 400 is not worth retrying
    assert "delivery_failed" in events(store, tid)
    assert pager.failed == 1


def test_silence_stops_the_chain(store: TicketStore, receiver: Receiver) -> None:
    """E2: a maintenance window over the device stops paging at the next step."""
    from alerts.silences import Matchers, SilenceStore

    pager = pager_for(paging_config(receiver.url), store)
    tid = open_ticket(store, T0)
    step(pager, T0)
    SilenceStore(store).create(
        Matchers(devices=("el-1",)),
        starts_at=T0 + timedelta(minutes=1),
        ends_at=T0 + timedelta(hours=2),
        created_by="boss",
        comment="annual inspection",
        now=T0 + timedelta(minutes=1),
        purpose="maintenance",
    )
    assert step(pager, T0 + timedelta(minutes=5)) == 0
    detail = store.get_ticket(tid)
    assert detail is not None
    [why] = [e.note for e in detail.events if e.kind == "paging_suppressed"]
    assert "maintenance window" in why and "annual inspection" in why


def test_shelved_alert_pages_nobody(store: TicketStore, receiver: Receiver) -> None:
    """E2, A11: a ticket whose alert is shelved starts no chain."""
    from alerts.tickets import AlertState, NewAlert

    pager = pager_for(paging_config(receiver.url), store)
    new = NewAlert("fp-1", "entrapment", "riverside", "A", "el-1", "entrapment", "critical")
    alert, _ = store.start_alert(new, AlertState.PENDING, T0, 1.0)
    store.shelve_alert(
        alert.id,
        "boss",
        "sensor being replaced",
        T0 + timedelta(hours=1),
        T0,
        max_shelve=timedelta(hours=24),
    )
    current = store.unresolved_alert("fp-1")
    assert current is not None
    req = TicketRequest("el-1: 困人", "el-1", "A", "entrapment", "critical")
    _, ticket = store.fire_alert(current, T0 + timedelta(seconds=1), 1.0, req)
    step(pager, T0 + timedelta(seconds=1))
    assert receiver.requests == []
    detail = store.get_ticket(ticket.id)
    assert detail is not None
    assert any("shelved by boss" in e.note for e in detail.events if e.kind == "paging_suppressed")


def test_no_chain_matches(store: TicketStore, receiver: Receiver) -> None:
    chains = [
        {
            "id": "p1-only",
            "match": {"priorities": ["P1"]},
            "steps": [{"notify": {"person": "boss"}}],
        }
    ]
    pager = pager_for(paging_config(receiver.url, chains), store)
    tid = open_ticket(store, T0, severity="minor")
    step(pager, T0)
    assert "paging_skipped" in events(store, tid)
    assert receiver.requests == []


def test_only_between_waits_for_the_window(store: TicketStore, receiver: Receiver) -> None:
    chains = [
        {
            "id": "office-hours",
            "steps": [{"only_between": "08:00-18:00"}, {"notify": {"person": "wang"}}],
        }
    ]
    pager = pager_for(paging_config(receiver.url, chains), store)
    night = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    open_ticket(store, night, severity="minor")
    assert step(pager, night) == 0
    assert step(pager, datetime(2026, 3, 2, 23, 59, tzinfo=UTC)) == 0  # 07:59 local
    assert step(pager, datetime(2026, 3, 3, 0, 0, tzinfo=UTC)) == 1  # 08:00 local


def test_restart_continues_the_chain_without_repeating(db_url: str, receiver: Receiver) -> None:
    """E5, A13: a pager that dies after queueing the first page (before sending it) is
    replaced; the page goes out once and the escalation comes on time."""
    config = paging_config(receiver.url)
    first = TicketStore(db_url)
    tid = open_ticket(first, T0)
    pager_for(config, first).escalate(T0)  # queued, then the process "dies"
    first.close()

    again = TicketStore(db_url)
    try:
        pager = pager_for(config, again)
        assert step(pager, T0 + timedelta(seconds=2)) == 1
        assert step(pager, T0 + timedelta(minutes=5)) == 1
        assert [b["recipient"]["id"] for b in receiver.bodies()] == ["li-na", "boss"]
        assert events(again, tid).count("paged") == 1
    finally:
        again.close()


def test_two_pagers_share_the_work(store: TicketStore, db_url: str, receiver: Receiver) -> None:
    """Two pagers on one database, stepping at the same instant: each step runs once."""
    config = paging_config(receiver.url)
    other = TicketStore(db_url)
    try:
        tid = open_ticket(store, T0)
        pagers = [pager_for(config, store), pager_for(config, other)]
        barrier = threading.Barrier(2)

        def run(p: Pager) -> None:
            barrier.wait()
            p.escalate(T0)

        threads = [threading.Thread(target=run, args=(p,)) for p in pagers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(pagers[0].notifications(tid)) == 1
        assert events(store, tid).count("paged") == 1
    finally:
        other.close()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"wait": "5m"}], "at least one 'notify'"),
        ([{"notify": {"person": "li-na"}}, {"repeat": {"times": 2}}], "need a 'wait'"),
        (
            [
                {"notify": {"person": "li-na"}},
                {"wait": "1m"},
                {"repeat": {"times": "until_ack"}},
                {"notify": {"person": "boss"}},
            ],
            "unreachable",
        ),
        ([{"notify": {"person": "nobody"}}], "unknown person 'nobody'"),
        ([{"notify": {"person": "mute"}}], "mute has no contact method"),
        ([{"notify": {"person": "li-na"}}, {"wait": "1m"}], "delays nothing"),
    ],
)
def test_chain_validation_names_the_line(steps: list[Any], message: str) -> None:
    """E7: saving a chain validates it, and the error points at the file and line."""
    text = f"""
site: {{id: s, name: S}}
buildings: [{{id: A, name: A}}]
channels:
  - {{id: pager, type: webhook, url: "http://127.0.0.1:9/hook"}}
oncall:
  people:
    - {{id: li-na, name: Li, contacts: [pager]}}
    - {{id: boss, name: Boss, contacts: [pager]}}
    - {{id: mute, name: Mute}}
escalation:
  chains:
    - id: c
      steps: {steps!r}
"""
    with pytest.raises(ConfigError) as e:
        load_config_text(text.replace("'", '"'), "site.yaml")
    out = str(e.value)
    # Flow style puts every step on the steps line: the problem is reported on it.
    line = text.splitlines().index(f"      steps: {steps!r}") + 1
    [problem] = [p for p in out.splitlines() if message in p]
    assert problem.startswith(f"site.yaml:{line} escalation.chains[0].steps"), out


def test_a_storm_pages_once_per_person(store: TicketStore, receiver: Receiver) -> None:
    """D5: five meters of one building failing together make five tickets but one message
    to the technician; each ticket's timeline still shows its delivery."""
    chains = [{"id": "standard", "steps": [{"notify": {"person": "wang"}}]}]
    pager = pager_for(paging_config(receiver.url, chains), store)
    ids = [
        store.open_or_add_occurrence(
            TicketRequest(f"pm-{i}: 通信中断", f"pm-{i}", "A", "communication_loss", "major"), T0
        ).id
        for i in range(5)
    ]
    assert step(pager, T0) == 5
    [body] = receiver.bodies()
    assert body["subject"] and body["ticket"]["number"].count("WO-") == 5
    for tid in ids:
        detail = store.get_ticket(tid)
        assert detail is not None
        [note] = [e.note for e in detail.events if e.kind == "delivered"]
        assert "one message for 5 tickets" in note

    # Without grouping, one message per ticket.
    other = pager_for(paging_config(receiver.url, chains, group_messages=False), store)
    more = [
        store.open_or_add_occurrence(
            TicketRequest(f"pm-{i}: 通信中断", f"pm-{i}", "B", "communication_loss", "major"),
            T0 + timedelta(minutes=1),
        ).id
        for i in range(5, 8)
    ]
    assert step(other, T0 + timedelta(minutes=1)) == 3
    assert len(receiver.requests) == 1 + len(more)


def test_preventive_work_pages_nobody(store: TicketStore, receiver: Receiver) -> None:
    chains = [{"id": "standard", "steps": [{"notify": {"person": "wang"}}]}]
    pager = pager_for(paging_config(receiver.url, chains), store)
    req = TicketRequest("el-1: 半月维保", "el-1", "A", "preventive:lift-15d", "minor")
    tid = store.open_or_add_occurrence(req, T0).id
    step(pager, T0)
    # Accepted and nobody on site for hours: planned work gets no arrival reminder either.
    store.accept_ticket(tid, T0 + timedelta(minutes=1), "wang")
    step(pager, T0 + timedelta(minutes=2))
    step(pager, T0 + timedelta(hours=3))
    assert receiver.requests == []
    assert "paging_skipped" in events(store, tid)
