"""`load_profile` with an `oscp_peers:` section, and the topology guard of group bindings."""

from __future__ import annotations

import copy
import json

import pytest

from microgrid.common.errors import DomainError
from microgrid.envelopes.models import OscpGroupBinding, OscpPeer
from simulator.loader import check_profile, load_profile

from .conftest import FORECAST, forecast_body

PROFILE = {
    "depot": {"depot_id": "DEPOT-P", "name": "Profile Depot", "timezone": "Europe/Amsterdam"},
    "microgrid": {"microgrid_id": "MG-N", "name": "North Depot microgrid"},
    "nodes": [
        {"node_id": "grid", "parent_id": None, "kind": "GRID_CONNECTION", "name": "Grid",
         "physical_rating_kw": 800},
        {"node_id": "sb-1", "parent_id": "grid", "kind": "SWITCHBOARD", "name": "Board 1",
         "physical_rating_kw": 400},
    ],
    "assets": [],
    "oscp_peers": [
        {"name": "dso-north", "token": "a-long-random-token", "heartbeat_interval_s": 60,
         "groups": [{"group_id": "GRP-N", "scope": {"type": "MICROGRID"}},
                    {"group_id": "GRP-S", "scope": {"type": "NODE", "node_id": "sb-1"}}]},
    ],
}  # fmt: skip


def profile(**changes):
    out = copy.deepcopy(PROFILE)
    out.update(changes)
    return out


def bindings():
    return sorted(
        (
            b.peer.name,
            b.group_id,
            b.microgrid.microgrid_id,
            json.dumps(b.scope_dict(), sort_keys=True),
        )
        for b in OscpGroupBinding.objects.select_related("peer", "microgrid", "node")
    )


@pytest.mark.django_db
def test_a_profile_creates_the_peer_with_a_hashed_token_and_its_bindings(oscp_client):
    load_profile(profile())
    peer = OscpPeer.objects.get()
    assert (peer.name, peer.heartbeat_interval_s, peer.token_prefix) == (
        "dso-north",
        60,
        "a-long-r",
    )
    assert "a-long-random-token" not in peer.token_hash
    assert bindings() == [
        ("dso-north", "GRP-N", "MG-N", '{"type": "MICROGRID"}'),
        ("dso-north", "GRP-S", "MG-N", '{"node_id": "sb-1", "type": "NODE"}'),
    ]
    # the profile's token is what the peer authenticates with
    response = oscp_client(FORECAST, forecast_body(group_id="GRP-S"), token="a-long-random-token")
    assert response.status_code == 204


@pytest.mark.django_db
def test_loading_the_same_profile_again_changes_nothing():
    load_profile(profile())
    rows = (OscpPeer.history.count(), OscpGroupBinding.history.count())
    load_profile(profile())
    assert (OscpPeer.history.count(), OscpGroupBinding.history.count()) == rows


@pytest.mark.django_db
def test_a_changed_profile_rebinds_and_removes_groups_and_rotates_the_token():
    load_profile(profile())
    changed = profile()
    changed["oscp_peers"][0]["token"] = "another-long-random-token"
    changed["oscp_peers"][0]["groups"] = [
        {"group_id": "GRP-N", "scope": {"type": "NODE", "node_id": "sb-1"}}
    ]
    load_profile(changed)
    assert bindings() == [("dso-north", "GRP-N", "MG-N", '{"node_id": "sb-1", "type": "NODE"}')]
    assert OscpPeer.objects.get().token_prefix == "another-"


@pytest.mark.django_db
def test_an_invalid_oscp_section_is_refused_naming_every_problem():
    bad = profile(
        oscp_peers=[
            {"name": "dso north", "token": "short", "heartbeat_interval_s": 0, "colour": "red",
             "groups": [{"group_id": "G1", "scope": {"type": "NODE", "node_id": "nowhere"}},
                        {"group_id": "G1", "scope": {"type": "ASSET", "asset_id": "X"}}]},
            {"name": "other", "token": "short"},
        ]
    )  # fmt: skip
    found = sorted((e.code, e.field) for e in check_profile(bad))
    assert found == [
        ("FIELD_INVALID", "oscp_peers[0].groups[1].group_id"),
        ("FIELD_INVALID", "oscp_peers[0].groups[1].scope"),
        ("FIELD_INVALID", "oscp_peers[0].heartbeat_interval_s"),
        ("FIELD_INVALID", "oscp_peers[0].name"),
        ("FIELD_INVALID", "oscp_peers[0].token"),
        ("FIELD_INVALID", "oscp_peers[1].token"),
        ("FIELD_INVALID", "oscp_peers[1].token"),
        ("NODE_NOT_FOUND", "oscp_peers[0].groups[0].scope.node_id"),
        ("PROFILE_INVALID", "oscp_peers[0].colour"),
    ]
    with pytest.raises(DomainError):
        load_profile(bad)
    assert not OscpPeer.objects.exists()


@pytest.mark.django_db
def test_a_group_bound_to_another_microgrid_refuses_the_whole_load(microgrid, peer):
    from microgrid.envelopes.services import oscp_group_binding_save, oscp_peer_save

    oscp_peer_save(name="dso-north", token="a-long-random-token")
    oscp_group_binding_save(
        peer=OscpPeer.objects.get(name="dso-north"),
        group_id="GRP-N",
        microgrid=microgrid,
        scope={"type": "MICROGRID"},
    )
    with pytest.raises(DomainError) as caught:
        load_profile(profile())
    assert caught.value.code == "OSCP_GROUP_ALREADY_BOUND"
    assert caught.value.errors[0].field == "oscp_peers[0].groups[0]"
    assert not OscpGroupBinding.objects.filter(microgrid__microgrid_id="MG-N").exists()


@pytest.mark.django_db
def test_a_node_an_oscp_group_is_bound_to_cannot_be_removed(bound, peer, small_topology):
    from microgrid.envelopes.services import oscp_group_binding_save
    from microgrid.topology.services import topology_replace

    oscp_group_binding_save(
        peer=peer, group_id="GRP-B", microgrid=bound, scope={"type": "NODE", "node_id": "grp-b"}
    )
    nodes = [n for n in small_topology["nodes"] if n["node_id"] != "grp-b"]
    assets = [
        {**a, "node_id": "grp-a"} if a["node_id"] == "grp-b" else a
        for a in small_topology["assets"]
    ]
    with pytest.raises(DomainError) as caught:
        topology_replace(microgrid=bound, base_version=1, nodes=nodes, assets=assets)
    assert caught.value.code == "NODE_IN_USE"
    refs = caught.value.errors[0].details["references"]
    assert {"type": "OSCP_GROUP_BINDING", "id": "GRP-B", "peer": "dso-north"} in refs
