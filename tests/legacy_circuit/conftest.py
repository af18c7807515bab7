"""Legacy circuits on the shared MG.NORTH-1 microgrid, and the frozen-contract fixtures.

Expected bodies live in `fixtures/*.json` exactly as the API must send them
(compact JSON, key order included, no trailing newline): `assert_body`
compares `response.content` byte for byte, so the frozen legacy contract
cannot drift without a test failing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def expected_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def assert_body(response, name: str) -> None:
    expected = expected_body(name)
    assert response.content == expected, (
        f"{name}: got\n{response.content.decode()}\nexpected\n{expected.decode()}"
    )


@pytest.fixture
def circuits(microgrid):
    """CIR-100 whole microgrid, CIR-101 node sb-1, CIR-102 charger CH-01, CIR-103 two active
    aliases, CIR-104 no alias, CIR-105 an alias whose node does not exist, CIR.B-2 node grp-b
    (an id with a dot), CIR-106 only a deactivated alias."""
    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_save, legacy_circuit_save

    def make(circuit_id, name, capacity, *aliases, active=True):
        circuit, _ = legacy_circuit_save(
            circuit_id=circuit_id,
            name=name,
            configured_capacity_kw=capacity,
            depot=microgrid.depot,
        )
        for scope_type, ident in aliases:
            circuit_alias_save(
                alias=CircuitAlias(
                    circuit=circuit,
                    microgrid=microgrid,
                    scope_type=scope_type,
                    node_id=ident if scope_type == "NODE" else "",
                    asset_id=ident if scope_type == "ASSET" else "",
                    active=active,
                )
            )
        return circuit

    return {
        "CIR-100": make("CIR-100", "Main incomer", 700, ("MICROGRID", None)),
        "CIR-101": make("CIR-101", "Board 1", 350, ("NODE", "sb-1")),
        "CIR-102": make("CIR-102", "Charger 1 circuit", 150, ("ASSET", "CH-01")),
        "CIR-103": make("CIR-103", "Old split circuit", 300, ("NODE", "sb-1"), ("NODE", "grp-a")),
        "CIR-104": make("CIR-104", "Spare circuit", 100),
        "CIR-105": make("CIR-105", "Removed feeder", 80, ("NODE", "feeder-gone")),
        "CIR.B-2": make("CIR.B-2", "Bay B", 250, ("NODE", "grp-b")),
        "CIR-106": make("CIR-106", "Retired circuit", 90, ("NODE", "grp-a"), active=False),
    }


@pytest.fixture
def fixed_ids():
    """Cycle ids are already stable (uuid5 of microgrid id and sequence): the first cycle of
    MG.NORTH-1 always has the id the fixtures hold."""


@pytest.fixture
def row_counts():
    """Rows (and history rows) of everything a legacy call could change."""
    from balancing.models import Cycle, CycleTrigger
    from legacy_circuit.models import AliasUsage, CircuitAlias, LegacyCircuit
    from microgrid.limits.models import LimitPolicy, LimitState

    def counts() -> dict[str, int]:
        return {
            "policies": LimitPolicy.objects.count(),
            "policy_history": LimitPolicy.history.count(),
            "limit_state": sum(LimitState.objects.values_list("policies_created", flat=True)),
            "cycles": Cycle.objects.count(),
            "cycle_triggers": CycleTrigger.objects.count(),
            "circuits": LegacyCircuit.objects.count(),
            "circuit_history": LegacyCircuit.history.count(),
            "aliases": CircuitAlias.objects.count(),
            "alias_history": CircuitAlias.history.count(),
            "usage": AliasUsage.objects.count(),
        }

    return counts
