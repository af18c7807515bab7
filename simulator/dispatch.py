"""The simulator's dispatcher: setpoints go back into the simulated chargers.

Every cycle of a run hands its setpoints here, whoever asked for it: the
scheduled cycles the simulator runs itself pass the dispatcher explicitly, and
for the others (an API or legacy rebalance, a TOU transition, an envelope
change) the run points the BALANCING_DISPATCHER setting at this class. An
instance forwards to the run that is active in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from balancing.dispatch import ChargingLimit, LoggingDispatcher, ScopeBudget

log = logging.getLogger(__name__)

Receiver = Callable[[str, list[ChargingLimit], list[ScopeBudget]], None]

_receiver: Receiver | None = None


def activate(receiver: Receiver | None) -> None:
    global _receiver
    _receiver = receiver


class SimulatorDispatcher:
    def dispatch(
        self, *, microgrid_id: str, limits: list[ChargingLimit], budgets: list[ScopeBudget]
    ) -> None:
        if _receiver is None:
            # No run is active (a misconfigured setting): behave like the v1 dispatcher.
            LoggingDispatcher().dispatch(microgrid_id=microgrid_id, limits=limits, budgets=budgets)
            return
        _receiver(microgrid_id, limits, budgets)
