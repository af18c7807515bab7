"""Manage: topology history (who, when, what changed, the snapshot) and live load on diagrams."""

import copy

import pytest

from microgrid.topology.services import topology_replace
from tests.fleet.test_overview import cycle


@pytest.mark.django_db
def test_history_lists_versions_and_a_version_shows_its_field_changes(
    operator_client, microgrid, small_topology, make_user
):
    editor = make_user("operator", "alice")
    nodes = copy.deepcopy(small_topology["nodes"])
    nodes[2]["name"] = "Bay A (north)"
    topology_replace(
        microgrid=microgrid,
        base_version=1,
        nodes=nodes,
        assets=small_topology["assets"],
        user=editor,
    )
    html = operator_client.get("/manage/microgrids/MG.NORTH-1/topology/revisions/").content.decode()
    assert 'data-testid="revision-list"' in html
    assert "v2" in html and "v1" in html and "alice" in html
    assert "CET" in html or "CEST" in html  # the depot's zone, named
    detail = operator_client.get("/manage/microgrids/MG.NORTH-1/topology/revisions/2/")
    assert detail.status_code == 200
    text = detail.content.decode()
    changes = text.split('data-testid="revision-field-changes"')[1].split("</table>")[0]
    assert "grp-a" in changes and "Bay A (north)" in changes and "Bay A" in changes
    assert 'data-testid="revision-snapshot"' in text
    missing = operator_client.get("/manage/microgrids/MG.NORTH-1/topology/revisions/9/")
    assert missing.status_code == 404


@pytest.mark.django_db
def test_diagrams_and_card_show_each_nodes_load_against_its_limit(operator_client, microgrid):
    before = operator_client.get("/manage/microgrids/MG.NORTH-1/").content.decode()
    assert "mg-load" not in before  # no cycle yet: nothing to show
    run = cycle(microgrid, grid_kw=300)
    root = run.document["nodes"][0]
    pct = 100 * (root["uncontrolled_load_kw"] + root["allocated_kw"]) / root["effective_limit_kw"]
    card = operator_client.get("/manage/microgrids/MG.NORTH-1/").content.decode()
    assert card.count('class="mg-load"') == len(run.document["nodes"])
    assert f'data-load-pct="{pct:.1f}"' in card
    assert 'data-testid="card-root-load"' in card and f"{pct:.0f} %" in card
    assert 'id="card-live" data-live-region' in card  # refreshed in place by live.js
    page = operator_client.get("/manage/microgrids/MG.NORTH-1/topology/").content.decode()
    assert page.count('class="mg-load"') == len(run.document["nodes"])
    assert 'data-testid="node-load"' in page
