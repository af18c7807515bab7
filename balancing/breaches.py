"""Breach detection (spec 4.4): measured flow through a node above its effective limit.

Pure: the cycle service hands in every node's effective limit with the constraints behind it
and the latest METER readings; this module says which nodes are in breach and which limits the
measurement exceeds. Only a fresh meter reading can raise a breach: estimated values, stale or
missing meters never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import floor

from balancing.codes import BREACH_PRECEDENCE, LIMIT_SOURCE_TO_BREACH, breach_rank

__all__ = [
    "BREACH_PRECEDENCE",
    "BreachFinding",
    "BreachNodeInput",
    "MeterReading",
    "breach_tolerance_kw",
    "detect_breaches",
]


@dataclass(frozen=True, slots=True)
class BreachNodeInput:
    node_id: str
    effective_limit_kw: float
    limit_source: str
    # every constraint that applies to the node: (source, limit_kw), e.g. ("NODE_LIMIT", 350.0);
    # several OPERATING_ENVELOPE entries are possible
    constraints: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class MeterReading:
    asset_id: str
    node_id: str
    power_kw: float | None
    freshness: str  # FRESH | STALE | MISSING


@dataclass(frozen=True, slots=True)
class BreachFinding:
    node_id: str
    measured_kw: float
    limit_kw: float  # the effective limit
    excess_kw: float
    exceeded: tuple[str, ...]  # BREACH_<source> codes, in breach precedence
    primary_reason_code: str

    def to_dict(self) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "measured_kw": self.measured_kw,
            "limit_kw": self.limit_kw,
            "excess_kw": self.excess_kw,
            "exceeded": list(self.exceeded),
            "primary_reason_code": self.primary_reason_code,
        }


def breach_tolerance_kw(limit_kw: float) -> float:
    """How far a measurement may exceed a limit before it is a breach: 1 %, at least 0.5 kW."""
    return max(0.01 * limit_kw, 0.5)


def _exceeds(measured: float, limit: float) -> bool:
    # "More than 1 %": a reading exactly at the tolerance is not a breach. The rounding to 1 W
    # keeps float noise (1.01 * 100 = 101.00000000000001) from deciding the edge.
    return _round3(measured - limit) > _round3(breach_tolerance_kw(limit))


def _breach_code(source: str) -> str:
    return LIMIT_SOURCE_TO_BREACH.get(source) or f"BREACH_{source}"


def _round3(x: float) -> float:
    return floor(x * 1000.0 + 0.5) / 1000.0


def detect_breaches(
    nodes: Sequence[BreachNodeInput], meters: Sequence[MeterReading]
) -> tuple[BreachFinding, ...]:
    """The breaches of one cycle, sorted by node_id."""
    measured: dict[str, float] = {}
    for meter in meters:
        if meter.freshness != "FRESH" or meter.power_kw is None:
            continue
        # Several meters on one node measure the same flow; the largest reading is the safe one.
        current = measured.get(meter.node_id)
        if current is None or meter.power_kw > current:
            measured[meter.node_id] = meter.power_kw
    findings = []
    for node in sorted(nodes, key=lambda n: n.node_id):
        value = measured.get(node.node_id)
        if value is None or not _exceeds(value, node.effective_limit_kw):
            continue
        codes = {
            _breach_code(source)
            for source, limit_kw in node.constraints
            if _exceeds(value, limit_kw)
        }
        # The effective limit is one of the constraints; it counts even when the caller left
        # the list empty.
        codes.add(_breach_code(node.limit_source))
        exceeded = tuple(sorted(codes, key=breach_rank))
        findings.append(
            BreachFinding(
                node_id=node.node_id,
                measured_kw=_round3(value),
                limit_kw=_round3(node.effective_limit_kw),
                excess_kw=_round3(value - node.effective_limit_kw),
                exceeded=exceeded,
                primary_reason_code=exceeded[0],
            )
        )
    return tuple(findings)
