"""The web console in a real browser (Debian's chromium) against the live app: signing in,
working a ticket from a phone, the read-only view, the device board, reports and the layout
on a 390 x 844 phone screen."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, Route, expect

from alerts.tickets import TicketRecord, TicketRequest
from tests.api.console.conftest import GRAFANA, MANAGER, TECH, VIEWER, Site
from tests.fixtures.browser import DESKTOP

NewPage = Callable[..., Page]


def _sign_in(page: Page, token: str, *, english: bool = True) -> None:
    page.goto("/console/login")
    if english:
        page.locator("#lang-toggle").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
    page.locator("#token").fill(token)
    page.locator("button[type=submit]").click()
    page.wait_for_url("**/console/tickets")


def _card(page: Page, ticket: TicketRecord) -> Any:
    return page.locator(f'li.ticket[data-ticket-id="{ticket.id}"]')


def test_a_wrong_token_is_refused_and_a_technician_sees_the_open_ticket(
    site: Site, new_page: NewPage
) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url)
    page.goto("/console/tickets")
    page.wait_for_url("**/console/login?next=%2Fconsole%2Ftickets")  # no token yet
    # The site's language (zh-CN) first; the toggle switches and is remembered.
    expect(page.locator("h1")).to_have_text("登录运维控制台")
    page.locator("#token").fill("not-a-token")
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page.locator("#login-message")).to_have_text(
        "令牌错误：服务器不认识这个令牌，请检查后重试。"
    )
    page.locator("#lang-toggle").click()
    expect(page.locator("#login-message")).to_have_text(
        "Wrong token: the server does not recognise it. Check it and try again."
    )
    assert page.evaluate("sessionStorage.getItem('facmon.token')") is None

    page.locator("#token").fill(TECH)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/console/tickets")
    expect(page.locator("h1")).to_have_text("Open tickets")
    expect(page.locator("#who")).to_have_text("王师傅 (technician)")
    card = _card(page, ticket)
    expect(card.locator(".number")).to_have_text(ticket.number)
    expect(card.locator(".title")).to_have_text("el-1 电梯故障")
    expect(card.locator(".status")).to_have_text("New")
    expect(card.locator(".meta")).to_have_text("el-1 · A · Due 2024-03-03 15:30")  # P1: 4 h
    expect(card.get_by_role("button")).to_have_text(["Acknowledge", "Resolve"])
    assert page.evaluate("sessionStorage.getItem('facmon.token')") == TECH

    page.locator("#lang-toggle").click()
    expect(page.locator("h1")).to_have_text("未完成工单")
    expect(card.get_by_role("button")).to_have_text(["受理", "解决"])


def test_a_technician_acknowledges_arrives_and_resolves_with_a_note(
    site: Site, new_page: NewPage
) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url)
    _sign_in(page, TECH)
    card = _card(page, ticket)
    card.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#toast")).to_have_text(f"{ticket.number} acknowledged")
    expect(card.locator(".status")).to_have_text("Accepted")
    expect(card.get_by_role("button")).to_have_text(["Arrived", "Start work", "Resolve"])

    card.get_by_role("button", name="Arrived").click()
    expect(page.locator("#toast")).to_have_text(f"{ticket.number}: arrival recorded")

    card.get_by_role("button", name="Resolve").click()
    dialog = page.locator("dialog")
    expect(dialog.locator("h2")).to_have_text(f"Resolve · {ticket.number}")
    dialog.get_by_role("button", name="Confirm").click()  # no note yet
    expect(dialog.locator(".message")).to_have_text("Please fill this in.")
    dialog.get_by_label("Repair note (what was done)").fill("更换门机板，试运行正常")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#toast")).to_have_text(f"{ticket.number} resolved")
    expect(card).to_have_count(0)  # no longer open: gone from the list

    detail = site.api(f"/api/v1/tickets/{ticket.id}")
    assert detail["status"] == "RESOLVED"
    assert [(e["kind"], e["who"], e["note"]) for e in detail["events"]] == [
        ("created", "facmon", "el-1 电梯故障"),
        ("accepted", "王师傅", ""),
        ("arrived", "王师傅", ""),
        ("resolved", "王师傅", "更换门机板，试运行正常"),
    ]

    # The ticket's page shows that history, in the site's time zone.
    page.goto(f"/console/tickets/{ticket.id}")
    expect(page.locator("#ticket h1")).to_have_text(f"{ticket.number} · Resolved")
    events = page.locator("li.event")
    expect(events.locator(".kind")).to_have_text(
        ["Created", "Acknowledged", "Arrived on site", "Resolved"]
    )
    expect(events.nth(3).locator(".when")).to_have_text("2024-03-03 12:00 · 王师傅")
    expect(events.nth(3).locator(".note")).to_have_text("更换门机板，试运行正常")
    expect(page.locator("#ticket").get_by_role("button")).to_have_count(0)  # close: managers


def test_a_move_someone_else_made_first_is_explained(site: Site, new_page: NewPage) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url)
    _sign_in(page, TECH, english=False)
    card = _card(page, ticket)
    expect(card.get_by_role("button", name="受理")).to_be_visible()
    site.tickets.resolve_ticket(ticket.id, ticket.created_at, "李主管", "远程复位")
    card.get_by_role("button", name="受理").click()
    expect(page.locator("#message")).to_have_text(
        f"{ticket.number} 当前状态为「已解决」，不能执行「受理」。"
    )
    expect(card).to_have_count(0)  # the list caught up


def test_a_viewer_sees_tickets_without_action_buttons(site: Site, new_page: NewPage) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url)
    _sign_in(page, VIEWER)
    expect(page.locator("#who")).to_have_text("大堂显示屏 (viewer)")
    expect(page.locator("#read-only")).to_have_text(
        "Read-only token: you can view tickets but not change them."
    )
    card = _card(page, ticket)
    expect(card.locator(".status")).to_have_text("New")
    expect(card.get_by_role("button")).to_have_count(0)
    card.locator(".number").click()
    page.wait_for_url(f"**/console/tickets/{ticket.id}")
    expect(page.locator("li.event .kind")).to_have_text(["Created"])
    expect(page.locator("#ticket").get_by_role("button")).to_have_count(0)
    # Even a hand-made request is refused, in words.
    refusal = page.evaluate(
        """async (id) => {
            const r = await fetch(`/api/v1/tickets/${id}/accept`, {method: "POST",
              headers: {Authorization: "Bearer " + sessionStorage.getItem("facmon.token")}});
            return [r.status, (await r.json()).error.message];
        }""",
        ticket.id,
    )
    assert refusal == [
        403,
        "the viewer token '大堂显示屏' cannot accept tickets; "
        "that needs the technician role or above",
    ]


def test_a_manager_closes_a_resolved_ticket_from_its_page(site: Site, new_page: NewPage) -> None:
    ticket = site.open_ticket()
    site.tickets.resolve_ticket(ticket.id, ticket.created_at, "王师傅", "复位控制柜")
    page = new_page(site.url, viewport=DESKTOP)
    _sign_in(page, MANAGER)
    page.goto(f"/console/tickets/{ticket.id}")
    buttons = page.locator("#ticket").get_by_role("button")
    expect(buttons).to_have_text(["Close", "Reopen"])  # reopen: tests/.../test_alerts_silences
    buttons.filter(has_text="Close").click()
    page.locator("dialog").get_by_label("Verification note").fill("复查正常")
    page.locator("dialog").get_by_role("button", name="Confirm").click()
    expect(page.locator("#ticket h1")).to_have_text(f"{ticket.number} · Closed")
    expect(page.locator("li.event").last.locator(".when")).to_have_text("2024-03-03 12:00 · 李主管")


def test_the_ticket_page_links_to_the_devices_grafana_panel(site: Site, new_page: NewPage) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url, viewport=DESKTOP)
    _sign_in(page, VIEWER)
    page.goto(f"/console/tickets/{ticket.id}")
    link = page.locator("#ticket a.grafana-link")
    expect(link).to_have_text("Open in Grafana")
    expect(link).to_have_attribute("target", "_blank")
    href = link.get_attribute("href") or ""
    assert href == site.api(f"/api/v1/tickets/{ticket.id}")["grafana_url"]
    assert href.startswith(f"{GRAFANA}/d/fm-riverside-elevators?") and "var-device=el-1" in href
    # A ticket of a device no longer configured has no panel, and no link.
    gone = site.tickets.open_or_add_occurrence(
        TicketRequest("old-1 故障", "old-1", "A", "gone", "minor"), ticket.created_at
    )
    page.goto(f"/console/tickets/{gone.id}")
    expect(page.locator("#ticket h1")).to_contain_text(gone.number)
    expect(page.locator("#ticket a.grafana-link")).to_have_count(0)


def test_a_technician_puts_work_on_hold_from_the_ticket_page(site: Site, new_page: NewPage) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url, viewport=DESKTOP)
    _sign_in(page, TECH)
    page.goto(f"/console/tickets/{ticket.id}")
    buttons = page.locator("#ticket").get_by_role("button")
    expect(buttons).to_have_text(["Acknowledge", "Resolve"])
    buttons.filter(has_text="Acknowledge").click()
    expect(buttons).to_have_text(["Arrived", "Start work", "Resolve"])
    buttons.filter(has_text="Start work").click()
    expect(buttons).to_have_text(["Arrived", "Hold", "Resolve"])
    buttons.filter(has_text="Hold").click()
    dialog = page.locator("dialog")
    dialog.get_by_label("Reason").fill("等门机板配件")
    dialog.get_by_label("Expected resume (site time)").fill("2024-03-03T16:30")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#ticket h1")).to_have_text(f"{ticket.number} · On hold")
    expect(buttons).to_have_text(["Arrived", "Resume", "Resolve"])
    expect(page.locator("li.event").last.locator(".note")).to_have_text(
        "等门机板配件 (expected resume 2024-03-03T16:30+08:00)"
    )


def test_the_device_board_shows_online_offline_and_no_data(site: Site, new_page: NewPage) -> None:
    page = new_page(site.url)
    _sign_in(page, VIEWER)
    page.get_by_role("link", name="Devices").click()
    page.wait_for_url("**/console/devices")
    devices = page.locator("li.device")
    expect(devices).to_have_count(5)
    states = {
        d.get_attribute("data-device"): d.locator(".state").inner_text() for d in devices.all()
    }
    assert states == {
        "pm-1": "Online",
        "pm-2": "Offline",  # its last sample is ten minutes old: the collector lost it
        "pm-3": "No data",
        "el-1": "Offline",
        "wm-1": "Online",
    }
    expect(page.locator("#summary")).to_have_text("2 online · 2 offline · 1 no data")
    detail = page.locator('li[data-device="el-1"] .detail')
    expect(detail).to_have_text("Last seen 8 s ago · Last good read 10 min ago")
    expect(page.locator('li[data-device="pm-2"] .detail')).to_have_text(
        "Last seen 10 min ago · data is stale"
    )
    expect(page.locator('li[data-device="pm-3"] .detail')).to_have_text("Never heard from")
    page.locator("#lang-toggle").click()
    expect(page.locator('li[data-device="el-1"] .state')).to_have_text("离线")
    expect(page.locator("#summary")).to_have_text("在线 2 · 离线 2 · 无数据 1")


def test_reports_render_as_tables_and_a_missing_one_says_so(site: Site, new_page: NewPage) -> None:
    page = new_page(site.url)
    _sign_in(page, MANAGER)
    page.goto("/console/reports")
    page.locator("#report").select_option("energy")
    page.locator("#param-start").fill("2024-03-01")
    page.locator("#param-end").fill("2024-03-02")
    if page.locator("#param-month").count():
        page.locator("#param-month").fill("")
    page.get_by_role("button", name="Show").click()
    out = page.locator("#report-output")
    expect(out.locator("h2").first).to_have_text("Energy")
    expected = site.api("/api/v1/reports/energy?start=2024-03-01&end=2024-03-02")["total_kwh"]
    assert expected == 60.0  # 24 hours at 2.5 kWh
    total = out.locator("tr", has=page.locator("th", has_text=re.compile("^total_kwh$")))
    expect(total.first.locator("td")).to_have_text("60")
    expect(out.locator("table").nth(1).locator("td").first).to_have_text("pm-1")
    expect(page.locator("#endpoint")).to_contain_text(
        "GET /api/v1/reports/energy?start=2024-03-01&end=2024-03-02"
    )

    # A report the server does not have (yet): as a server built before it would answer.
    def no_water(route: Route) -> None:
        route.fulfill(
            status=404,
            json={
                "error": {
                    "status": 404,
                    "code": "not_found",
                    "message": "no such resource",
                    "details": [],
                }
            },
        )

    page.route("**/api/v1/reports/water*", no_water)
    page.route(
        "**/openapi.json",
        lambda route: route.fulfill(json={"paths": {"/api/v1/reports/energy": {"get": {}}}}),
    )
    page.reload()
    page.locator("#report").select_option("water")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#message")).to_have_text(
        "This report is not available on this server yet."
    )
    expect(out.locator("table")).to_have_count(0)


_TAP_CHECK = """() => {
    const small = [];
    for (const n of document.querySelectorAll("a, button, input, select, textarea, summary")) {
        const r = n.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;  // not shown
        if (r.width < 44 || r.height < 44) small.push(`${n.tagName} ${n.textContent.trim()}`
            + ` ${Math.round(r.width)}x${Math.round(r.height)}`);
    }
    return small;
}"""


def test_every_page_fits_a_phone_with_finger_sized_targets(site: Site, new_page: NewPage) -> None:
    ticket = site.open_ticket()
    page = new_page(site.url)  # 390 x 844
    _sign_in(page, TECH, english=False)  # Chinese labels: the longest lines on a phone

    def check(ready: str) -> None:
        expect(page.locator(ready).first).to_be_visible()
        width = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{page.url} scrolls sideways: {width}"
        assert page.evaluate(_TAP_CHECK) == [], page.url

    check(f'li.ticket[data-ticket-id="{ticket.id}"] button')
    _card(page, ticket).get_by_role("button", name="解决").click()
    check("dialog textarea")
    page.keyboard.press("Escape")
    page.goto(f"/console/tickets/{ticket.id}")
    check("li.event")
    page.goto("/console/devices")
    check("li.device")
    page.goto("/console/reports")
    page.locator("#report").select_option("energy")
    page.locator("#param-start").fill("2024-03-01")
    page.locator("#param-end").fill("2024-03-02")
    if page.locator("#param-month").count():
        page.locator("#param-month").fill("")
    page.locator("button[type=submit]").click()
    check("#report-output table")
    page.locator("#sign-out").click()
    page.wait_for_url("**/console/login")
    check("#token")
