"""The console's pages as the server sends them (no browser): where they are, what they may
load, and labels for everything in both languages."""

from __future__ import annotations

import json
import re
from typing import get_args

from fastapi.testclient import TestClient

from alerts import AlertState, TicketStore, paging
from alerts.silences import PURPOSES, SilenceState
from alerts.tickets import TICKET_MOVES, TicketStatus
from api import create_app
from api.console.i18n import LABELS, LANGUAGES
from api.routes.tickets import ACTIONS
from config.models import DeviceKind, Severity
from store.embedded import EmbeddedStore
from tests.api.conftest import Api, site_config


def _config(html: str) -> dict[str, object]:
    m = re.search(r'<script type="application/json" id="facmon-config">(.*?)</script>', html, re.S)
    assert m is not None
    return dict(json.loads(m.group(1)))


def test_pages_are_served_without_a_token_and_load_only_their_own_files(api: Api) -> None:
    home = api.client.get("/console", follow_redirects=False)
    assert home.status_code == 307 and home.headers["location"] == "/console/tickets"
    for path in (
        "/console/login",
        "/console/tickets",
        "/console/tickets/7",
        "/console/devices",
        "/console/alerts",
        "/console/silences",
    ):
        resp = api.client.get(path)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "<script>" not in resp.text  # nothing inline: the CSP would block it anyway
    page = api.client.get("/console/tickets/7").text
    assert '<html lang="zh-CN">' in page and "<title>工单详情 · 滨江广场</title>" in page
    cfg = _config(page)
    assert cfg["ticketId"] == 7 and cfg["tz"] == "Asia/Shanghai" and cfg["api"] == "/api/v1"
    for asset in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page):
        got = api.client.get(asset)
        assert got.status_code == 200 and got.content
    assert api.client.get("/console/tickets/abc").status_code == 400


def test_the_site_language_is_the_default_and_a_site_name_cannot_break_out() -> None:
    cfg = site_config(
        site={"id": "x", "name": "</script><script>alert(1)</script>", "language": "en"}
    )
    store = EmbeddedStore(":memory:")
    tickets = TicketStore("sqlite:///:memory:")
    try:
        with TestClient(create_app(cfg, store, tickets, tokens={})) as client:
            html = client.get("/console/login").text
    finally:
        tickets.close()
        store.close()
    assert '<html lang="en">' in html and ">Sign in to the console<" in html
    assert "<script>alert(1)" not in html
    assert _config(html)["site"] == "</script><script>alert(1)</script>"


def test_both_languages_label_every_status_action_event_and_device_kind() -> None:
    assert set(LABELS) == set(LANGUAGES)
    zh, en = (set(LABELS[lang]) for lang in LANGUAGES)
    assert zh == en
    needed = (
        {f"status_{s.value}" for s in TicketStatus}
        | {f"ev_{kind}" for kind in TICKET_MOVES}
        | {"ev_created", "ev_occurrence", "ev_reopened", "ev_condition_cleared"}
        | {f"act_{a}" for a in ACTIONS if a != "acknowledge"}  # the console says accept
        | {f"done_{a}" for a in ACTIONS if a != "acknowledge"}
        | {f"kind_{k}" for k in get_args(DeviceKind)}
        | {f"astate_{s.value}" for s in AlertState if s is not AlertState.INACTIVE}
        | {f"sstate_{s.value}" for s in SilenceState}
        | {f"sev_{s}" for s in get_args(Severity)}
        | {f"purpose_{p}" for p in PURPOSES}
        | {f"nkind_{k}" for k in ("page", "escalation", "reminder", "resolved")}
        | {f"nstatus_{s}" for s in (paging.PENDING, paging.SENT, paging.FAILED)}
        | {"act_reopen", "done_reopen"}
    )
    assert needed <= zh
