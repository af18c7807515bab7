"""External capability status in a real browser: the microgrid card labels every status with its
target scope, and the capabilities page shows bindings, the status per scope and the history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.capabilities.api.serializers import bind_input, event_input

pytestmark = pytest.mark.browser

CARD = "/manage/microgrids/MG.NORTH-1/"
PAGE = CARD + "capabilities/"


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def two_controllers(microgrid):
    """Bay A under plc-a (AVAILABLE), Bay B under plc-b (UNAVAILABLE), a demand-response
    aggregator for the whole microgrid with no status yet."""
    from microgrid.capabilities.services import capability_binding_create, capability_event_record

    now = timezone.now()
    for source, scope, capability_type in [
        ("plc-a", {"type": "NODE", "node_id": "grp-a"}, "LOAD_MANAGEMENT"),
        ("plc-b", {"type": "NODE", "node_id": "grp-b"}, "LOAD_MANAGEMENT"),
        ("aggregator", {"type": "MICROGRID"}, "DEMAND_RESPONSE"),
    ]:
        capability_binding_create(
            microgrid=microgrid,
            **bind_input(
                {"capability_type": capability_type, "scope": scope, "source_device_id": source}
            ),
        )
    for source, node_id, state, ref, age_s in [
        ("plc-a", "grp-a", "AVAILABLE", "a-1", 1),
        ("plc-b", "grp-b", "AVAILABLE", "b-1", 10),
        ("plc-b", "grp-b", "UNAVAILABLE", "b-2", 1),
    ]:
        capability_event_record(
            microgrid=microgrid,
            **event_input(
                {
                    "capability_type": "LOAD_MANAGEMENT",
                    "scope": {"type": "NODE", "node_id": node_id},
                    "source_device_id": source,
                    "event_ref": ref,
                    "state": state,
                    "observed_at": (now - timedelta(seconds=age_s)).isoformat(),
                    "detail": None,
                }
            ),
        )
    return microgrid


def test_the_card_shows_each_status_against_its_own_scope(page, two_controllers, screenshot):
    page.goto(CARD)
    section = page.get_by_test_id("card-capabilities")
    expect(section).to_be_visible()
    bay_a = section.locator('[data-node-id="grp-a"]')
    expect(bay_a.get_by_test_id("capability-scope")).to_have_text("Microgrid Node Bay A (grp-a)")
    expect(bay_a.get_by_test_id("capability-state")).to_have_text("AVAILABLE")
    expect(bay_a).to_contain_text("under external control")
    bay_b = section.locator('[data-node-id="grp-b"]')
    expect(bay_b.get_by_test_id("capability-scope")).to_have_text("Microgrid Node Bay B (grp-b)")
    expect(bay_b.get_by_test_id("capability-state")).to_have_text("UNAVAILABLE")
    expect(bay_b).not_to_contain_text("under external control")
    whole = section.locator('[data-scope="MICROGRID"]')
    expect(whole.get_by_test_id("capability-scope")).to_have_text("Whole microgrid")
    expect(whole.get_by_test_id("capability-state")).to_have_text("no status yet")
    screenshot(page, "capabilities-card")

    section.get_by_role("link", name="Bindings and status history").click()
    page.wait_for_load_state()
    assert page.url.endswith(PAGE)
    expect(page.locator("nav.tabs a.active")).to_have_text("Capabilities")
    status = page.get_by_test_id("capability-status")
    expect(
        status.locator('tr[data-node-id="grp-a"]').get_by_test_id("capability-control")
    ).to_contain_text("EXTERNAL_CONTROL")
    expect(
        status.locator('tr[data-node-id="grp-b"]').get_by_test_id("capability-control")
    ).not_to_contain_text("EXTERNAL_CONTROL")
    history = page.get_by_test_id("capability-events")
    expect(history.locator("tbody tr")).to_have_count(3)
    screenshot(page, "capabilities-page")


def test_a_binding_released_by_support_leaves_the_card_and_stays_in_history(
    login_page, two_controllers
):
    support = login_page("support", "support-e2e")
    response = support.request.post(
        "/api/microgrids/MG.NORTH-1/capabilities/bindings/CB-2/release/",
        headers={"X-CSRFToken": _csrf(support)},
    )
    assert response.status == 200, response.text()
    support.goto(CARD)
    section = support.get_by_test_id("card-capabilities")
    expect(section.locator('[data-node-id="grp-a"]')).to_have_count(1)
    expect(section.locator('[data-node-id="grp-b"]')).to_have_count(0)
    support.goto(PAGE)
    row = support.get_by_test_id("capability-bindings").locator('tr[data-binding-id="CB-2"]')
    expect(row).to_contain_text("released")
    row.get_by_role("link", name="events").click()
    page_history = support.get_by_test_id("capability-events")
    expect(page_history.locator("tbody tr")).to_have_count(2)
    expect(page_history).to_contain_text("b-2")
    expect(page_history).not_to_contain_text("a-1")


def _csrf(page) -> str:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies.get("csrftoken", "")
