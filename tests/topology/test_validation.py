"""The topology validator: every rule, exact codes and ids, deterministic order."""

import copy

import pytest

from microgrid.topology.validation import validate_topology
from tests.conftest import SMALL_TOPOLOGY


def nodes_assets():
    data = copy.deepcopy(SMALL_TOPOLOGY)
    return data["nodes"], data["assets"]


def codes(result):
    return [(e.code, e.node_id or e.asset_id) for e in result.errors]


def test_a_valid_topology_has_no_errors_and_comes_back_in_tree_order():
    nodes, assets = nodes_assets()
    result = validate_topology(list(reversed(nodes)), assets)
    assert result.ok
    assert [n["node_id"] for n in result.topology.nodes] == ["grid", "sb-1", "grp-a", "grp-b"]
    charger = next(a for a in result.topology.assets if a["asset_id"] == "CH-02")
    assert charger["failsafe_power_kw"] == 4.1  # defaults to the minimum
    assert charger["priority"] == 0


def test_no_root_is_one_root_invalid_error_without_node_id():
    nodes, assets = nodes_assets()
    nodes[0]["kind"] = "SWITCHBOARD"
    result = validate_topology(nodes, assets)
    assert ("TOPOLOGY_ROOT_INVALID", None) in codes(result)
    assert ("TOPOLOGY_ORPHAN_NODE", "grid") in codes(result)


def test_two_roots_are_refused():
    nodes, assets = nodes_assets()
    nodes.append(
        {
            "node_id": "grid2",
            "parent_id": None,
            "kind": "GRID_CONNECTION",
            "name": "G2",
            "physical_rating_kw": 10,
        }
    )
    result = validate_topology(nodes, assets)
    assert codes(result) == [("TOPOLOGY_ROOT_INVALID", None)]
    assert result.errors[0].details["roots"] == ["grid", "grid2"]


def test_grid_connection_with_a_parent_is_root_invalid():
    nodes, assets = nodes_assets()
    nodes.append(
        {
            "node_id": "gc2",
            "parent_id": "sb-1",
            "kind": "GRID_CONNECTION",
            "name": "G2",
            "physical_rating_kw": 10,
        }
    )
    assert codes(validate_topology(nodes, assets)) == [("TOPOLOGY_ROOT_INVALID", None)]


def test_a_node_whose_parent_is_missing_is_an_orphan_naming_the_parent():
    nodes, assets = nodes_assets()
    nodes[3]["parent_id"] = "sb-9"
    result = validate_topology(nodes, assets)
    assert codes(result) == [("TOPOLOGY_ORPHAN_NODE", "grp-b")]
    assert result.errors[0].details == {"parent_id": "sb-9"}


def test_a_non_root_node_without_parent_is_an_orphan():
    nodes, assets = nodes_assets()
    nodes[2]["parent_id"] = None
    result = validate_topology(nodes, assets)
    assert codes(result) == [("TOPOLOGY_ORPHAN_NODE", "grp-a")]
    assert result.errors[0].details == {"parent_id": None}


def test_a_cycle_lists_its_nodes_sorted_and_not_the_nodes_hanging_below_it():
    nodes, assets = nodes_assets()
    nodes[1]["parent_id"] = "grp-a"  # sb-1 <-> grp-a; grp-b hangs below sb-1
    result = validate_topology(nodes, assets)
    assert codes(result) == [("TOPOLOGY_CYCLE", "grp-a")]
    assert result.errors[0].details == {"node_ids": ["grp-a", "sb-1"]}


def test_a_self_parent_is_a_cycle_of_one():
    nodes, assets = nodes_assets()
    nodes[3]["parent_id"] = "grp-b"
    assert codes(validate_topology(nodes, assets)) == [("TOPOLOGY_CYCLE", "grp-b")]


def test_two_separate_cycles_are_two_errors():
    nodes, assets = nodes_assets()
    nodes += [
        {
            "node_id": "x1",
            "parent_id": "x2",
            "kind": "FEEDER",
            "name": "x1",
            "physical_rating_kw": 1,
        },
        {
            "node_id": "x2",
            "parent_id": "x1",
            "kind": "FEEDER",
            "name": "x2",
            "physical_rating_kw": 1,
        },
        {
            "node_id": "y1",
            "parent_id": "y1",
            "kind": "FEEDER",
            "name": "y1",
            "physical_rating_kw": 1,
        },
    ]
    assert codes(validate_topology(nodes, assets)) == [
        ("TOPOLOGY_CYCLE", "x1"),
        ("TOPOLOGY_CYCLE", "y1"),
    ]


def test_duplicate_node_and_asset_ids_are_reported_once_each():
    nodes, assets = nodes_assets()
    nodes.append(copy.deepcopy(nodes[3]))
    nodes.append(copy.deepcopy(nodes[3]))
    assets.append(copy.deepcopy(assets[0]))
    result = validate_topology(nodes, assets)
    assert codes(result) == [("TOPOLOGY_DUPLICATE_ID", "CH-01"), ("TOPOLOGY_DUPLICATE_ID", "grp-b")]
    assert result.errors[1].details == {"count": 3}


def test_an_asset_on_a_missing_node_is_reported():
    nodes, assets = nodes_assets()
    assets[0]["node_id"] = "grp-z"
    result = validate_topology(nodes, assets)
    assert codes(result) == [("ASSET_NODE_NOT_FOUND", "CH-01")]
    assert result.errors[0].details == {"node_id": "grp-z"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"physical_rating_kw": 0}, "physical_rating_kw"),
        ({"physical_rating_kw": -5}, "physical_rating_kw"),
        ({"physical_rating_kw": "100"}, "physical_rating_kw"),
        ({"physical_rating_kw": True}, "physical_rating_kw"),
        ({"physical_rating_kw": float("nan")}, "physical_rating_kw"),
        ({"physical_rating_kw": float("inf")}, "physical_rating_kw"),
        ({"kind": "TRANSFORMER"}, "kind"),
        ({"phases": 2}, "phases"),
        ({"voltage_v": 0}, "voltage_v"),
        ({"name": ""}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_node_fields_are_field_invalid_naming_node_and_field(change, field):
    nodes, assets = nodes_assets()
    nodes[2].update(change)
    result = validate_topology(nodes, assets)
    assert [(e.code, e.node_id, e.field) for e in result.errors] == [
        ("FIELD_INVALID", "grp-a", field)
    ]


def test_a_bad_node_id_is_field_invalid():
    nodes, assets = nodes_assets()
    nodes[3]["node_id"] = "bad id!"
    result = validate_topology(nodes, assets)
    assert ("FIELD_INVALID", "node_id") in [(e.code, e.field) for e in result.errors]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_power_kw": 0}, "max_power_kw"),
        ({"min_power_kw": 200}, "min_power_kw"),
        ({"failsafe_power_kw": 151}, "failsafe_power_kw"),
        ({"priority": 1.5}, "priority"),
        ({"fallback_kw": 3}, "fallback_kw"),  # not a charger field
        ({"kind": "ROBOT"}, "kind"),
    ],
)
def test_bad_asset_fields_are_field_invalid_naming_asset_and_field(change, field):
    nodes, assets = nodes_assets()
    assets[0].update(change)
    result = validate_topology(nodes, assets)
    assert [(e.code, e.asset_id, e.field) for e in result.errors] == [
        ("FIELD_INVALID", "CH-01", field)
    ]


def test_removing_a_referenced_node_is_node_in_use_with_the_references():
    nodes, assets = nodes_assets()
    nodes = [n for n in nodes if n["node_id"] != "grp-b"]
    assets = [a for a in assets if a["node_id"] != "grp-b"]
    refs = {("node", "grp-b"): [{"type": "LIMIT_POLICY", "id": "7"}]}
    result = validate_topology(
        nodes,
        assets,
        current_node_ids=frozenset({"grid", "sb-1", "grp-a", "grp-b"}),
        references=refs,
    )
    assert codes(result) == [("NODE_IN_USE", "grp-b")]
    assert result.errors[0].details == {"references": [{"type": "LIMIT_POLICY", "id": "7"}]}


def test_every_violation_is_listed_at_once_sorted_by_code_then_id():
    nodes, assets = nodes_assets()
    nodes[0]["kind"] = "FEEDER"  # no root, grid becomes an orphan
    nodes[3]["parent_id"] = "grp-b"  # self cycle
    nodes[2]["physical_rating_kw"] = -1
    assets[1]["node_id"] = "nowhere"
    assets.append(copy.deepcopy(assets[0]))
    result = validate_topology(nodes, assets)
    assert codes(result) == [
        ("ASSET_NODE_NOT_FOUND", "CH-02"),
        ("FIELD_INVALID", "grp-a"),
        ("TOPOLOGY_CYCLE", "grp-b"),
        ("TOPOLOGY_DUPLICATE_ID", "CH-01"),
        ("TOPOLOGY_ORPHAN_NODE", "grid"),
        ("TOPOLOGY_ROOT_INVALID", None),
    ]


def test_the_same_bad_input_always_gives_the_same_errors_whatever_the_order():
    nodes, assets = nodes_assets()
    nodes[1]["parent_id"] = "grp-a"
    assets[0]["node_id"] = "zz"
    first = validate_topology(nodes, assets).errors
    second = validate_topology(list(reversed(nodes)), list(reversed(assets))).errors
    assert [e.to_dict() for e in first] == [e.to_dict() for e in second]


def test_non_list_nodes_and_non_object_items_are_field_invalid_not_crashes():
    result = validate_topology("nodes", [1, None])
    assert {e.field for e in result.errors} >= {"nodes", "assets[0]", "assets[1]"}
