"""What the capabilities app tells the topology validator: Microgrid Nodes that active bindings scope."""

from __future__ import annotations

from typing import Any

from microgrid.capabilities.choices import ScopeType
from microgrid.capabilities.models import CapabilityBinding


def binding_references(microgrid) -> list[tuple[str, str, dict[str, Any]]]:
    """One query: ("node", node_id, {"type": "CAPABILITY_BINDING", "id": binding_id}) per
    active NODE-scoped binding. Ended bindings keep no node: they are history."""
    rows = (
        CapabilityBinding.objects.filter(
            microgrid=microgrid, active=True, scope_type=ScopeType.NODE
        )
        .order_by("seq")
        .values_list("node_id", "binding_id")
    )
    return [
        ("node", node_id, {"type": "CAPABILITY_BINDING", "id": binding_id})
        for node_id, binding_id in rows
    ]
