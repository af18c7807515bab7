"""Manage pages for microgrids and the read-only topology view."""

import re

import pytest

LEGACY_TERMS = re.compile(r"circuit", re.IGNORECASE)


@pytest.mark.django_db
def test_pages_require_login(client, microgrid):
    response = client.get("/manage/microgrids/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_integration_users_cannot_open_manage_pages(client, make_user, microgrid):
    client.force_login(make_user("integration"))
    assert client.get("/manage/microgrids/").status_code == 403


@pytest.mark.django_db
def test_microgrid_list_shows_each_microgrid(operator_client, microgrid):
    html = operator_client.get("/manage/microgrids/").content.decode()
    assert "MG.NORTH-1" in html
    assert "North Depot" in html


@pytest.mark.django_db
def test_topology_view_shows_identity_version_diagram_and_tree(operator_client, microgrid):
    response = operator_client.get("/manage/microgrids/MG.NORTH-1/topology/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html
    assert 'data-testid="topology-tree"' in html
    assert "DEPOT-N" in html and "North Depot" in html
    assert 'data-testid="topology-version">1<' in html
    # every asset is rendered under a visible node of the same view
    tree = html.split('data-testid="topology-tree"')[1]
    for node_id in ("grid", "sb-1", "grp-a", "grp-b"):
        assert f'data-node-id="{node_id}"' in tree
    for asset_id in ("CH-01", "CH-02", "CH-03", "SITE", "PV-1", "M-GRID"):
        assert f'data-asset-id="{asset_id}"' in tree
    ch3 = tree.index('data-asset-id="CH-03"')
    assert tree.rindex('data-node-id="grp-b"', 0, ch3) > tree.rindex('data-node-id="grp-a"', 0, ch3)


@pytest.mark.django_db
def test_card_page_shows_identity_and_diagram(operator_client, microgrid):
    html = operator_client.get("/manage/microgrids/MG.NORTH-1/").content.decode()
    assert "MG.NORTH-1" in html and "Europe/Amsterdam" in html and "<svg" in html


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/manage/microgrids/NOPE/", "/manage/microgrids/NOPE/topology/"])
def test_unknown_microgrid_page_is_a_deterministic_not_found(operator_client, url):
    response = operator_client.get(url)
    assert response.status_code == 404
    assert "Microgrid not found" in response.content.decode()
    assert "MICROGRID_NOT_FOUND" in response.content.decode()


@pytest.mark.django_db
def test_canonical_pages_never_say_circuit(operator_client, microgrid):
    for url in (
        "/manage/microgrids/",
        "/manage/microgrids/MG.NORTH-1/",
        "/manage/microgrids/MG.NORTH-1/topology/",
    ):
        html = operator_client.get(url).content.decode()
        assert not LEGACY_TERMS.search(html), url


@pytest.mark.django_db
def test_topology_page_query_count_does_not_grow_with_the_tree(
    operator_client, microgrid, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        operator_client.get("/manage/microgrids/MG.NORTH-1/topology/")


@pytest.mark.django_db
def test_admin_is_for_support_staff_only(client, make_user, microgrid):
    client.force_login(make_user("operator"))
    assert client.get("/admin/").status_code == 302
    client.force_login(make_user("support"))
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/topology/microgridnode/").status_code == 200


@pytest.mark.django_db
def test_admin_topology_json_editor_saves_through_the_validator(client, make_user, microgrid):
    import json

    from microgrid.topology.models import Microgrid

    client.force_login(make_user("support"))
    url = f"/admin/topology/microgrid/{microgrid.pk}/topology/"
    page = client.get(url)
    assert page.status_code == 200
    bad = {
        "nodes": [
            {
                "node_id": "x",
                "parent_id": "x",
                "kind": "FEEDER",
                "name": "x",
                "physical_rating_kw": 1,
            }
        ],
        "assets": [],
    }
    response = client.post(url, {"base_version": 1, "document": json.dumps(bad)})
    assert "TOPOLOGY_CYCLE" in response.content.decode()
    assert Microgrid.objects.get(pk=microgrid.pk).topology_version == 1
