"""An active alias keeps its Microgrid Node or charger from being removed; an inactive one does not."""

from __future__ import annotations

import pytest

from microgrid.common.errors import DomainError
from microgrid.topology.selectors import topology_document
from microgrid.topology.services import topology_replace

pytestmark = pytest.mark.django_db


def without(microgrid, node_id=None, asset_id=None):
    document = topology_document(microgrid)
    assets = [
        a for a in document["assets"] if a["asset_id"] != asset_id and a["node_id"] != node_id
    ]
    nodes = [n for n in document["nodes"] if n["node_id"] != node_id]
    return topology_replace(
        microgrid=microgrid, base_version=microgrid.topology_version, nodes=nodes, assets=assets
    )


def test_removing_an_aliased_node_is_node_in_use_naming_the_circuit(circuits, microgrid):
    with pytest.raises(DomainError) as refused:
        without(microgrid, node_id="grp-b")
    [error] = [e for e in refused.value.errors if e.code == "NODE_IN_USE"]
    assert error.node_id == "grp-b"
    assert {"type": "CIRCUIT_ALIAS", "id": "CIR.B-2"} in error.details["references"]


def test_removing_an_aliased_charger_is_node_in_use(circuits, microgrid):
    with pytest.raises(DomainError) as refused:
        without(microgrid, asset_id="CH-01")
    assert [e.asset_id for e in refused.value.errors if e.code == "NODE_IN_USE"] == ["CH-01"]


def test_an_inactive_alias_does_not_hold_its_node(circuits, microgrid, integration_api):
    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_set_active

    circuit_alias_set_active(
        alias=CircuitAlias.objects.get(circuit__circuit_id="CIR.B-2"), active=False
    )
    without(microgrid, node_id="grp-b")

    # Reactivated, it names a node that is gone: the circuit does not resolve.
    circuit_alias_set_active(
        alias=CircuitAlias.objects.get(circuit__circuit_id="CIR.B-2"), active=True
    )
    response = integration_api.post("/api/circuit/CIR.B-2/rebalance_load")
    assert response.json()["details"] == {"circuit_id": "CIR.B-2", "reason": "TARGET_MISSING"}
