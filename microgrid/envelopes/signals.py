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
"""

from django.dispatch import Signal

envelopes_settled = Signal()
enforcement_changed = Signal()
scope_followers = Signal()
