"""Circuit aliases keep the Microgrid Nodes and chargers they name from being removed."""


def alias_references(microgrid):
    from legacy_circuit.models import CircuitAlias

    out = []
    for alias in CircuitAlias.objects.filter(microgrid=microgrid, active=True).values(
        "pk", "circuit__circuit_id", "scope_type", "node_id", "asset_id"
    ):
        ref = {"type": "CIRCUIT_ALIAS", "id": alias["circuit__circuit_id"]}
        if alias["scope_type"] == "NODE":
            out.append(("node", alias["node_id"], ref))
        elif alias["scope_type"] == "ASSET":
            out.append(("asset", alias["asset_id"], ref))
    return out
