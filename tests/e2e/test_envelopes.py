"""Operating envelopes in a real browser: a peer sends a forecast over OSCP, operators read the
active and historical envelopes with their source and history, support staff withdraw one."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

pytestmark = pytest.mark.browser

TOKEN = "dso-north-e2e-token-0123456789"
LIST = "/manage/microgrids/MG.NORTH-1/envelopes/"
FORECAST = "/oscp/fp/2.0/update_group_capacity_forecast"
H = timedelta(hours=1)


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def block(start, end, capacity):
    return {
        "capacity": capacity,
        "phase": "ALL",
        "unit": "KW",
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
    }


@pytest.fixture
def now():
    """One clock for the seeded history and the test's own forecasts: a forecast that means to
    replace a seeded block covers exactly its window (a partial revision would leave a part)."""
    return timezone.now()


@pytest.fixture
def depot(microgrid, now):
    """A peer with two bound groups, a legacy alias of the whole microgrid, and a history:
    OE-1 expired, OE-2 superseded by OE-3 (active), OE-4 pending on sb-1."""
    from legacy_circuit.models import CircuitAlias, LegacyCircuit
    from microgrid.envelopes.services import (
        oscp_group_binding_save,
        oscp_message_receive,
        oscp_peer_save,
    )

    peer, _ = oscp_peer_save(name="dso-north", token=TOKEN)
    oscp_group_binding_save(
        peer=peer, group_id="GRP-N", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    oscp_group_binding_save(
        peer=peer, group_id="GRP-A", microgrid=microgrid, scope={"type": "NODE", "node_id": "sb-1"}
    )
    record = LegacyCircuit.objects.create(
        circuit_id="CIR-100", name="Main", configured_capacity_kw=700, available_capacity_kw=700
    )
    CircuitAlias.objects.create(circuit=record, microgrid=microgrid, scope_type="MICROGRID")
    sent = [
        ("GRP-N", block(now - 3 * H, now - 2 * H, 500), now - 4 * H),
        ("GRP-N", block(now - H, now + H, 400), now - 2 * H),
    ]
    for i, (group_id, one, at) in enumerate(sent):
        oscp_message_receive(
            peer=peer,
            message_type="UPDATE_GROUP_CAPACITY_FORECAST",
            request_id=f"seed-{i}",
            body=json.dumps(
                {"group_id": group_id, "type": "CONSUMPTION", "forecasted_blocks": [one]}
            ),
            now=at,
        )
    return microgrid


def send_forecast(page, body, request_id):
    """The capacity provider's side: a real HTTP request with the peer token."""
    return page.request.post(
        FORECAST,
        data=json.dumps(body),
        headers={
            "Authorization": f"Token {TOKEN}",
            "X-Request-ID": request_id,
            "X-Correlation-ID": "corr-e2e",
            "Content-Type": "application/json",
        },
    )


def test_operators_read_active_and_historical_envelopes_with_source_and_history(
    page, depot, now, screenshot
):
    replacing = {"group_id": "GRP-N", "type": "CONSUMPTION",
                 "forecasted_blocks": [block(now - H, now + H, 350)]}  # fmt: skip
    assert send_forecast(page, replacing, "req-live-1").status == 204
    pending = {"group_id": "GRP-A", "type": "CONSUMPTION",
               "forecasted_blocks": [block(now + H, now + 2 * H, 200)]}  # fmt: skip
    assert send_forecast(page, pending, "req-live-2").status == 204
    # the same message again changes nothing
    assert send_forecast(page, replacing, "req-live-1").status == 204

    page.goto("/manage/microgrids/MG.NORTH-1/")
    card = page.get_by_test_id("card-envelopes")
    expect(card.locator('[data-envelope-id="OE-3"]')).to_contain_text("350 kW")
    page.get_by_role("link", name="Operating envelopes", exact=True).click()
    expect(page).to_have_url(f"{page.url.split('/manage/')[0]}{LIST}")

    active = page.get_by_test_id("envelopes-active")
    row = active.locator('tr[data-envelope-id="OE-3"]')
    expect(row.get_by_test_id("capacity-kw")).to_have_text("350 kW")
    expect(row.get_by_test_id("enforcement")).to_have_text("ENFORCED")
    # the interim legacy value agrees with the envelope it follows
    expect(row.get_by_test_id("legacy-value")).to_have_text("CIR-100 350 kW")
    expect(
        page.get_by_test_id("envelopes-pending").locator('tr[data-envelope-id="OE-4"]')
    ).to_contain_text("Microgrid Node sb-1")
    history = page.get_by_test_id("envelopes-history")
    expect(history.locator('tr[data-envelope-id="OE-1"] [data-testid="status"]')).to_have_text(
        "EXPIRED"
    )
    expect(history.locator('tr[data-envelope-id="OE-2"] [data-testid="status"]')).to_contain_text(
        "SUPERSEDED by OE-3"
    )
    expect(page.get_by_test_id("oscp-peers")).to_contain_text("online")
    screenshot(page, "envelopes-list")

    history.locator('tr[data-envelope-id="OE-2"]').get_by_role("link", name="OE-2").click()
    detail = page.get_by_test_id("envelope-detail")
    expect(detail.get_by_test_id("status")).to_contain_text("SUPERSEDED")
    source = page.get_by_test_id("envelope-source")
    expect(source.get_by_test_id("source-request-id")).to_have_text("seed-1")
    expect(source.get_by_test_id("source-peer")).to_contain_text("dso-north")
    timeline = page.get_by_test_id("envelope-history")
    expect(timeline.locator("tr[data-change]")).to_have_count(2)
    expect(timeline.locator('tr[data-change="SUPERSEDED"]')).to_contain_text("OE-3")
    expect(page.get_by_test_id("withdraw-form")).to_have_count(0)
    screenshot(page, "envelope-superseded")

    detail.get_by_role("link", name="OE-3").click()
    expect(page.get_by_test_id("envelope-source").get_by_test_id("source-request-id")).to_have_text(
        "req-live-1"
    )
    expect(page.get_by_test_id("supersedes")).to_contain_text("OE-2")
    expect(page.get_by_test_id("legacy-value")).to_have_text(
        "CIR-100 available 350 kW (configured 700 kW) follows this envelope"
    )


def test_support_staff_withdraw_an_active_envelope_and_it_stays_visible(
    login_page, depot, screenshot
):
    support = login_page("support")
    support.goto(LIST + "OE-2/")
    expect(support.get_by_test_id("envelope-detail").get_by_test_id("status")).to_contain_text(
        "ACTIVE"
    )
    support.get_by_label("Reason").fill("DSO cancelled the restriction")
    support.get_by_role("button", name="Withdraw envelope").click()
    expect(support.locator(".alert-ok")).to_contain_text("Operating envelope OE-2 withdrawn")
    expect(support.get_by_test_id("envelope-detail").get_by_test_id("status")).to_contain_text(
        "WITHDRAWN"
    )
    expect(support.get_by_test_id("envelope-history")).to_contain_text(
        "DSO cancelled the restriction"
    )
    screenshot(support, "envelope-withdrawn")

    support.goto(LIST)
    expect(
        support.get_by_test_id("envelopes-active").locator("tr[data-envelope-id]")
    ).to_have_count(0)
    row = support.get_by_test_id("envelopes-history").locator('tr[data-envelope-id="OE-2"]')
    expect(row.get_by_test_id("status")).to_have_text("WITHDRAWN")
    # the legacy value went back to its configured figure
    row.get_by_role("link", name="OE-2").click()
    expect(support.get_by_test_id("legacy-value")).to_have_text(
        "CIR-100 available 700 kW (configured 700 kW)"
    )
    api = support.request.get("/api/microgrids/MG.NORTH-1/operating-envelopes/OE-2/").json()
    assert api["status"] == "WITHDRAWN"
    assert api["legacy_circuit"] == {"circuit_id": "CIR-100", "available_capacity_kw": 700.0}
