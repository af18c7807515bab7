"""Bindings and the rest of the model: bound Microgrid Nodes cannot be removed, and profiles
declare bindings (`capability_bindings:`, spec 8.1) idempotently."""

import copy

import pytest

from microgrid.capabilities.api.serializers import transfer_input
from microgrid.capabilities.models import CapabilityBinding
from microgrid.capabilities.services import capability_binding_release
from microgrid.common.errors import DomainError
from microgrid.topology.models import Microgrid
from microgrid.topology.services import topology_replace
from simulator.loader import check_profile, load_profile
from tests.capabilities.conftest import MICROGRID, node
from tests.conftest import SMALL_TOPOLOGY


def without_grp_b(topology):
    nodes = [n for n in topology["nodes"] if n["node_id"] != "grp-b"]
    assets = [a for a in topology["assets"] if a["node_id"] != "grp-b"]
    return nodes, assets


@pytest.mark.django_db
def test_a_node_scoped_by_an_active_binding_cannot_be_removed(microgrid, small_topology, bind):
    bind("plc-b", node("grp-b"))
    nodes, assets = without_grp_b(small_topology)
    with pytest.raises(DomainError) as caught:
        topology_replace(microgrid=microgrid, base_version=1, nodes=nodes, assets=assets)
    error = caught.value
    assert error.code == "NODE_IN_USE"
    assert error.errors[0].node_id == "grp-b"
    assert {"type": "CAPABILITY_BINDING", "id": "CB-1"} in error.errors[0].details["references"]
    microgrid.refresh_from_db()
    assert microgrid.topology_version == 1


@pytest.mark.django_db
def test_the_topology_api_names_the_binding_that_holds_a_node(
    operator_api, microgrid, small_topology, bind
):
    bind("plc-b", node("grp-b"))
    nodes, assets = without_grp_b(small_topology)
    response = operator_api.put(
        "/api/microgrids/MG.NORTH-1/topology/",
        {"base_version": 1, "nodes": nodes, "assets": assets},
        format="json",
    )
    assert response.status_code == 422
    assert response.json()["code"] == "NODE_IN_USE"


@pytest.mark.django_db
def test_once_released_the_node_can_be_removed_and_the_binding_stays_in_history(
    microgrid, small_topology, bind, operator_api
):
    bind("plc-b", node("grp-b"))
    capability_binding_release(microgrid=microgrid, binding_id="CB-1")
    nodes, assets = without_grp_b(small_topology)
    topology_replace(microgrid=microgrid, base_version=1, nodes=nodes, assets=assets)
    listed = operator_api.get("/api/microgrids/MG.NORTH-1/capabilities/").json()["bindings"]
    assert [(b["binding_id"], b["scope"], b["active"]) for b in listed] == [
        ("CB-1", node("grp-b"), False)
    ]


@pytest.mark.django_db
def test_a_whole_microgrid_binding_holds_no_node(microgrid, small_topology, bind):
    bind("ems", MICROGRID)
    nodes, assets = without_grp_b(small_topology)
    topology_replace(microgrid=microgrid, base_version=1, nodes=nodes, assets=assets)


# ---- profiles -------------------------------------------------------------------------------

PROFILE = {
    "depot": {"depot_id": "DEPOT-N", "name": "North Depot", "timezone": "Europe/Amsterdam"},
    "microgrid": {"microgrid_id": "MG-N", "name": "North Depot microgrid"},
    "nodes": SMALL_TOPOLOGY["nodes"],
    "assets": SMALL_TOPOLOGY["assets"],
    "capability_bindings": [
        {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": "grp-a"},
            "source_device_id": "plc-a",
        },
        {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": "grp-b"},
            "source_device_id": "plc-b",
        },
        {
            "capability_type": "DEMAND_RESPONSE",
            "scope": {"type": "MICROGRID"},
            "source_device_id": "aggregator",
        },
    ],
}


def profile(**changes):
    data = copy.deepcopy(PROFILE)
    data.update(changes)
    return data


def stored():
    return list(
        CapabilityBinding.objects.order_by("seq").values_list(
            "binding_id", "capability_type", "scope_type", "node_id", "source_device_id", "active"
        )
    )


@pytest.mark.django_db
def test_a_profile_binds_its_sources_and_loading_it_twice_changes_nothing():
    load_profile(profile())
    first = stored()
    assert first == [
        ("CB-1", "LOAD_MANAGEMENT", "NODE", "grp-a", "plc-a", True),
        ("CB-2", "LOAD_MANAGEMENT", "NODE", "grp-b", "plc-b", True),
        ("CB-3", "DEMAND_RESPONSE", "MICROGRID", None, "aggregator", True),
    ]
    history = CapabilityBinding.history.count()
    load_profile(profile())
    assert stored() == first
    assert CapabilityBinding.history.count() == history
    assert Microgrid.objects.count() == 1


@pytest.mark.django_db
def test_a_profile_that_competes_with_a_transferred_binding_is_refused_whole():
    from microgrid.capabilities.services import capability_binding_transfer

    load_profile(profile())
    microgrid = Microgrid.objects.get(microgrid_id="MG-N")
    capability_binding_transfer(
        microgrid=microgrid,
        **transfer_input(
            {
                "capability_type": "LOAD_MANAGEMENT",
                "scope": node("grp-a"),
                "expected_source_device_id": "plc-a",
                "new_source_device_id": "plc-z",
            }
        ),
    )
    before = stored()
    renamed = profile()
    renamed["microgrid"] = {**renamed["microgrid"], "name": "Renamed"}
    with pytest.raises(DomainError) as caught:
        load_profile(renamed)
    assert caught.value.code == "CAPABILITY_SOURCE_CONFLICT"
    assert stored() == before
    assert Microgrid.objects.get(microgrid_id="MG-N").name == "North Depot microgrid"


def test_a_profile_with_bad_or_competing_bindings_lists_every_problem():
    bad = profile(
        capability_bindings=[
            {"capability_type": "LOAD_MANAGEMENT", "scope": node("sb-1"), "source_device_id": "p1"},
            {
                "capability_type": "LOAD_MANAGEMENT",
                "scope": node("grp-a"),
                "source_device_id": "p2",
            },
            {
                "capability_type": "LOAD_MANAGEMENT",
                "scope": node("grp-z"),
                "source_device_id": "p3",
            },
            {"capability_type": "HEATING", "scope": MICROGRID, "source_device_id": "p4"},
            {"capability_type": "ENERGY_STORAGE", "scope": MICROGRID, "source": "p5"},
            # the same entry twice is harmless: a bind is idempotent
            {"capability_type": "LOAD_MANAGEMENT", "scope": node("sb-1"), "source_device_id": "p1"},
        ]
    )
    found = sorted((e.code, e.field) for e in check_profile(bad))
    assert found == [
        ("CAPABILITY_SOURCE_CONFLICT", "capability_bindings[1].scope"),
        ("FIELD_INVALID", "capability_bindings[3].capability_type"),
        ("FIELD_INVALID", "capability_bindings[4].source"),
        ("FIELD_INVALID", "capability_bindings[4].source_device_id"),
        ("NODE_NOT_FOUND", "capability_bindings[2].scope.node_id"),
    ]
    assert [(e.code, e.field) for e in check_profile(profile(capability_bindings={}))] == [
        ("FIELD_INVALID", "capability_bindings")
    ]


@pytest.mark.django_db
def test_an_invalid_profile_writes_no_binding():
    bad = profile(
        capability_bindings=[
            {"capability_type": "LOAD_MANAGEMENT", "scope": node("grp-z"), "source_device_id": "p"}
        ]
    )
    with pytest.raises(DomainError) as caught:
        load_profile(bad)
    assert caught.value.code == "NODE_NOT_FOUND"
    assert CapabilityBinding.objects.count() == 0
    assert Microgrid.objects.count() == 0
