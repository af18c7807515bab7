"""Node Limits in a real browser: create, refuse one above the rating, see it applied after reload."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

LIMITS = "/manage/microgrids/MG.NORTH-1/limits/"


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def fill_node_limit(page, node_id: str, kw: str) -> None:
    form = page.get_by_test_id("limit-form")
    form.locator("#id_scope").select_option("NODE")
    form.locator("#id_node_id").select_option(node_id)
    form.locator("#id_limit_kw").fill(kw)
    page.get_by_test_id("limit-save").click()
    page.wait_for_load_state()


def test_a_node_limit_above_the_rating_is_refused_naming_node_and_field(
    page, microgrid, screenshot
):
    page.goto(LIMITS)
    fill_node_limit(page, "sb-1", "400.5")
    errors = page.get_by_test_id("limit-errors")
    expect(errors).to_contain_text("LIMIT_EXCEEDS_PHYSICAL_RATING")
    expect(errors).to_contain_text("sb-1")
    expect(page.locator('.field-error[data-field="limit_kw"]')).to_contain_text(
        "LIMIT_EXCEEDS_PHYSICAL_RATING"
    )
    screenshot(page, "limits-rejected")
    page.goto(LIMITS)
    expect(page.get_by_test_id("limit-policies")).not_to_contain_text("400.5")


def test_a_node_limit_equal_to_the_rating_is_applied_and_shown_after_reload(page, microgrid):
    page.goto(LIMITS)
    fill_node_limit(page, "grp-a", "250")
    page.goto(LIMITS)
    row = page.get_by_test_id("effective-limits").locator('tr[data-node-id="grp-a"]')
    expect(row.get_by_test_id("effective-limit")).to_contain_text("250")
    policies = page.get_by_test_id("limit-policies")
    expect(policies.locator('tr[data-node-id="grp-a"]')).to_contain_text("250")
    fill_node_limit(page, "sb-1", "300")
    page.goto(LIMITS)
    row = page.get_by_test_id("effective-limits").locator('tr[data-node-id="sb-1"]')
    expect(row.get_by_test_id("effective-limit")).to_contain_text("300")
    expect(row.get_by_test_id("limit-source")).to_have_text("NODE_LIMIT")
