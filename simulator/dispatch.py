"""The simulator as a dispatch channel: setpoints go back into the simulated chargers.

While a run is active for a microgrid, the SIMULATOR resolver (ahead of the
webhook) names this channel for every cycle of that microgrid, whoever asked
for it (the simulator's own steps, an API or legacy rebalance, a TOU
transition, an envelope change). The deliveries go through the same outbox,
change-only rule and Celery task as everywhere else (the run makes Celery
eager, so they are handed over right after each commit); the channel passes
them to the active run and answers ACCEPTED. The simulated chargers honour a message as a
webhook receiver must (spec 4.7, Renewal): a full one replaces what they hold, the chargers it
names take their new setpoint, and every setpoint still held takes the message's valid_until.
"""

from __future__ import annotations

from collections.abc import Callable

from balancing.dispatch import ChargingLimit, ScopeBudget
from dispatch.channels import Batch, SendResult
from dispatch.choices import Channel, DeliveryStatus

# (microgrid_id, the setpoints sent, the scope budgets, the message's valid_until, full)
Receiver = Callable[[str, list[ChargingLimit], list[ScopeBudget], str, bool], None]

_active: tuple[str, Receiver] | None = None


def activate(microgrid_id: str | None, receiver: Receiver | None = None) -> None:
    global _active
    _active = (microgrid_id, receiver) if microgrid_id and receiver else None


def resolver(microgrid, config) -> str | None:
    if _active is not None and microgrid.microgrid_id == _active[0]:
        return Channel.SIMULATOR
    return None


class SimulatorChannel:
    def send(self, batch: Batch) -> SendResult:
        if _active is None or _active[0] != batch.microgrid_id:
            return SendResult(DeliveryStatus.FAILED, error="no simulator run is active")
        limits = [
            ChargingLimit(s.target_id, s.limit_kw, batch.cycle_id, s.valid_until)
            for s in batch.setpoints
        ]
        budgets = [
            ScopeBudget(b.scope or {"type": "MICROGRID"}, b.limit_kw, b.valid_until, batch.cycle_id)
            for b in batch.budgets
        ]
        _active[1](batch.microgrid_id, limits, budgets, batch.valid_until, batch.full)
        return SendResult(DeliveryStatus.ACCEPTED)
