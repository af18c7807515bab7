"""Cycle pages in a real browser: MEASURED, FALLBACK_DERIVED and FAILSAFE are plain to see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

pytestmark = pytest.mark.browser

CYCLES = "/manage/microgrids/MG.NORTH-1/cycles/"


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def send(microgrid, at, **values):
    from microgrid.telemetry.services import telemetry_ingest

    readings = []
    for asset_id, value in values.items():
        asset_id = asset_id.replace("_", "-")
        if asset_id.startswith("CH"):
            readings.append(
                {
                    "asset_id": asset_id,
                    "power_kw": 0,
                    "observed_at": at.isoformat(),
                    "connected": True,
                    "requested_kw": value,
                }
            )
        else:
            readings.append(
                {"asset_id": asset_id, "power_kw": value, "observed_at": at.isoformat()}
            )
    telemetry_ingest(microgrid=microgrid, readings=readings, now=timezone.now())


def rebalance(page):
    """Rebalance now, then follow the confirmation's link to the cycle it ran."""
    page.goto(CYCLES)
    page.get_by_test_id("rebalance").click()
    result = page.get_by_test_id("rebalance-result")
    expect(result).to_contain_text("cycle #")
    result.click()
    page.wait_for_load_state()


def test_fresh_telemetry_shows_measured(page, microgrid, screenshot):
    now = timezone.now()
    send(microgrid, now, SITE=40, PV_1=10, M_GRID=100, CH_01=150, CH_02=150, CH_03=80)
    rebalance(page)
    expect(page.get_by_test_id("cycle-source-mode")).to_contain_text("MEASURED")
    expect(page.get_by_test_id("cycle-reason-codes")).to_contain_text("PHYSICAL_RATING")
    expect(page.get_by_test_id("fallback-inputs")).to_contain_text("Every input was measured")
    chargers = page.get_by_test_id("cycle-chargers")
    expect(chargers.locator('tr[data-asset-id="CH-01"]')).to_contain_text("grp-a")
    screenshot(page, "cycle-measured")


def test_a_stale_site_load_shows_fallback_derived_with_its_inputs(page, microgrid, screenshot):
    now = timezone.now()
    send(microgrid, now - timedelta(minutes=5), SITE=40)
    send(microgrid, now, PV_1=0, CH_01=50)
    rebalance(page)
    expect(page.get_by_test_id("cycle-source-mode")).to_contain_text("FALLBACK_DERIVED")
    inputs = page.get_by_test_id("fallback-inputs")
    expect(inputs).to_contain_text("SITE")
    expect(inputs).to_contain_text("STALE")
    expect(inputs).to_contain_text("80.0 kW")
    expect(inputs).to_contain_text("60 s")
    screenshot(page, "cycle-fallback")


def test_a_missing_site_load_without_fallback_fails_safe(
    page, microgrid, small_topology, screenshot
):
    from microgrid.topology.services import topology_replace

    for asset in small_topology["assets"]:
        if asset["asset_id"] == "SITE":
            asset["fallback_kw"] = None
    topology_replace(microgrid=microgrid, base_version=1, **small_topology)
    send(microgrid, timezone.now(), PV_1=0, CH_01=50)
    rebalance(page)
    expect(page.get_by_test_id("cycle-outcome")).to_contain_text("FAILSAFE")
    expect(page.get_by_test_id("cycle-reason-codes")).to_contain_text(
        "FAILSAFE_TELEMETRY_UNAVAILABLE"
    )
    expect(page.get_by_test_id("fallback-inputs")).to_contain_text("none configured")
    screenshot(page, "cycle-failsafe")
    page.goto(CYCLES)
    expect(page.get_by_test_id("cycle-list")).to_contain_text("FAILSAFE")
