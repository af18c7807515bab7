"""Signals of the envelopes app (the one mechanism: `microgrid.common.signals`).

- `envelopes_settled(microgrid, now)`: sent inside the transaction of every change to what
  may be enforced (a receipt, a withdrawal, a peer switching between online and offline, a
  beat-task transition), the microgrid locked. The legacy app reconciles its interim values
  (`legacy_circuit/interim.py`); a receiver that fails undoes the change.
- `enforcement_changed(microgrid_id, envelope_ids, scope)`: after the commit, when the set of
  ENFORCED envelopes changed (`scope`: their shared scope, else None for the microgrid).
  Balancing answers with an ENVELOPE_CHANGE cycle.
- `scope_followers(microgrid)` -> `{(scope_type, node_id): {circuit_id, name,
  available_capacity_kw, configured_capacity_kw}}`: the legacy record that follows each scope's
  envelopes, shown beside them (collected).
- `cycle_completed`: sent by the balancing app after a cycle committed, only when some node
  of the cycle had an enforced operating envelope. Keyword arguments:
  `microgrid_pk`: int; `cycle_id`: str; `at`: the cycle's started_at;
  `nodes`: [{"node_id", "uncontrolled_load_kw", "envelope_ids": [...]}] for those nodes;
  `breaches`: [{"breach_id", "node_id", "measured_kw", "exceeded": [...], "new": bool}],
  the open breaches of the cycle.
"""

from django.dispatch import Signal

envelopes_settled = Signal()
enforcement_changed = Signal()
scope_followers = Signal()
cycle_completed = Signal()
