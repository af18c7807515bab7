"""GET/PUT topology, revisions, the card and list over HTTP."""

import pytest

from microgrid.topology.models import Asset, MicrogridNode, TopologyRevision

URL = "/api/microgrids/MG.NORTH-1/topology/"


def put(client, body):
    return client.put(URL, body, format="json")


@pytest.mark.django_db
def test_topology_read_is_one_response_in_tree_order(operator_api, microgrid):
    response = operator_api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["microgrid_id"] == "MG.NORTH-1"
    assert body["depot_id"] == "DEPOT-N"
    assert body["depot_name"] == "North Depot"
    assert body["topology_version"] == 1
    assert [n["node_id"] for n in body["nodes"]] == ["grid", "sb-1", "grp-a", "grp-b"]
    assert [a["asset_id"] for a in body["assets"]] == [
        "CH-01",
        "CH-02",
        "CH-03",
        "M-GRID",
        "PV-1",
        "SITE",
    ]
    assert body["nodes"][1] == {
        "node_id": "sb-1",
        "parent_id": "grid",
        "kind": "SWITCHBOARD",
        "name": "Board 1",
        "physical_rating_kw": 400.0,
        "voltage_v": 230.0,
        "phases": 3,
        "rating_a": None,
        "max_unbalance_a": None,
    }
    assert body["assets"][0] == {
        "asset_id": "CH-01",
        "node_id": "grp-a",
        "kind": "CHARGER",
        "name": "Charger 1",
        "max_power_kw": 150.0,
        "min_power_kw": 4.1,
        "priority": 0,
        "failsafe_power_kw": 4.1,
        "phases": 3,
        "phase_rotation": "L1L2L3",
        "min_current_a": None,
        "max_current_a": None,
        "station_id": None,
        "evse_id": None,
    }
    assert body["assets"][3] == {
        "asset_id": "M-GRID",
        "node_id": "grid",
        "kind": "METER",
        "name": "Grid meter",
    }


@pytest.mark.django_db
def test_a_client_can_put_back_what_it_read_edited(operator_api, microgrid):
    doc = operator_api.get(URL).json()
    doc["base_version"] = doc["topology_version"]
    doc["nodes"][3]["name"] = "Bay B renamed"
    response = put(operator_api, doc)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["topology_version"] == 2
    assert body["updated_by"] == "operator-user"
    assert body["nodes"][3]["name"] == "Bay B renamed"
    assert TopologyRevision.objects.filter(microgrid=microgrid).count() == 2


@pytest.mark.django_db
def test_moving_and_removing_nodes_and_assets_is_applied(operator_api, microgrid, small_topology):
    nodes = [n for n in small_topology["nodes"] if n["node_id"] != "grp-b"]
    nodes.append(
        {
            "node_id": "grp-c",
            "parent_id": "grid",
            "kind": "CHARGER_GROUP",
            "name": "C",
            "physical_rating_kw": 100,
        }
    )
    nodes[2]["parent_id"] = "grp-c" if False else "grid"  # grp-a moves under the root
    assets = [a for a in small_topology["assets"] if a["asset_id"] != "CH-03"]
    assets[1]["node_id"] = "grp-c"
    response = put(operator_api, {"base_version": 1, "nodes": nodes, "assets": assets})
    assert response.status_code == 200, response.json()
    assert sorted(
        MicrogridNode.objects.filter(microgrid=microgrid).values_list("node_id", flat=True)
    ) == ["grid", "grp-a", "grp-c", "sb-1"]
    assert MicrogridNode.objects.get(microgrid=microgrid, node_id="grp-a").parent.node_id == "grid"
    assert Asset.objects.get(microgrid=microgrid, asset_id="CH-02").node.node_id == "grp-c"
    assert not Asset.objects.filter(asset_id="CH-03").exists()
    revision = operator_api.get(f"{URL}revisions/2/").json()
    assert revision["changes"]["nodes_added"] == ["grp-c"]
    assert revision["changes"]["nodes_removed"] == ["grp-b"]
    assert revision["changes"]["assets_removed"] == ["CH-03"]


@pytest.mark.django_db
def test_stale_topology_edit_is_rejected_with_conflict_and_nothing_changes(
    operator_api, microgrid, small_topology
):
    first = put(operator_api, {"base_version": 1, **small_topology})
    assert first.status_code == 200
    stale = {"base_version": 1, **small_topology}
    stale["nodes"][1]["name"] = "Stale edit"
    response = put(operator_api, stale)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "TOPOLOGY_VERSION_CONFLICT"
    assert body["details"]["base_version"] == 1
    assert body["details"]["current_version"] == 2
    assert body["details"]["updated_by"] == "operator-user"
    assert body["details"]["updated_at"]
    assert MicrogridNode.objects.get(microgrid=microgrid, node_id="sb-1").name == "Board 1"


@pytest.mark.django_db
def test_invalid_save_answers_422_with_all_errors_and_saves_nothing(
    operator_api, microgrid, small_topology
):
    small_topology["nodes"][1]["parent_id"] = "grp-a"
    small_topology["assets"][0]["node_id"] = "missing"
    before = (
        MicrogridNode.objects.count(),
        Asset.objects.count(),
        TopologyRevision.objects.count(),
    )
    response = put(operator_api, {"base_version": 1, **small_topology})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "ASSET_NODE_NOT_FOUND"
    assert [(e["code"], e.get("node_id") or e.get("asset_id")) for e in body["errors"]] == [
        ("ASSET_NODE_NOT_FOUND", "CH-01"),
        ("TOPOLOGY_CYCLE", "grp-a"),
    ]
    assert (
        MicrogridNode.objects.count(),
        Asset.objects.count(),
        TopologyRevision.objects.count(),
    ) == before
    microgrid.refresh_from_db()
    assert microgrid.topology_version == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ([], 400, "MALFORMED_REQUEST"),
        ({"nodes": [], "assets": []}, 422, "FIELD_INVALID"),
        ({"base_version": "1", "nodes": [], "assets": []}, 422, "FIELD_INVALID"),
        ({"base_version": 1, "nodes": [], "assets": [], "extra": 1}, 422, "FIELD_INVALID"),
        ({"base_version": 1, "nodes": [], "assets": []}, 422, "TOPOLOGY_ROOT_INVALID"),
    ],
)
def test_bad_bodies_get_the_error_body(operator_api, microgrid, body, status, code):
    response = put(operator_api, body)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert set(response.json()) >= {"code", "message", "details"}


@pytest.mark.django_db
def test_not_json_is_malformed(operator_api, microgrid):
    response = operator_api.generic("PUT", URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_REQUEST"


@pytest.mark.django_db
def test_nan_in_json_is_refused(operator_api, microgrid):
    response = operator_api.generic(
        "PUT",
        URL,
        '{"base_version": 1, "nodes": [{"physical_rating_kw": NaN}], "assets": []}',
        content_type="application/json",
    )
    assert response.status_code == 400


@pytest.mark.django_db
def test_first_save_of_a_new_microgrid_makes_version_1(
    operator_api, empty_microgrid, small_topology
):
    assert operator_api.get(URL).json()["topology_version"] == 0
    response = put(operator_api, {"base_version": 0, **small_topology})
    assert response.status_code == 200
    assert response.json()["topology_version"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/microgrids/NOPE/",
        "/api/microgrids/NOPE/topology/",
        "/api/microgrids/NOPE/topology/revisions/",
    ],
)
def test_unknown_microgrid_is_404_microgrid_not_found(operator_api, url):
    response = operator_api.get(url)
    assert response.status_code == 404
    assert response.json()["code"] == "MICROGRID_NOT_FOUND"


@pytest.mark.django_db
def test_unknown_revision_is_404(operator_api, microgrid):
    response = operator_api.get(f"{URL}revisions/99/")
    assert response.status_code == 404
    assert response.json()["code"] == "REVISION_NOT_FOUND"


@pytest.mark.django_db
def test_revisions_list_newest_first(operator_api, microgrid, small_topology):
    put(operator_api, {"base_version": 1, **small_topology})
    body = operator_api.get(f"{URL}revisions/").json()
    assert [r["version"] for r in body["revisions"]] == [2, 1]


@pytest.mark.django_db
def test_anonymous_callers_are_refused(anon_api, microgrid):
    for url in ("/api/microgrids/", URL, "/api/microgrids/MG.NORTH-1/"):
        response = anon_api.get(url)
        assert response.status_code == 401
        assert response.json()["code"] == "NOT_AUTHENTICATED"


@pytest.mark.django_db
def test_integration_role_cannot_read_canonical_topology(integration_api, microgrid):
    response = integration_api.get(URL)
    assert response.status_code == 403
    assert response.json()["code"] == "PERMISSION_DENIED"


@pytest.mark.django_db
def test_revoked_token_is_refused(operator_api, microgrid):
    from django.utils import timezone

    from microgrid.common.models import ApiToken

    ApiToken.objects.update(revoked_at=timezone.now())
    assert operator_api.get(URL).status_code == 401


@pytest.mark.django_db
def test_topology_read_query_count_does_not_grow_with_the_tree(
    operator_api, microgrid, django_assert_max_num_queries
):
    nodes = [
        {
            "node_id": "grid",
            "parent_id": None,
            "kind": "GRID_CONNECTION",
            "name": "G",
            "physical_rating_kw": 100000,
        }
    ]
    assets = []
    for i in range(60):
        nodes.append(
            {
                "node_id": f"sb-{i}",
                "parent_id": "grid",
                "kind": "SWITCHBOARD",
                "name": f"S{i}",
                "physical_rating_kw": 1000,
            }
        )
        for j in range(4):
            assets.append(
                {
                    "asset_id": f"CH-{i}-{j}",
                    "node_id": f"sb-{i}",
                    "kind": "CHARGER",
                    "name": "c",
                    "max_power_kw": 22,
                }
            )
    assert (
        put(operator_api, {"base_version": 1, "nodes": nodes, "assets": assets}).status_code == 200
    )
    with django_assert_max_num_queries(8):
        response = operator_api.get(URL)
    assert len(response.json()["assets"]) == 240


@pytest.mark.django_db
def test_support_creates_a_microgrid_and_a_duplicate_is_409(support_api, operator_api):
    body = {
        "microgrid_id": "MG.S-1",
        "name": "South",
        "depot": {"depot_id": "DEPOT-S", "name": "South Depot", "timezone": "Europe/Berlin"},
    }
    response = support_api.post("/api/microgrids/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["topology_version"] == 0
    assert (
        support_api.post("/api/microgrids/", body, format="json").json()["code"]
        == "MICROGRID_EXISTS"
    )
    assert operator_api.post("/api/microgrids/", body, format="json").status_code == 403


@pytest.mark.django_db
def test_microgrid_create_refuses_a_bad_timezone(support_api):
    body = {
        "microgrid_id": "MG.S-1",
        "name": "South",
        "depot": {"depot_id": "DEPOT-S", "name": "South Depot", "timezone": "Mars/Olympus"},
    }
    response = support_api.post("/api/microgrids/", body, format="json")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "depot.timezone"


@pytest.mark.django_db
def test_list_filters_by_depot(operator_api, microgrid):
    assert len(operator_api.get("/api/microgrids/?depot_id=DEPOT-N").json()["microgrids"]) == 1
    assert operator_api.get("/api/microgrids/?depot_id=OTHER").json()["microgrids"] == []


@pytest.mark.django_db
def test_card_shows_identity_depot_and_version(operator_api, microgrid):
    card = operator_api.get("/api/microgrids/MG.NORTH-1/").json()
    assert card["microgrid_id"] == "MG.NORTH-1"
    assert card["depot"] == {
        "depot_id": "DEPOT-N",
        "name": "North Depot",
        "timezone": "Europe/Amsterdam",
    }
    assert card["topology_version"] == 1


@pytest.mark.django_db
def test_history_records_who_changed_a_node(operator_api, microgrid, small_topology):
    small_topology["nodes"][1]["name"] = "Renamed"
    put(operator_api, {"base_version": 1, **small_topology})
    node = MicrogridNode.objects.get(microgrid=microgrid, node_id="sb-1")
    latest = node.history.first()
    assert latest.name == "Renamed"
    assert latest.history_user.username == "operator-user"


@pytest.mark.django_db
def test_method_not_allowed_has_error_body(operator_api, microgrid):
    response = operator_api.delete(URL)
    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.django_db
def test_unknown_api_path_is_json_404(operator_api):
    response = operator_api.get("/api/nothing/here/")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


@pytest.mark.django_db
def test_oversized_body_is_413(operator_api, microgrid, settings):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    response = operator_api.generic("PUT", URL, "x" * 2000, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "REQUEST_TOO_LARGE"


@pytest.mark.django_db
def test_microgrid_delete_removes_the_whole_tree_and_its_rows(microgrid):
    from balancing.services import cycle_request, trigger_of
    from microgrid.topology.models import Depot, Microgrid
    from microgrid.topology.services import microgrid_delete

    cycle_request(microgrid=microgrid, trigger=trigger_of("API"))
    microgrid_delete(microgrid=microgrid)
    assert not Microgrid.objects.exists()
    assert not MicrogridNode.objects.exists()
    assert not Asset.objects.exists()
    assert not Depot.objects.filter(depot_id="DEPOT-N").exists()
