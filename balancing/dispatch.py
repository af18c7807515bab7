"""Where setpoints go after a cycle commits.

A dispatcher turns a cycle's setpoints into OCPP-style charging limits (kW,
with the cycle id and valid_until) for chargers, and scope budgets for
external controllers. v1 ships the logging dispatcher; the simulator brings
its own. The dispatcher is chosen per call (simulator) or by the
BALANCING_DISPATCHER setting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

log = logging.getLogger("balancing.dispatch")


@dataclass(frozen=True)
class ChargingLimit:
    asset_id: str
    limit_kw: float
    cycle_id: str
    valid_until: str


@dataclass(frozen=True)
class ScopeBudget:
    scope: dict[str, Any]
    budget_kw: float
    valid_until: str
    cycle_id: str


class Dispatcher(Protocol):
    def dispatch(
        self, *, microgrid_id: str, limits: list[ChargingLimit], budgets: list[ScopeBudget]
    ) -> None: ...


class LoggingDispatcher:
    def dispatch(
        self, *, microgrid_id: str, limits: list[ChargingLimit], budgets: list[ScopeBudget]
    ) -> None:
        log.info(
            "microgrid=%s cycle=%s setpoints=%d budgets=%d total_kw=%.1f",
            microgrid_id,
            limits[0].cycle_id if limits else (budgets[0].cycle_id if budgets else "-"),
            len(limits),
            len(budgets),
            sum(limit.limit_kw for limit in limits),
        )


def default_dispatcher() -> Dispatcher:
    return import_string(settings.BALANCING_DISPATCHER)()
