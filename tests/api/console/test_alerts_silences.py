"""The console's alerts and silences pages and the ticket page's paging section and reopen
button, in a real browser (Debian's chromium) against the live app with an escalation chain
configured. A real Pager queues the pages at the fixed NOW; nothing is delivered (the webhook
points at a closed loopback port and ``deliver`` is never called), so messages stay pending."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from alerts import TicketStore
from alerts.paging import Pager
from alerts.tickets import TicketRecord
from api import create_app
from store.embedded import EmbeddedStore
from tests.api.conftest import NOW, site_config
from tests.api.console.conftest import MANAGER, TECH, VIEWER, Site
from tests.api.console.test_console import _TAP_CHECK, _sign_in
from tests.fixtures.browser import DESKTOP, serve_app

NewPage = Callable[..., Page]


@pytest.fixture(scope="module")
def paging_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Pager]]:
    tmp: Path = tmp_path_factory.mktemp("console-paging")
    cfg = site_config(
        api={
            "tokens": [
                {"name": "大堂显示屏", "token": VIEWER, "role": "viewer"},
                {"name": "王师傅", "token": TECH, "role": "technician"},
                {"name": "李主管", "token": MANAGER, "role": "manager"},
            ]
        },
        channels=[{"id": "pager", "type": "webhook", "url": "http://127.0.0.1:9/hook"}],
        oncall={"people": [{"id": "li-na", "name": "李娜", "contacts": ["pager"]}]},
        escalation={
            "chains": [
                {
                    "id": "urgent",
                    "match": {"priorities": ["P1"]},
                    "steps": [{"notify": {"person": "li-na"}}],
                }
            ]
        },
    )
    store = EmbeddedStore(":memory:")
    tickets = TicketStore(f"sqlite:///{tmp / 'tickets.db'}")
    app = create_app(cfg, store, tickets, clock=lambda: NOW)
    try:
        with serve_app(app) as url:
            yield Site(url, tickets, store), Pager(cfg, tickets, env={})
    finally:
        tickets.close()
        store.close()


@pytest.fixture
def site(paging_site: tuple[Site, Pager]) -> Site:
    return paging_site[0]


def _alert(page: Page, ticket: TicketRecord) -> Any:
    return page.locator(f'li.alert[data-alert-id="{ticket.source_alert_id}"]')


def _post(site: Site, path: str, body: dict[str, Any], token: str = MANAGER) -> Any:
    resp = httpx.post(site.url + path, json=body, headers={"Authorization": f"Bearer {token}"})
    resp.raise_for_status()
    return resp.json()


def test_a_technician_shelves_acknowledges_and_unshelves_an_alert(
    site: Site, new_page: NewPage
) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url)
    _sign_in(page, TECH)
    page.get_by_role("link", name="Alerts").click()
    page.wait_for_url("**/console/alerts")
    expect(page.locator("h1")).to_have_text("Unresolved alerts")
    expect(page.locator("#read-only")).to_be_hidden()
    card = _alert(page, ticket)
    expect(card.locator(".badge")).to_have_text(["Critical", "Firing"])
    expect(card.locator(".device")).to_have_text("el-1")
    expect(card.locator(".title")).to_have_text("lift_fault · fault_code = 5")
    expect(card.locator(".meta").first).to_have_text("A · since 2024-03-03 11:30")
    expect(card.get_by_role("button")).to_have_text(["Acknowledge", "Shelve"])
    expect(card.get_by_role("link", name="Ticket")).to_have_attribute(
        "href", f"/console/tickets/{ticket.id}"
    )

    card.get_by_role("button", name="Shelve").click()
    dialog = page.locator("dialog")
    expect(dialog.locator("h2")).to_have_text(f"Shelve · #{ticket.source_alert_id} el-1")
    # The usual lengths, none beyond the server's tickets.max_shelve (24 h by default).
    expect(dialog.locator("select option")).to_have_text(["1 h", "4 h", "8 h", "24 h"])
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog.locator(".message")).to_have_text("Please fill this in.")
    dialog.get_by_label("Reason").fill("厂家明早到场，先不呼叫")
    dialog.get_by_label("Shelve for").select_option("4h")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#toast")).to_have_text(f"Alert #{ticket.source_alert_id} shelved")
    expect(card.locator(".flags")).to_have_text(
        "Shelved until 2024-03-03 16:00 (王师傅: 厂家明早到场，先不呼叫)"
    )
    expect(card.get_by_role("button")).to_have_text(["Acknowledge", "Unshelve"])
    shelved = site.api(f"/api/v1/alerts/{ticket.source_alert_id}")
    assert shelved["shelved"] and shelved["shelve"]["reason"] == "厂家明早到场，先不呼叫"

    card.get_by_role("button", name="Acknowledge").click()
    expect(card.locator(".flags")).to_contain_text("Acknowledged by 王师傅")
    expect(card.get_by_role("button")).to_have_text(["Unshelve"])
    card.get_by_role("button", name="Unshelve").click()
    expect(page.locator("#toast")).to_have_text(f"Alert #{ticket.source_alert_id} unshelved")
    expect(card.get_by_role("button")).to_have_text(["Shelve"])

    # Filters: the lift is in building A.
    page.locator("#filter-building").select_option("B")
    expect(page.locator("li.hint")).to_have_text("No unresolved alerts match.")
    page.locator("#filter-building").select_option("A")
    page.locator("#filter-state").select_option("PENDING")
    expect(card).to_have_count(0)
    page.locator("#filter-state").select_option("FIRING")
    expect(card).to_have_count(1)


def test_a_manager_creates_and_cancels_a_maintenance_window(site: Site, new_page: NewPage) -> None:
    page = new_page(site.url)
    _sign_in(page, MANAGER)
    page.goto("/console/silences")
    expect(page.locator("#read-only")).to_be_hidden()
    page.locator("#new-silence summary").click()
    form = page.locator("#silence-form")
    form.get_by_role("button", name="Create").click()
    expect(page.locator("#silence-error")).to_have_text(
        "Choose at least one of device, building, device kind or fault class."
    )
    form.get_by_label("Type").select_option("maintenance")
    form.get_by_label("Building").select_option("B")
    form.get_by_label("Start (site time; empty: now)").fill("2024-03-03T11:00")
    form.get_by_label("End (site time)").fill("2024-03-03T10:00")
    form.get_by_label("Comment (why, what work)").fill("B座水泵更换")
    form.get_by_role("button", name="Create").click()
    # The server's own words for what it refused.
    expect(page.locator("#silence-error")).to_contain_text("That did not work: ")
    expect(page.locator("#silence-error")).to_contain_text("end")
    form.get_by_label("End (site time)").fill("2024-03-03T18:00")
    form.get_by_role("button", name="Create").click()
    expect(page.locator("#toast")).to_contain_text("created")
    created = site.api("/api/v1/silences?state=ACTIVE")["items"][0]
    assert created["purpose"] == "maintenance" and created["matchers"]["buildings"] == ["B"]
    assert created["created_by"] == "李主管" and created["comment"] == "B座水泵更换"

    card = page.locator(f'li.silence[data-silence-id="{created["id"]}"]')
    expect(card.locator(".badge")).to_have_text(["Active", "Maintenance window"])
    expect(card.locator(".meta").first).to_have_text("2024-03-03 11:00 to 2024-03-03 18:00")
    expect(card.locator("dt")).to_have_text(["Buildings"])
    expect(card.locator("dd")).to_have_text(["B"])
    expect(page.locator("#new-silence")).not_to_have_attribute("open", "")

    card.get_by_role("button", name="Cancel silence").click()
    page.locator("dialog").get_by_role("button", name="Confirm").click()
    expect(page.locator("#toast")).to_have_text(f"Silence #{created['id']} cancelled")
    expect(card).to_have_count(0)  # no longer active or pending
    page.locator("#filter-state").select_option("CANCELLED")
    expect(card.locator(".badge").first).to_have_text("Cancelled")
    expect(card.locator(".meta").last).to_have_text(
        "by 李主管 · cancelled by 李主管 at 2024-03-03 12:00"
    )
    expect(card.get_by_role("button")).to_have_count(0)


def test_a_viewer_sees_no_action_buttons(site: Site, new_page: NewPage) -> None:
    ticket = site.open_ticket()
    site.tickets.resolve_ticket(ticket.id, NOW, "王师傅", "复位")
    other = site.open_ticket()
    _post(
        site,
        "/api/v1/silences",
        {"matchers": {"devices": ["pm-1"]}, "duration": "2h", "comment": "校表"},
    )
    page = new_page(site.url)
    _sign_in(page, VIEWER)
    page.goto("/console/alerts")
    expect(page.locator("#read-only")).to_have_text(
        "Read-only token: you can view alerts but not act on them."
    )
    expect(_alert(page, other).locator(".device")).to_have_text("el-1")
    expect(page.locator("#alerts").get_by_role("button")).to_have_count(0)

    page.goto("/console/silences")
    expect(page.locator("#read-only")).to_have_text("Only managers can create or cancel silences.")
    expect(page.locator("li.silence").first).to_be_visible()
    expect(page.locator("#new-silence")).to_be_hidden()
    expect(page.locator("#silences").get_by_role("button")).to_have_count(0)

    page.goto(f"/console/tickets/{ticket.id}")
    expect(page.locator("#ticket h1")).to_have_text(f"{ticket.number} · Resolved")
    expect(page.locator("#ticket").get_by_role("button")).to_have_count(0)  # no reopen


def test_the_ticket_page_shows_paging_and_a_manager_reopens_in_chinese(
    paging_site: tuple[Site, Pager], new_page: NewPage
) -> None:
    site, pager = paging_site
    ticket = site.open_ticket()
    pager.escalate(NOW)
    page = new_page(site.url, viewport=DESKTOP)
    _sign_in(page, MANAGER, english=False)
    page.goto(f"/console/tickets/{ticket.id}")
    paging = page.locator("#paging")
    expect(paging.locator("h2")).to_have_text("呼叫通知")
    note = paging.locator("li.notification")
    expect(note.locator(".who-paged")).to_have_text(["李娜"])
    expect(note.locator(".badge")).to_have_text(["待发送"])
    expect(note.locator(".when")).to_have_text(["呼叫 · 经 pager · 2024-03-03 12:00"])
    expect(page.locator("li.event .kind")).to_have_text(["创建", "已呼叫", "升级结束"])
    # Beside the timeline on a wide screen.
    timeline = page.locator("section.timeline").bounding_box()
    box = paging.bounding_box()
    assert timeline is not None and box is not None and box["x"] > timeline["x"]

    site.tickets.resolve_ticket(ticket.id, NOW, "王师傅", "复位控制柜")
    page.reload()
    # The resolve told the person paged.
    expect(note.locator(".when")).to_have_text(
        ["呼叫 · 经 pager · 2024-03-03 12:00", "解决通知 · 经 pager · 2024-03-03 12:00"]
    )
    buttons = page.locator("#ticket").get_by_role("button")
    expect(buttons).to_have_text(["关闭", "重新打开"])
    buttons.filter(has_text="重新打开").click()
    dialog = page.locator("dialog")
    dialog.get_by_role("button", name="确定").click()
    expect(dialog.locator(".message")).to_have_text("请填写此项。")
    dialog.get_by_label("重新打开原因（为什么维修没有解决问题）").fill("当晚再次困人")
    dialog.get_by_role("button", name="确定").click()
    expect(page.locator("#toast")).to_have_text(f"{ticket.number} 已重新打开")
    expect(page.locator("#ticket h1")).to_have_text(f"{ticket.number} · 重新打开")
    expect(page.locator("li.event").last.locator(".note")).to_contain_text("当晚再次困人")
    expect(buttons).not_to_contain_text(["重新打开"])


def test_the_new_pages_fit_a_phone_in_chinese(site: Site, new_page: NewPage) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url)  # 390 x 844
    _sign_in(page, MANAGER, english=False)

    def check(ready: str) -> None:
        expect(page.locator(ready).first).to_be_visible()
        width = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{page.url} scrolls sideways: {width}"
        assert page.evaluate(_TAP_CHECK) == [], page.url

    page.goto("/console/alerts")
    expect(page.locator("h1")).to_have_text("未恢复告警")
    card = _alert(page, ticket)
    expect(card.locator(".badge")).to_have_text(["紧急", "告警中"])
    expect(card.get_by_role("button")).to_have_text(["确认", "搁置"])
    check(f'li.alert[data-alert-id="{ticket.source_alert_id}"] button')
    card.get_by_role("button", name="搁置").click()
    expect(page.locator("dialog select option")).to_have_text(
        ["1 小时", "4 小时", "8 小时", "24 小时"]
    )
    check("dialog textarea")
    page.keyboard.press("Escape")

    page.goto("/console/silences")
    expect(page.locator("h1")).to_have_text("静默与维护窗口")
    page.locator("#new-silence summary").click()
    expect(page.locator("#silence-form label").first).to_have_text("类型")
    check("#silence-form textarea")
    page.goto(f"/console/tickets/{ticket.id}")
    check("li.event")
