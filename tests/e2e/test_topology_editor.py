"""The topology editor in a real browser: valid saves, rejected saves, conflicting saves."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

VIEW = "/manage/microgrids/MG.NORTH-1/topology/"
EDIT = VIEW + "edit/"
API = "/api/microgrids/MG.NORTH-1/topology/"


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def node_row(page, node_id: str):
    return page.locator(f'tr.node-row[data-node-id="{node_id}"]')


def asset_row(page, asset_id: str):
    return page.locator(f'tr.asset-row[data-asset-id="{asset_id}"]')


def saved_topology(page) -> dict:
    """What the API says is saved, read with the page's own session."""
    response = page.request.get(API)
    assert response.ok, response.status
    return response.json()


def parents(document: dict) -> dict[str, str | None]:
    return {n["node_id"]: n["parent_id"] for n in document["nodes"]}


def attached(document: dict) -> dict[str, str]:
    return {a["asset_id"]: a["node_id"] for a in document["assets"]}


def save(page) -> None:
    page.get_by_test_id("save-topology").click()
    page.wait_for_load_state()


def test_a_valid_edit_is_saved_and_visible_after_reload(page, microgrid, screenshot):
    page.goto(VIEW)
    page.get_by_role("link", name="Edit topology").click()
    expect(page.get_by_test_id("base-version")).to_have_text("1")

    blank = page.locator("tr.node-row.is-blank").first
    blank.locator("input[name$='-node_id']").fill("grp-c")
    blank.locator("select[name$='-parent_id']").select_option("sb-1")
    blank.locator("select[name$='-kind']").select_option("CHARGER_GROUP")
    blank.locator("input[name$='-name']").fill("Bay C")
    blank.locator("input[name$='-physical_rating_kw']").fill("200")
    node_row(page, "grp-a").locator("input[name$='-name']").fill("Bay A north")
    # New Microgrid Nodes join the selects once staged: add rows re-renders without saving.
    page.get_by_role("button", name="Add rows").click()
    asset_row(page, "CH-03").locator("select[name$='-node_id']").select_option("grp-c")
    expect(node_row(page, "grp-c").locator(".badge")).to_have_text("new")
    save(page)

    assert page.url.endswith(VIEW)
    expect(page.locator(".alert-ok")).to_contain_text("Topology saved as version 2")
    page.reload()
    expect(page.get_by_test_id("topology-version")).to_have_text("2")
    tree = page.get_by_test_id("topology-tree")
    expect(tree.locator('li[data-node-id="grp-c"] li[data-asset-id="CH-03"]')).to_be_visible()
    expect(tree.locator('li[data-node-id="grp-a"]')).to_contain_text("Bay A north")
    expect(page.locator('[data-testid="topology-diagram"] g[data-node-id="grp-c"]')).to_have_count(
        1
    )
    document = saved_topology(page)
    assert document["topology_version"] == 2
    assert parents(document)["grp-c"] == "sb-1"
    assert attached(document)["CH-03"] == "grp-c"
    screenshot(page, "topology-after-save")


def test_a_cycle_is_rejected_with_the_error_beside_the_row_and_nothing_applied(
    page, microgrid, screenshot
):
    before = saved_topology(page)
    page.goto(EDIT)
    node_row(page, "sb-1").locator("select[name$='-parent_id']").select_option("grp-a")
    save(page)

    errors = page.get_by_test_id("editor-errors")
    expect(errors).to_be_visible()
    expect(errors.locator('li[data-code="TOPOLOGY_CYCLE"]')).to_contain_text("grp-a, sb-1")
    for node_id in ("sb-1", "grp-a"):
        beside = page.locator(f'tr.row-errors[data-errors-for="{node_id}"]')
        expect(beside).to_contain_text("TOPOLOGY_CYCLE")
        expect(node_row(page, node_id).locator("select[name$='-parent_id']")).to_have_attribute(
            "aria-invalid", "true"
        )
    # The staged edit stays in the form, to be fixed.
    expect(node_row(page, "sb-1").locator("select[name$='-parent_id']")).to_have_value("grp-a")
    screenshot(page, "editor-validation-error")

    assert saved_topology(page) == before
    page.goto(VIEW)
    expect(page.get_by_test_id("topology-version")).to_have_text("1")
    diagram = page.get_by_test_id("topology-diagram")
    expect(diagram.locator('path[data-from="grid"][data-to="sb-1"]')).to_have_count(1)
    expect(diagram.locator('path[data-from="sb-1"][data-to="grp-a"]')).to_have_count(1)


def test_an_orphan_is_rejected_with_the_error_beside_the_row_and_nothing_applied(page, microgrid):
    before = saved_topology(page)
    page.goto(EDIT)
    node_row(page, "sb-1").get_by_label("Remove sb-1").check()
    save(page)

    errors = page.get_by_test_id("editor-errors")
    expect(errors.locator('li[data-code="TOPOLOGY_ORPHAN_NODE"]')).to_have_count(2)
    for node_id in ("grp-a", "grp-b"):
        expect(page.locator(f'tr.row-errors[data-errors-for="{node_id}"]')).to_contain_text(
            "TOPOLOGY_ORPHAN_NODE"
        )
    expect(node_row(page, "sb-1").get_by_label("Remove sb-1")).to_be_checked()
    expect(node_row(page, "sb-1").locator(".badge")).to_have_text("to remove")

    assert saved_topology(page) == before
    page.goto(VIEW)
    expect(page.locator('[data-testid="topology-tree"] li[data-node-id="sb-1"]')).to_be_visible()


def test_a_stale_save_from_a_second_browser_is_refused_then_succeeds_after_load_latest(
    page, login_page, microgrid, screenshot
):
    other = login_page("operator", "operator-2")
    page.goto(EDIT)
    other.goto(EDIT)

    other_row = node_row(other, "grp-b").locator("input[name$='-name']")
    other_row.fill("Bay B east")
    save(other)
    expect(other.get_by_test_id("topology-version")).to_have_text("2")

    asset_row(page, "CH-03").locator("select[name$='-node_id']").select_option("grp-a")
    save(page)
    conflict = page.get_by_test_id("editor-conflict")
    expect(conflict).to_contain_text("TOPOLOGY_VERSION_CONFLICT")
    expect(conflict.get_by_test_id("conflict-base-version")).to_have_text("1")
    expect(conflict.get_by_test_id("conflict-current-version")).to_have_text("2")
    expect(conflict.get_by_test_id("conflict-updated-by")).to_have_text("operator-2")
    expect(page.get_by_test_id("save-topology")).to_be_disabled()
    expect(asset_row(page, "CH-03").locator("select[name$='-node_id']")).to_have_value("grp-a")
    screenshot(page, "editor-conflict")

    document = saved_topology(page)
    assert document["topology_version"] == 2
    assert attached(document)["CH-03"] == "grp-b"

    page.get_by_test_id("load-latest").click()
    expect(page.get_by_test_id("base-version")).to_have_text("2")
    expect(node_row(page, "grp-b").locator("input[name$='-name']")).to_have_value("Bay B east")
    asset_row(page, "CH-03").locator("select[name$='-node_id']").select_option("grp-a")
    save(page)

    expect(page.get_by_test_id("topology-version")).to_have_text("3")
    tree = page.get_by_test_id("topology-tree")
    expect(tree.locator('li[data-node-id="grp-a"] li[data-asset-id="CH-03"]')).to_be_visible()
    document = saved_topology(page)
    assert attached(document)["CH-03"] == "grp-a"
    assert {n["node_id"]: n["name"] for n in document["nodes"]}["grp-b"] == "Bay B east"
