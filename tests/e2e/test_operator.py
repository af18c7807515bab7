"""The operator's day in a real browser: the fleet overview (filters, paging), live refresh,
confirm-before-delete, where a refused save's error shows, and screenshots of every page."""

from __future__ import annotations

import pytest

from balancing.services import cycle_request, trigger_of
from tests.fleet.test_overview import cycle, make_microgrid

pytestmark = pytest.mark.browser

LIMITS = "/manage/microgrids/MG.NORTH-1/limits/"
# live.js re-fetches every 5 s: three rounds.
LIVE_MS = 15_000


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_fleet_overview_filters_searches_and_pages(page, microgrid, small_topology, screenshot):
    for n in range(1, 30):
        make_microgrid(n, small_topology, name="Harbour yard" if n == 7 else None)
    cycle(microgrid, grid_kw=900)  # MG.NORTH-1: a cycle and an open breach
    page.goto("/manage/microgrids/?page_size=25")
    pager = page.get_by_test_id("fleet-pager")
    expect(pager).to_contain_text("1–25 of 30")
    rows = page.get_by_test_id("microgrid-list").locator("tbody tr")
    expect(rows).to_have_count(25)
    screenshot(page, "fleet-overview-1400")
    pager.get_by_role("link", name="Next →").click()
    expect(page.get_by_test_id("fleet-pager")).to_contain_text("26–30 of 30")
    expect(page.get_by_test_id("microgrid-list").locator("tbody tr")).to_have_count(5)
    # The count per state is a filter.
    page.get_by_test_id("fleet-counts").locator('[data-state="NO_CYCLE"]').click()
    expect(page.get_by_test_id("fleet-pager")).to_contain_text("of 29")
    expect(page.locator('tr[data-microgrid="MG.NORTH-1"]')).to_have_count(0)
    # Search and the filter form.
    page.goto("/manage/microgrids/")
    form = page.get_by_test_id("fleet-filters")
    form.locator('input[name="q"]').fill("harbour")
    form.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("microgrid-list").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("microgrid-list")).to_contain_text("Harbour yard")
    page.goto("/manage/microgrids/")
    form = page.get_by_test_id("fleet-filters")
    form.locator('select[name="breaches"]').select_option("open")
    form.locator('select[name="sort"]').select_option("-load")
    form.get_by_role("button", name="Apply").click()
    only = page.get_by_test_id("microgrid-list").locator("tbody tr")
    expect(only).to_have_count(1)
    expect(only).to_have_attribute("data-microgrid", "MG.NORTH-1")
    expect(only.locator(".load-figures")).to_contain_text("%")


def run_cycle_while_pages_refresh(microgrid):
    """A cycle written while the open page re-reads (SQLite's in-memory test database refuses
    a write while a read holds a table, rather than waiting): retried until a deadline."""
    import time

    from django.db import OperationalError

    deadline = time.monotonic() + 10
    while True:
        try:
            return cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise


def test_a_new_cycle_appears_on_the_open_pages_without_a_reload(page, microgrid):
    cycle(microgrid)
    page.goto("/manage/microgrids/MG.NORTH-1/cycles/")
    rows = page.get_by_test_id("cycle-list").locator("tbody tr")
    expect(rows).to_have_count(1)
    page.evaluate("window.__notReloaded = true")
    new = run_cycle_while_pages_refresh(microgrid)
    expect(page.locator(f'tr[data-cycle-id="{new.cycle_id}"]')).to_be_visible(timeout=LIVE_MS)
    assert page.evaluate("window.__notReloaded") is True
    page.goto("/manage/microgrids/")
    page.evaluate("window.__notReloaded = true")
    row = page.locator('tr[data-microgrid="MG.NORTH-1"]')
    expect(row).to_contain_text(f"#{new.seq}")
    newer = run_cycle_while_pages_refresh(microgrid)
    expect(row).to_contain_text(f"#{newer.seq}", timeout=LIVE_MS)
    assert page.evaluate("window.__notReloaded") is True


def test_delete_asks_for_confirmation_and_cancel_keeps_the_limit(page, microgrid):
    from microgrid.limits.api.serializers import policy_input
    from microgrid.limits.models import LimitPolicy
    from microgrid.limits.services import limit_policy_create

    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "MICROGRID", "limit_kw": 700})
    )
    page.goto(LIMITS)
    page.get_by_test_id("limit-delete").click()
    expect(page.get_by_test_id("limit-delete-confirm")).to_contain_text("Delete LP-1?")
    assert LimitPolicy.objects.filter(policy_id="LP-1").exists()
    page.get_by_test_id("limit-delete-cancel").click()
    expect(page.locator('tr[data-policy-id="LP-1"]')).to_be_visible()
    page.get_by_test_id("limit-delete").click()
    page.get_by_test_id("limit-delete-yes").click()
    expect(page.locator('tr[data-policy-id="LP-1"]')).to_have_count(0)
    expect(page.locator(".alert-ok")).to_contain_text("Deleted Microgrid limit LP-1")
    assert not LimitPolicy.objects.filter(policy_id="LP-1").exists()


def test_a_refused_save_shows_its_error_in_words_at_the_top(page, microgrid, screenshot):
    page.goto(LIMITS)
    form = page.get_by_test_id("limit-form")
    form.locator("#id_scope").select_option("NODE")
    form.locator("#id_node_id").select_option("sb-1")
    form.locator("#id_limit_kw").fill("400.5")
    page.get_by_test_id("limit-save").click()
    errors = page.get_by_test_id("limit-errors")
    expect(errors).to_be_visible()
    title = errors.locator(".alert-title")
    expect(title).to_contain_text("Not saved:")
    expect(title).not_to_contain_text("LIMIT_EXCEEDS_PHYSICAL_RATING")  # words, code beside
    expect(errors).to_contain_text("LIMIT_EXCEEDS_PHYSICAL_RATING")
    box = errors.bounding_box()
    assert box is not None and box["y"] < 500, box  # next to the form at the top, not 1,150 px down
    assert errors.inner_text().count("LIMIT_EXCEEDS_PHYSICAL_RATING") == 1
    screenshot(page, "limits-refused-1400")


def test_every_manage_page_at_desktop_and_phone_width(
    login_page, microgrid, small_topology, screenshot
):
    """Full-page screenshots of every Manage page at 1400 and 390 px (SCREENSHOT_DIR=...);
    without it the pages still load, answer 200 and fit the window's width at both widths."""
    from microgrid.limits.api.serializers import policy_input
    from microgrid.limits.services import limit_policy_create

    for n in range(1, 4):
        make_microgrid(n, small_topology)
    first = cycle(microgrid, grid_kw=900)
    cycle(microgrid)
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    )
    base = "/manage/microgrids/MG.NORTH-1/"
    breach = first.document["breaches"][0]["breach_id"]
    pages = {
        "fleet": "/manage/microgrids/",
        "card": base,
        "topology": base + "topology/",
        "topology-edit": base + "topology/edit/",
        "topology-history": base + "topology/revisions/",
        "topology-version": base + "topology/revisions/1/",
        "limits": base + "limits/",
        "limit-edit": base + "limits/LP-1/",
        "limit-delete": base + "limits/LP-1/delete/",
        "envelopes": base + "envelopes/",
        "capabilities": base + "capabilities/",
        "cycles": base + "cycles/",
        "cycle-detail": base + f"cycles/{first.cycle_id}/",
        "breaches": base + "breaches/",
        "breach-detail": base + f"breaches/{breach}/",
        "stations": base + "stations/",
        "legacy-circuits": "/manage/legacy/circuits/",
        "legacy-alias-usage": "/manage/legacy/alias-usage/",
    }
    page = login_page("support")
    for width in (1400, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in pages.items():
            response = page.goto(url)
            assert response is not None and response.status == 200, (name, url)
            # Nothing widens the page: a wide table or chart scrolls inside its own box.
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, (name, width, overflow)
            screenshot(page, f"{name}-{width}")
