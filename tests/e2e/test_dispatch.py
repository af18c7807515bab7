"""Setpoint delivery in a real browser: what became of each charger's setpoint is on the cycle
detail, the card and the fleet overview.

A real webhook receiver on 127.0.0.1 (tests/dispatch/conftest.py) answers the product's
signed POSTs: first 200 (ACCEPTED everywhere), then 422 (REJECTED: the card lists the
chargers, the fleet overview counts them and links to the cycle).
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.dispatch.conftest import SECRET, receiver_factory  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser

BASE = "/manage/microgrids/MG.NORTH-1"


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _feed(microgrid, requested_kw):
    from microgrid.telemetry.services import telemetry_ingest

    now = timezone.now()
    readings = [
        {
            "asset_id": a,
            "power_kw": 0,
            "observed_at": now.isoformat(),
            "connected": True,
            "requested_kw": requested_kw,
        }
        for a in ("CH-01", "CH-02", "CH-03")
    ]
    readings.append({"asset_id": "SITE", "power_kw": 40, "observed_at": now.isoformat()})
    telemetry_ingest(microgrid=microgrid, readings=readings, now=now)


def _hook(microgrid, url):
    from dispatch.services import dispatch_config_set

    dispatch_config_set(microgrid=microgrid, webhook_url=url, webhook_secret=SECRET)


def _rebalance(page):
    """Rebalance now in the browser, then follow the confirmation to the cycle's detail."""
    page.goto(f"{BASE}/cycles/")
    page.get_by_test_id("rebalance").click()
    result = page.get_by_test_id("rebalance-result")
    expect(result).to_contain_text("cycle #")
    result.click()
    page.wait_for_load_state()


def test_deliveries_show_accepted_then_rejected_on_cycle_card_and_fleet(
    page,
    microgrid,
    receiver_factory,  # noqa: F811 (the fixture imported above)
    screenshot,
):
    accepting = receiver_factory(status=200)
    _hook(microgrid, accepting.url)
    _feed(microgrid, 120)
    _rebalance(page)
    expect(page.get_by_test_id("cycle-dispatch")).to_contain_text("WEBHOOK")
    expect(page.locator('[data-status="ACCEPTED"]')).to_contain_text("ACCEPTED 3")
    statuses = page.get_by_test_id("dispatch-status")
    expect(statuses).to_have_count(3)
    for i in range(3):
        expect(statuses.nth(i)).to_have_text("ACCEPTED")
    assert len(accepting.received) == 1 and accepting.received[0].signature_ok
    screenshot(page, "dispatch-cycle-accepted")

    page.goto(f"{BASE}/")
    card = page.get_by_test_id("card-dispatch")
    expect(card).to_contain_text("WEBHOOK")
    expect(card).to_contain_text("ACCEPTED")
    expect(card).to_contain_text("No charger's latest delivery failed")

    # Another receiver, which refuses what it gets: 422, never retried. (It holds nothing yet,
    # so the message is full: every charger's setpoint is in it; spec 4.7.)
    refusing = receiver_factory(status=422)
    _hook(microgrid, refusing.url)
    _feed(microgrid, 90)
    _rebalance(page)
    cycle_url = page.url
    expect(page.locator('[data-status="REJECTED"]')).to_contain_text("REJECTED 3")
    for i in range(3):
        expect(page.get_by_test_id("dispatch-status").nth(i)).to_have_text("REJECTED")
    screenshot(page, "dispatch-cycle-rejected")

    page.goto(f"{BASE}/")
    trouble = page.get_by_test_id("dispatch-trouble")
    expect(trouble.locator("tbody tr")).to_have_count(3)
    expect(trouble.locator('tr[data-target-id="CH-02"]')).to_contain_text("REJECTED")
    expect(page.get_by_test_id("card-dispatch")).to_contain_text("HTTP 422")

    page.goto("/manage/microgrids/")
    row = page.locator('tr[data-microgrid="MG.NORTH-1"]')
    failed = row.get_by_test_id("failed-deliveries")
    expect(failed).to_have_text("3")
    screenshot(page, "dispatch-fleet")
    failed.locator("a").click()
    page.wait_for_load_state()
    assert page.url == cycle_url
