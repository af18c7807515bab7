"""Writes of the fleet overview's own rows (one upsert per stored cycle, or per batch of
scheduled cycles)."""

from __future__ import annotations

from balancing.selectors import node_load
from microgrid.common.bulk import insert_rows
from microgrid.fleet.models import MicrogridState

STATE_FIELDS = (
    "cycle_id",
    "cycle_seq",
    "completed_at",
    "trigger_type",
    "outcome",
    "source_mode",
    "reason_codes",
    "root_node_id",
    "root_load_kw",
    "root_limit_kw",
    "root_load_pct",
    "vehicles_at_risk",
)


def microgrid_state_record(*, cycle) -> None:
    """Make `cycle` the microgrid's latest state: one INSERT ... ON CONFLICT UPDATE.

    Runs inside the transaction that stores the cycle (cycles of one microgrid are
    serialised by its lock), so the overview and the cycles list never disagree.
    """
    microgrid_states_record(cycles=[cycle])


def microgrid_states_record(*, cycles) -> None:
    """Make each cycle its microgrid's latest state, all in one INSERT ... ON CONFLICT UPDATE
    (a batch of scheduled cycles: one cycle per microgrid; should one come twice, the later
    one is its state, as if they were written one after the other)."""
    rows = {}
    for cycle in cycles:
        nodes = (cycle.document or {}).get("nodes") or []
        root = nodes[0] if nodes else None  # cycle documents list nodes in tree order
        load, limit, pct = node_load(root) if root else (None, None, None)
        rows[cycle.microgrid_id] = MicrogridState(
            microgrid_id=cycle.microgrid_id,
            cycle_id=cycle.cycle_id,
            cycle_seq=cycle.seq,
            completed_at=cycle.completed_at,
            trigger_type=cycle.trigger_type,
            outcome=cycle.outcome,
            source_mode=cycle.source_mode,
            reason_codes=list(cycle.reason_codes or []),
            root_node_id=root["node_id"] if root else "",
            root_load_kw=load,
            root_limit_kw=limit,
            root_load_pct=pct,
            vehicles_at_risk=cycle.vehicles_at_risk,
        )
    insert_rows(list(rows.values()), unique_fields=["microgrid"], update_fields=STATE_FIELDS)


def on_cycle_saved(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        microgrid_state_record(cycle=instance)


def on_cycles_created(sender, cycles, **kwargs) -> None:
    microgrid_states_record(cycles=cycles)
