"""Signals the envelopes app listens to from the apps above it (they send, it never imports
them).

`cycle_completed`: sent by the balancing app after a cycle committed, only when some node
of the cycle had an enforced operating envelope. Keyword arguments:
- `microgrid_pk`: int; `cycle_id`: str; `at`: the cycle's started_at;
- `nodes`: [{"node_id", "uncontrolled_load_kw", "envelope_ids": [...]}] for those nodes;
- `breaches`: [{"breach_id", "node_id", "measured_kw", "exceeded": [...], "new": bool}],
  the open breaches of the cycle.
"""

from django.dispatch import Signal

cycle_completed = Signal()
