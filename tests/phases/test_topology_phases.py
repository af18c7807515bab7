"""Per-phase fields of the topology (issue 19): node rating_a, charger phases and rotation."""

from __future__ import annotations

import pytest

from microgrid.topology.models import Asset
from microgrid.topology.validation import validate_topology

URL = "/api/microgrids/MG.NORTH-1/topology/"


def _codes_fields(result):
    return [(e.code, e.field) for e in result.errors]


def test_charger_phases_and_rotation_default_to_three_phase_unrotated(phase_topology):
    raw = phase_topology["assets"][0]
    for key in ("phases", "phase_rotation", "min_current_a", "max_current_a"):
        raw.pop(key)
    result = validate_topology(phase_topology["nodes"], phase_topology["assets"])
    assert result.ok
    charger = result.topology.assets[0]
    assert (charger["phases"], charger["phase_rotation"]) == (3, "L1L2L3")
    assert (charger["min_current_a"], charger["max_current_a"]) == (None, None)
    single = result.topology.assets[1]
    assert (single["phases"], single["phase_rotation"]) == (1, "L2")


def test_a_single_phase_charger_defaults_to_l1(phase_topology):
    del phase_topology["assets"][1]["phase_rotation"]
    result = validate_topology(phase_topology["nodes"], phase_topology["assets"])
    assert result.topology.assets[1]["phase_rotation"] == "L1"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"phases": 2}, "phases"),
        ({"phases": 3, "phase_rotation": "L1"}, "phase_rotation"),
        ({"phases": 1, "phase_rotation": "L1L2L3"}, "phase_rotation"),
        ({"phase_rotation": "L1L3L2"}, "phase_rotation"),
        ({"min_current_a": -1}, "min_current_a"),
        ({"max_current_a": 0}, "max_current_a"),
        ({"min_current_a": 20, "max_current_a": 16}, "min_current_a"),
        ({"max_current_a": "32"}, "max_current_a"),
    ],
)
def test_bad_charger_phase_fields_are_field_invalid(phase_topology, changes, field):
    phase_topology["assets"][0].update(changes)
    result = validate_topology(phase_topology["nodes"], phase_topology["assets"])
    assert ("FIELD_INVALID", field) in _codes_fields(result)
    assert all(e.asset_id == "CH-1" for e in result.errors)


@pytest.mark.parametrize("value", [0, -5, "32", float("inf"), True])
def test_a_bad_node_rating_a_is_field_invalid(phase_topology, value):
    phase_topology["nodes"][1]["rating_a"] = value
    result = validate_topology(phase_topology["nodes"], phase_topology["assets"])
    assert _codes_fields(result) == [("FIELD_INVALID", "rating_a")]
    assert result.errors[0].node_id == "feeder"


def test_phase_fields_are_not_fields_of_other_asset_kinds(phase_topology):
    phase_topology["assets"][3]["phases"] = 3
    result = validate_topology(phase_topology["nodes"], phase_topology["assets"])
    assert _codes_fields(result) == [("FIELD_INVALID", "phases")]


@pytest.mark.django_db
def test_the_topology_read_shows_the_phase_fields(operator_api, phase_microgrid):
    body = operator_api.get(URL).json()
    feeder = next(n for n in body["nodes"] if n["node_id"] == "feeder")
    assert feeder["rating_a"] == 32.0
    chargers = {a["asset_id"]: a for a in body["assets"] if a["kind"] == "CHARGER"}
    assert {k: chargers["CH-1"][k] for k in ("phases", "phase_rotation")} == {
        "phases": 1,
        "phase_rotation": "L1",
    }
    assert (chargers["CH-1"]["min_current_a"], chargers["CH-1"]["max_current_a"]) == (6.0, 32.0)
    assert chargers["CH-3"]["phases"] == 3 and chargers["CH-3"]["phase_rotation"] == "L2L3L1"
    meter = next(a for a in body["assets"] if a["asset_id"] == "M-F")
    assert "phases" not in meter


@pytest.mark.django_db
def test_a_client_can_put_back_what_it_read_and_an_edit_keeps_history(
    operator_api, phase_microgrid
):
    body = operator_api.get(URL).json()
    body["base_version"] = body["topology_version"]
    next(a for a in body["assets"] if a["asset_id"] == "CH-2")["phase_rotation"] = "L3"
    response = operator_api.put(URL, body, format="json")
    assert response.status_code == 200, response.content
    charger = Asset.objects.get(asset_id="CH-2")
    assert charger.phase_rotation == "L3"
    assert [h.phase_rotation for h in charger.history.order_by("history_id")] == ["L2", "L3"]
    revision = operator_api.get(URL + "revisions/2/").json()
    assert revision["changes"]["assets_changed"] == ["CH-2"]


@pytest.mark.django_db
def test_a_refused_phase_field_changes_nothing(operator_api, phase_microgrid):
    body = operator_api.get(URL).json()
    body["base_version"] = body["topology_version"]
    body["nodes"][1]["rating_a"] = -1
    response = operator_api.put(URL, body, format="json")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "rating_a"
    phase_microgrid.refresh_from_db()
    assert phase_microgrid.topology_version == 1


def test_a_revision_saved_before_the_phase_fields_is_not_a_change_of_every_row():
    from microgrid.topology.selectors import diff_snapshots

    old = {
        "nodes": [{"node_id": "g", "phases": 3, "voltage_v": 230.0}],
        "assets": [{"asset_id": "C", "kind": "CHARGER", "max_power_kw": 11.0}],
    }
    new = {
        "nodes": [{"node_id": "g", "phases": 3, "voltage_v": 230.0, "rating_a": None}],
        "assets": [
            {
                "asset_id": "C",
                "kind": "CHARGER",
                "max_power_kw": 11.0,
                "phases": 3,
                "phase_rotation": "L1L2L3",
                "min_current_a": None,
                "max_current_a": None,
            }
        ],
    }
    diff = diff_snapshots(old, new)
    assert diff["nodes_changed"] == [] and diff["assets_changed"] == []
    new["assets"][0]["phase_rotation"] = "L2L3L1"
    assert diff_snapshots(old, new)["assets_changed"] == ["C"]


@pytest.mark.django_db
def test_the_editor_shows_and_saves_the_phase_fields(client, make_user, phase_microgrid):
    from tests.topology.test_editor import editor_form, row_prefix

    client.force_login(make_user("operator"))
    edit = "/manage/microgrids/MG.NORTH-1/topology/edit/"
    fields = editor_form(client, edit)
    feeder = row_prefix(fields, "nodes", "feeder")
    ch2 = row_prefix(fields, "assets", "CH-2")
    ch1 = row_prefix(fields, "assets", "CH-1")
    assert fields[feeder + "rating_a"] == "32"
    assert (fields[ch1 + "phases"], fields[ch1 + "phase_rotation"]) == ("1", "L1")
    assert (fields[ch1 + "min_current_a"], fields[ch1 + "max_current_a"]) == ("6", "32")
    # Posting it unchanged changes no row; then an edit of the rating and a rotation.
    assert client.post(edit, fields).status_code == 302
    fields = editor_form(client, edit)
    fields[feeder + "rating_a"] = "25"
    fields[ch2 + "phase_rotation"] = "L3"
    response = client.post(edit, fields)
    assert response.status_code == 302
    from microgrid.topology.models import MicrogridNode, TopologyRevision

    assert MicrogridNode.objects.get(node_id="feeder").rating_a == 25.0
    assert Asset.objects.get(asset_id="CH-2").phase_rotation == "L3"
    assert TopologyRevision.objects.get(version=2).summary == "no change"
    # A rotation that does not fit the phases is refused beside its row.
    fields = editor_form(client, edit)
    fields[ch2 + "phase_rotation"] = "L2L3L1"
    response = client.post(edit, fields)
    assert response.status_code == 422
    assert "phase_rotation" in response.content.decode()
    assert Asset.objects.get(asset_id="CH-2").phase_rotation == "L3"
