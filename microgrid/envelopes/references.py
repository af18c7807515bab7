"""What the envelopes app tells the topology validator: Microgrid Nodes OSCP groups are bound to."""

from __future__ import annotations

from typing import Any

from microgrid.envelopes.choices import ScopeType
from microgrid.envelopes.models import OscpGroupBinding


def binding_references(microgrid) -> list[tuple[str, str, dict[str, Any]]]:
    """One query: ("node", node_id, {"type": "OSCP_GROUP_BINDING", "id": group_id, "peer"})."""
    rows = (
        OscpGroupBinding.objects.filter(microgrid=microgrid, scope_type=ScopeType.NODE)
        .order_by("peer__name", "group_id")
        .values_list("node__node_id", "group_id", "peer__name")
    )
    return [
        ("node", node_id, {"type": "OSCP_GROUP_BINDING", "id": group_id, "peer": peer})
        for node_id, group_id, peer in rows
    ]
