"""Signals of the limits app (the one mechanism: `microgrid.common.signals`).

Notices, sent after the write commits (`send_on_commit`):
- `limits_changed(microgrid_id)`: policies were created, updated, deleted or replaced
  (canonical or legacy TOU writes). Balancing answers with a LIMIT_CHANGE cycle.
- `schedule_transitioned(microgrid_id, transitions)`: the beat task recorded schedule starts
  and ends (a list of `ScheduleTransition`). Balancing answers with a TOU_TRANSITION cycle.

Contribution, collected on every read of the effective limits (`collect`):
- `limit_constraints(microgrid, at, nodes)` -> `[(node_id, Constraint), ...]` in a constant
  number of queries (the envelopes app: OPERATING_ENVELOPE constraints).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.dispatch import Signal


@dataclass(frozen=True)
class ScheduleTransition:
    policy_id: str
    scope: str  # NODE | MICROGRID
    node_id: str | None
    transition: str  # START | END
    at: datetime
    limit_kw: float


limits_changed = Signal()
schedule_transitioned = Signal()
limit_constraints = Signal()
