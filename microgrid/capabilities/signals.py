"""Signals of the capabilities app (the one mechanism: `microgrid.common.signals`).

- `capability_changed(microgrid_id, binding_ids)`: after the commit of a change that may move
  who controls a scope: a LOAD_MANAGEMENT binding created, released or transferred, or a status
  event that changes such a binding's current status (its state, or a fresh status after a
  stale one). Balancing answers with a CAPABILITY_CHANGE cycle.
"""

from django.dispatch import Signal

capability_changed = Signal()
