"""The overlap rule of spec 3.4 on a tree, and scope parsing (pure)."""

import pytest

from microgrid.capabilities.scopes import Scope, overlaps, parse_scope
from microgrid.topology.tree import ancestors_map

# grid > sb-1 > (grp-a, grp-b); grid > sb-2 > grp-c
ANCESTORS = ancestors_map(
    [
        ("grid", None),
        ("sb-1", "grid"),
        ("grp-a", "sb-1"),
        ("grp-b", "sb-1"),
        ("sb-2", "grid"),
        ("grp-c", "sb-2"),
    ]
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Scope.microgrid(), Scope.microgrid()),
        (Scope.microgrid(), Scope.node("grp-a")),
        (Scope.node("grp-a"), Scope.microgrid()),
        (Scope.node("grp-a"), Scope.node("grp-a")),
        (Scope.node("sb-1"), Scope.node("grp-a")),
        (Scope.node("grp-a"), Scope.node("sb-1")),
        (Scope.node("grid"), Scope.node("grp-c")),
    ],
)
def test_the_same_node_an_ancestor_a_descendant_or_the_whole_microgrid_overlap(a, b):
    assert overlaps(a, b, ANCESTORS)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Scope.node("grp-a"), Scope.node("grp-b")),
        (Scope.node("sb-1"), Scope.node("sb-2")),
        (Scope.node("grp-a"), Scope.node("grp-c")),
        (Scope.node("sb-1"), Scope.node("grp-c")),
    ],
)
def test_disjoint_subtrees_do_not_overlap(a, b):
    assert not overlaps(a, b, ANCESTORS)
    assert not overlaps(b, a, ANCESTORS)


def test_scopes_parse_to_the_two_shapes_and_refuse_anything_else():
    assert parse_scope({"type": "MICROGRID"}) == (Scope.microgrid(), [])
    assert parse_scope({"type": "NODE", "node_id": "MG.x-1"}) == (Scope.node("MG.x-1"), [])
    for bad, field in [
        (None, "scope"),
        ("MICROGRID", "scope"),
        ({"type": "ASSET", "asset_id": "CH-01"}, "scope"),
        ({"type": "MICROGRID", "node_id": "grid"}, "scope"),
        ({"type": "NODE"}, "scope"),
        ({"type": "NODE", "node_id": "bad id"}, "scope.node_id"),
        ({"type": "NODE", "node_id": 7}, "scope.node_id"),
    ]:
        scope, errors = parse_scope(bad)
        assert scope is None
        assert [(e.code, e.field) for e in errors] == [("FIELD_INVALID", field)], bad


def test_a_scope_label_names_the_node_or_the_whole_microgrid():
    names = {"grp-a": "Bay A"}
    assert Scope.microgrid().label(names) == "Whole microgrid"
    assert Scope.node("grp-a").label(names) == "Microgrid Node Bay A (grp-a)"
    assert "no longer in the topology" in Scope.node("gone").label(names)
