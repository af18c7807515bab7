"""Hooks other apps register into; the limits app calls them after its writes commit.

- `on_schedule_transition(fn)`: fn(microgrid_id, transitions) when the beat
  task records schedule starts and ends for a microgrid (balancing registers
  one that triggers a TOU_TRANSITION cycle).
- `on_limits_changed(fn)`: fn(microgrid_id) after policies were created,
  updated or deleted.

Hooks run after the commit, in registration order; one that fails is logged
and does not stop the others or undo the write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduleTransition:
    policy_id: str
    scope: str  # NODE | MICROGRID
    node_id: str | None
    transition: str  # START | END
    at: datetime
    limit_kw: float


TransitionHook = Callable[[str, list[ScheduleTransition]], None]
ChangeHook = Callable[[str], None]

_transition_hooks: list[TransitionHook] = []
_change_hooks: list[ChangeHook] = []


def on_schedule_transition(fn: TransitionHook) -> TransitionHook:
    """Register fn(microgrid_id, transitions); usable as a decorator."""
    if fn not in _transition_hooks:
        _transition_hooks.append(fn)
    return fn


def on_limits_changed(fn: ChangeHook) -> ChangeHook:
    """Register fn(microgrid_id); usable as a decorator."""
    if fn not in _change_hooks:
        _change_hooks.append(fn)
    return fn


def unregister(fn: Callable) -> None:
    for hooks in (_transition_hooks, _change_hooks):
        if fn in hooks:
            hooks.remove(fn)


def notify_schedule_transition(microgrid_id: str, transitions: list[ScheduleTransition]) -> None:
    for fn in list(_transition_hooks):
        try:
            fn(microgrid_id, transitions)
        except Exception:
            log.exception("schedule transition hook %r failed for %s", fn, microgrid_id)


def notify_limits_changed(microgrid_id: str) -> None:
    for fn in list(_change_hooks):
        try:
            fn(microgrid_id)
        except Exception:
            log.exception("limits changed hook %r failed for %s", fn, microgrid_id)
