"""The `legacy_circuits:` profile section (spec 8.1) through the loader."""

from __future__ import annotations

import copy

import pytest

from legacy_circuit.models import CircuitAlias, LegacyCircuit
from simulator.loader import load_profile

pytestmark = pytest.mark.django_db

PROFILE = {
    "depot": {"depot_id": "DEPOT-N", "name": "North Depot", "timezone": "Europe/Amsterdam"},
    "microgrid": {"microgrid_id": "MG-N", "name": "North Depot microgrid"},
    "nodes": [
        {"node_id": "grid", "parent_id": None, "kind": "GRID_CONNECTION", "name": "Grid",
         "physical_rating_kw": 800},
        {"node_id": "sb-1", "parent_id": "grid", "kind": "SWITCHBOARD", "name": "Board 1",
         "physical_rating_kw": 400},
        {"node_id": "grp-a", "parent_id": "sb-1", "kind": "CHARGER_GROUP", "name": "Bay A",
         "physical_rating_kw": 250},
    ],
    "assets": [
        {"asset_id": "CH-01", "node_id": "grp-a", "kind": "CHARGER", "name": "Charger 1",
         "max_power_kw": 150, "min_power_kw": 4.1},
        {"asset_id": "SITE", "node_id": "grid", "kind": "SITE_LOAD", "name": "Workshop",
         "rated_power_kw": 120, "fallback_kw": 80},
    ],
    "legacy_circuits": [
        {"circuit_id": "CIR-100", "name": "Main incomer", "configured_capacity_kw": 700,
         "alias": {"type": "MICROGRID"}},
        {"circuit_id": "CIR-101", "name": "Board 1", "configured_capacity_kw": 350,
         "alias": {"type": "NODE", "node_id": "sb-1"}},
        {"circuit_id": "CIR-102", "name": "Charger 1 circuit", "configured_capacity_kw": 150,
         "alias": {"type": "ASSET", "asset_id": "CH-01"}},
        {"circuit_id": "CIR-103", "name": "Old split circuit", "configured_capacity_kw": 300,
         "aliases": [{"type": "NODE", "node_id": "sb-1"}, {"type": "NODE", "node_id": "grp-a"}]},
    ],
}  # fmt: skip


def profile(**changes):
    data = copy.deepcopy(PROFILE)
    data.update(changes)
    return data


def counts():
    return (
        LegacyCircuit.objects.count(),
        LegacyCircuit.history.count(),
        CircuitAlias.objects.count(),
        CircuitAlias.history.count(),
    )


def test_a_profile_creates_circuits_with_their_aliases(integration_api):
    load_profile(profile())

    circuits = {c.circuit_id: c for c in LegacyCircuit.objects.all()}
    assert sorted(circuits) == ["CIR-100", "CIR-101", "CIR-102", "CIR-103"]
    assert all(c.available_capacity_kw == c.configured_capacity_kw for c in circuits.values())
    assert circuits["CIR-101"].depot.depot_id == "DEPOT-N"
    aliases = sorted(
        CircuitAlias.objects.values_list("circuit__circuit_id", "scope_type", "node_id", "asset_id")
    )
    assert aliases == [
        ("CIR-100", "MICROGRID", "", ""),
        ("CIR-101", "NODE", "sb-1", ""),
        ("CIR-102", "ASSET", "", "CH-01"),
        ("CIR-103", "NODE", "grp-a", ""),
        ("CIR-103", "NODE", "sb-1", ""),
    ]
    answer = integration_api.post("/api/circuit/CIR-102/rebalance_load").json()
    assert (answer["microgrid_id"], answer["scope"]) == (
        "MG-N",
        {"type": "NODE", "node_id": "grp-a"},
    )
    refused = integration_api.post("/api/circuit/CIR-103/rebalance_load").json()
    assert refused["details"]["reason"] == "AMBIGUOUS"


def test_loading_the_same_profile_twice_changes_nothing():
    load_profile(profile())
    before = counts()
    load_profile(profile())
    assert counts() == before


def test_a_changed_alias_deactivates_the_old_one_and_keeps_it_in_history(integration_api):
    load_profile(profile())
    changed = profile()
    changed["legacy_circuits"][3] = {
        "circuit_id": "CIR-103",
        "name": "Old split circuit",
        "configured_capacity_kw": 320,
        "alias": {"type": "NODE", "node_id": "grp-a"},
    }
    load_profile(changed)

    circuit = LegacyCircuit.objects.get(circuit_id="CIR-103")
    assert (circuit.configured_capacity_kw, circuit.available_capacity_kw) == (320.0, 320.0)
    active = list(circuit.aliases.filter(active=True).values_list("node_id", flat=True))
    assert active == ["grp-a"]
    assert circuit.aliases.get(node_id="sb-1").active is False
    answer = integration_api.post("/api/circuit/CIR-103/rebalance_load").json()
    assert answer["scope"] == {"type": "NODE", "node_id": "grp-a"}


def test_a_circuit_without_an_alias_may_be_listed():
    load_profile(
        profile(
            legacy_circuits=[{"circuit_id": "CIR-9", "name": "Spare", "configured_capacity_kw": 0}]
        )
    )
    assert not LegacyCircuit.objects.get(circuit_id="CIR-9").aliases.exists()


@pytest.mark.parametrize(
    ("entry", "code", "field"),
    [
        ({"alias": {"type": "NODE", "node_id": "sb-9"}}, "NODE_NOT_FOUND",
         "legacy_circuits[0].alias.node_id"),
        ({"alias": {"type": "ASSET", "asset_id": "SITE"}}, "ASSET_NOT_FOUND",
         "legacy_circuits[0].alias.asset_id"),
        ({"alias": {"type": "ZONE"}}, "FIELD_INVALID", "legacy_circuits[0].alias.type"),
        ({"alias": {"type": "MICROGRID", "node_id": "sb-1"}}, "FIELD_INVALID",
         "legacy_circuits[0].alias.node_id"),
        ({"alias": {"type": "MICROGRID"}, "aliases": []}, "FIELD_INVALID", "legacy_circuits[0]"),
        ({"aliases": [{"type": "MICROGRID"}, {"type": "MICROGRID"}]}, "FIELD_INVALID",
         "legacy_circuits[0].aliases[1]"),
        ({"circuit": "x"}, "PROFILE_INVALID", "legacy_circuits[0].circuit"),
        ({"configured_capacity_kw": -5}, "FIELD_INVALID",
         "legacy_circuits[0].configured_capacity_kw"),
        ({"circuit_id": "bad id"}, "FIELD_INVALID", "legacy_circuits[0].circuit_id"),
    ],
)  # fmt: skip
def test_an_invalid_section_is_refused_before_anything_is_written(entry, code, field):
    from microgrid.common.errors import DomainError

    base = {"circuit_id": "CIR-1", "name": "One", "configured_capacity_kw": 10}
    with pytest.raises(DomainError) as refused:
        load_profile(profile(legacy_circuits=[{**base, **entry}]))

    assert (code, field) in [(e.code, e.field) for e in refused.value.errors]
    assert counts() == (0, 0, 0, 0)


def test_a_circuit_id_listed_twice_is_refused():
    from microgrid.common.errors import DomainError

    twice = {"circuit_id": "CIR-1", "name": "One", "configured_capacity_kw": 10}
    with pytest.raises(DomainError) as refused:
        load_profile(profile(legacy_circuits=[twice, twice]))
    assert "legacy_circuits[1].circuit_id" in [e.field for e in refused.value.errors]


def test_the_spec_example_loads_from_yaml(tmp_path):
    from django.core.management import call_command

    path = tmp_path / "north.yaml"
    path.write_text(
        "depot: {depot_id: DEPOT-N, name: North Depot, timezone: Europe/Amsterdam}\n"
        "microgrid: {microgrid_id: MG-N, name: North Depot microgrid}\n"
        "nodes:\n"
        "  - {node_id: grid, parent_id: null, kind: GRID_CONNECTION, name: Grid, physical_rating_kw: 800}\n"
        "  - {node_id: sb-1, parent_id: grid, kind: SWITCHBOARD, name: Board 1, physical_rating_kw: 400}\n"
        "  - {node_id: grp-a, parent_id: sb-1, kind: CHARGER_GROUP, name: Bay A, physical_rating_kw: 250}\n"
        "assets:\n"
        "  - {asset_id: CH-01, node_id: grp-a, kind: CHARGER, name: Charger 1, max_power_kw: 150, min_power_kw: 4.1}\n"
        "legacy_circuits:\n"
        "  - {circuit_id: CIR-100, name: Main incomer, configured_capacity_kw: 700, alias: {type: MICROGRID}}\n"
        "  - {circuit_id: CIR-101, name: Board 1, configured_capacity_kw: 350, alias: {type: NODE, node_id: sb-1}}\n"
        "  - {circuit_id: CIR-102, name: Charger 1 circuit, configured_capacity_kw: 150, alias: {type: ASSET, asset_id: CH-01}}\n"
        "  - {circuit_id: CIR-103, name: Old split circuit, configured_capacity_kw: 300,\n"
        "     aliases: [{type: NODE, node_id: sb-1}, {type: NODE, node_id: grp-a}]}\n"
    )
    call_command("load_profile", str(path))
    call_command("load_profile", str(path))
    assert LegacyCircuit.objects.count() == 4
    assert CircuitAlias.objects.count() == 5
    assert CircuitAlias.history.count() == 5
