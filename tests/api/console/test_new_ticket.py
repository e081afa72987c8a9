"""The tickets page's new-ticket form (a tenant's repair request taken at the front desk) and
the follow-up button (回访) on the ticket page, in a real browser (Debian's chromium) against
the live app."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from tests.api.console.conftest import TECH, VIEWER, Site
from tests.api.console.test_console import _TAP_CHECK, _sign_in

NewPage = Callable[..., Page]
TENANT = "张女士 A座1203 138-0000-1234"


def test_a_technician_takes_a_tenant_request_and_records_the_follow_up(
    site: Site, new_page: NewPage
) -> None:
    page = new_page(site.url)  # a phone
    _sign_in(page, TECH)
    details = page.locator("#new-ticket")
    expect(details).to_be_visible()
    details.locator("summary").click()
    form = page.locator("#ticket-form")
    form.get_by_role("button", name="Create").click()
    expect(page.locator("#ticket-error")).to_have_text("Please fill this in.")

    form.get_by_label("Device").select_option("el-1")
    form.get_by_label("Fault class").fill("door_fault")
    form.get_by_label("Title").fill("1号梯门关不上")
    form.get_by_label("Priority").select_option("P2")
    form.get_by_label("Details (optional)").fill("住户来电")
    requester = form.get_by_label("Requester (name, unit, phone)")
    expect(requester).to_be_hidden()
    form.get_by_label("Tenant's repair request (call back after the repair)").check()
    expect(requester).to_be_visible()
    assert page.evaluate(_TAP_CHECK) == []  # the open form fits a finger too
    form.get_by_role("button", name="Create").click()
    expect(page.locator("#ticket-error")).to_have_text("Please fill this in.")
    requester.fill(TENANT)
    form.get_by_role("button", name="Create").click()

    expect(page.locator("#toast")).to_contain_text("created")
    [made] = site.api("/api/v1/tickets?source=tenant")["items"]
    assert (made["device"], made["fault_class"], made["priority"]) == ("el-1", "door_fault", "P2")
    assert made["requester"] == TENANT and made["title"] == "1号梯门关不上"
    expect(page.locator("#toast")).to_have_text(f"Ticket {made['number']} created")
    card = page.locator(f'li.ticket[data-ticket-id="{made["id"]}"]')
    expect(card.locator(".badge.source")).to_have_text("Tenant request")
    expect(details).not_to_have_attribute("open", "")

    # The repair is done (through the API); the ticket page now offers the call-back.
    resp = httpx.post(
        f"{site.url}/api/v1/tickets/{made['id']}/resolve",
        json={"note": "更换门机皮带"},
        headers={"Authorization": f"Bearer {TECH}"},
    )
    resp.raise_for_status()
    card.locator("a.number").click()
    expect(page.locator("#ticket dl.fields")).to_contain_text("Tenant request")
    expect(page.locator("#ticket dl.fields")).to_contain_text(TENANT)
    page.get_by_role("button", name="Follow-up call").click()
    dialog = page.locator("dialog")
    dialog.get_by_label("Follow-up: what the tenant said").fill("张女士确认门已正常，满意")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#toast")).to_have_text(f"Follow-up recorded on {made['number']}")
    event = page.locator('li.event[data-kind="follow_up"]')
    expect(event.locator(".kind")).to_have_text("Follow-up call")
    expect(event.locator(".note")).to_have_text("张女士确认门已正常，满意")
    expect(event.locator(".when")).to_contain_text("王师傅")

    # A viewer (a lobby screen) gets no form.
    lobby = new_page(site.url)
    _sign_in(lobby, VIEWER)
    expect(lobby.locator("#read-only")).to_be_visible()
    expect(lobby.locator("#new-ticket")).to_be_hidden()
