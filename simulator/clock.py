"""The simulated clock: one seam through which a whole simulator run reads "now".

Services, views, model fields (`auto_now`) and history rows ask
`django.utils.timezone.now()` for the time. `simulated_time(clock)` points
that function at the simulator's clock for the duration of a run and restores
it afterwards, so an API call made in the middle of a scenario (a rebalance, a
legacy TOU write, an OSCP message) sees the scenario's time, exactly as the
cycles the simulator runs itself. It also covers the two ways code can hold
the function without looking it up each time:

- a module of this project that did `from django.utils.timezone import now`
  (found by identity among the loaded modules, so new ones need no list);
- a model field declared with `default=timezone.now` (its cached default is
  swapped for the run).

The process runs nothing else while the simulator runs; the clock is not
thread-safe and is not meant to be.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.apps import apps
from django.utils import timezone

# Packages of this project whose module-level `now` names may be re-pointed.
PROJECT_PACKAGES = ("microgrid", "balancing", "legacy_circuit", "simulator")

_MISSING = object()


class SimClock:
    """A clock that only moves when the simulator moves it."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs an aware start time")
        self.start = start.astimezone(UTC)
        self._now = self.start

    def now(self) -> datetime:
        return self._now

    def set(self, t_s: float) -> datetime:
        """Move to `t_s` seconds after the start (never backwards)."""
        moment = self.start + timedelta(seconds=t_s)
        if moment < self._now:
            raise ValueError("the simulated clock never runs backwards")
        self._now = moment
        return moment

    def seconds(self, moment: datetime | None) -> float | None:
        """`moment` as seconds from the start (None stays None)."""
        if moment is None:
            return None
        return (moment - self.start).total_seconds()


@contextmanager
def simulated_time(clock: SimClock) -> Iterator[SimClock]:
    original = timezone.now
    undo: list[tuple[object, str, object]] = []

    def swap(owner: object, name: str, value: object) -> None:
        undo.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    swap(timezone, "now", clock.now)
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(PROJECT_PACKAGES):
            continue
        if module.__dict__.get("now") is original:
            swap(module, "now", clock.now)
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.concrete_fields:
            if getattr(field, "default", None) is original:
                # Field.get_default() reads the cached `_get_default`, not `default`.
                swap(field, "_get_default", clock.now)
    try:
        yield clock
    finally:
        for owner, name, previous in reversed(undo):
            if previous is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, previous)
