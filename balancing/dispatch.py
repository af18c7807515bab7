"""What a cycle hands out: charger limits and scope budgets.

The cycle sends them with the `balancing.signals.cycle_stored` signal inside
its transaction; the dispatch app (above balancing) writes them to its outbox
and delivers them through each microgrid's channels. Tooling (benchmarks) may
still pass a `Dispatcher` to `cycle_request` to see them after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


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
