"""A legacy client's calls seen by an operator in a real browser, on canonical and legacy pages."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

CYCLES = "/manage/microgrids/MG.NORTH-1/cycles/"
EVENING = {"start": "17:00", "end": "21:00", "days": ["MON", "TUE"], "limit_kw": 200}


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def legacy_token(microgrid, e2e_user):
    """Circuits on MG.NORTH-1 and the token of an integration client."""
    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_save, legacy_circuit_save
    from microgrid.common.models import ApiToken

    for circuit_id, name, aliases in (
        ("CIR-101", "Board 1", [("NODE", "sb-1")]),
        ("CIR-103", "Old split circuit", [("NODE", "sb-1"), ("NODE", "grp-a")]),
    ):
        circuit, _ = legacy_circuit_save(
            circuit_id=circuit_id, name=name, configured_capacity_kw=350, depot=microgrid.depot
        )
        for scope_type, node_id in aliases:
            circuit_alias_save(
                alias=CircuitAlias(
                    circuit=circuit, microgrid=microgrid, scope_type=scope_type, node_id=node_id
                )
            )
    _, key = ApiToken.issue(user=e2e_user("integration", "depot-erp"))
    return {"Authorization": f"Token {key}"}


def test_a_legacy_rebalance_shows_up_as_a_canonical_cycle_with_its_circuit(
    page, legacy_token, screenshot
):
    answer = page.request.post("/api/circuit/CIR-101/rebalance_load", headers=legacy_token)
    assert answer.status == 200
    body = answer.json()
    assert body["scope"] == {"type": "NODE", "node_id": "sb-1"}
    cycle_id = body["cycle_id"]

    page.goto(CYCLES)
    row = page.get_by_test_id("cycle-list").locator(
        "tr", has=page.locator(f'a[href="{cycle_id}/"]')
    )
    expect(row).to_contain_text("LEGACY_ALIAS")
    row.locator(f'a[href="{cycle_id}/"]').click()
    page.wait_for_load_state()

    assert page.url.endswith(f"{CYCLES}{cycle_id}/")
    summary = page.get_by_test_id("cycle-summary")
    expect(summary).to_contain_text(cycle_id)
    expect(summary).to_contain_text("LEGACY_ALIAS")
    expect(summary).to_contain_text("CIR-101")
    expect(summary).to_contain_text("Microgrid Node sb-1")
    expect(page.locator('[data-testid="cycle-nodes"] tr.highlight')).to_have_attribute(
        "data-node-id", "sb-1"
    )
    screenshot(page, "legacy-cycle-detail")


def test_a_legacy_tou_write_is_in_the_canonical_limits_view(page, legacy_token):
    answer = page.request.post(
        "/api/circuit/CIR-101/tou_limits",
        headers=legacy_token,
        data={"tou_limits": [EVENING]},
    )
    assert answer.status == 200, answer.text()

    page.goto("/manage/microgrids/MG.NORTH-1/limits/")
    policy = page.locator('[data-testid="limit-policies"] tr[data-node-id="sb-1"]')
    expect(policy).to_have_count(1)
    expect(policy).to_contain_text("LEGACY_TOU")
    expect(policy.get_by_test_id("policy-limit")).to_have_text("200 kW")
    expect(policy).to_contain_text("MON, TUE 17:00–21:00")


def test_the_legacy_pages_show_aliases_and_the_usage_of_each_client(page, legacy_token, screenshot):
    assert page.request.post("/api/circuit/CIR-101/rebalance_load", headers=legacy_token).ok
    refused = page.request.post("/api/circuit/CIR-103/rebalance_load", headers=legacy_token)
    assert refused.status == 409

    page.goto("/manage/microgrids/")
    page.get_by_role("link", name="Legacy", exact=True).click()
    page.wait_for_load_state()
    ambiguous = page.locator('tr[data-circuit-id="CIR-103"]')
    expect(ambiguous.get_by_test_id("resolution")).to_contain_text("AMBIGUOUS")
    expect(
        page.locator('tr[data-circuit-id="CIR-101"]').get_by_test_id("resolution")
    ).to_contain_text("resolves")
    screenshot(page, "legacy-circuits")

    page.get_by_role("link", name="Alias usage").first.click()
    page.wait_for_load_state()
    summary = page.get_by_test_id("usage-summary")
    expect(
        summary.locator('tr[data-client="depot-erp"][data-circuit-id="CIR-101"]')
    ).to_contain_text("1")
    expect(
        summary.locator(
            'tr[data-client="depot-erp"][data-circuit-id="CIR-103"] [data-testid="failures"]'
        )
    ).to_have_text("1")
    screenshot(page, "legacy-alias-usage")
