"""What still points at a Microgrid Node or asset, collected from every app.

Apps that reference nodes (limits, envelope group bindings, capability bindings, circuit
aliases) answer `microgrid.topology.signals.node_references`; the topology validator refuses
to remove anything they name (NODE_IN_USE). Each answers in one query for the whole microgrid.
The OCPP charging stations a charger may name come the same way (`charger_stations`).
"""

from __future__ import annotations

from typing import Any

from microgrid.common.signals import collect
from microgrid.topology import signals


def references_for(microgrid) -> dict[tuple[str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for answer in collect(signals.node_references, microgrid=microgrid):
        for kind, ident, ref in answer:
            found.setdefault((kind, ident), []).append(ref)
    return found


def station_ids_for(microgrid) -> frozenset[str]:
    """The OCPP charging stations of the microgrid (the stations app answers)."""
    found: set[str] = set()
    for answer in collect(signals.charger_stations, microgrid=microgrid):
        found.update(answer)
    return frozenset(found)
