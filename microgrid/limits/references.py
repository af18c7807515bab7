"""What the limits app tells the topology validator: Microgrid Nodes that policies name."""

from __future__ import annotations

from typing import Any

from microgrid.limits.choices import LimitScope
from microgrid.limits.models import LimitPolicy


def limit_references(microgrid) -> list[tuple[str, str, dict[str, Any]]]:
    """One query: ("node", node_id, {"type": "LIMIT_POLICY", "id": policy_id}) per Node Limit."""
    rows = (
        LimitPolicy.objects.filter(microgrid=microgrid, scope=LimitScope.NODE)
        .order_by("id")
        .values_list("node__node_id", "policy_id")
    )
    return [
        ("node", node_id, {"type": "LIMIT_POLICY", "id": policy_id}) for node_id, policy_id in rows
    ]
