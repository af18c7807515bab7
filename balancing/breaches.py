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

from balancing.codes import (
    BREACH_PHASE_CURRENT,
    BREACH_PRECEDENCE,
    LIMIT_SOURCE_TO_BREACH,
    breach_rank,
)
from balancing.phase_alloc import PHASE_NAMES

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
    limit_a: float | None = None  # the node's per-phase current limit (A), if it has one
    phase_limits_a: tuple[float, ...] | None = None  # per phase where they differ (inf: none)
    voltage_v: float = 230.0
    phases: int = 3


@dataclass(frozen=True, slots=True)
class MeterReading:
    asset_id: str
    node_id: str
    power_kw: float | None
    freshness: str  # FRESH | STALE | MISSING
    current_a: tuple[float, float, float] | None = None  # the node's L1, L2, L3 currents


@dataclass(frozen=True, slots=True)
class BreachFinding:
    node_id: str
    measured_kw: float
    limit_kw: float  # the effective limit
    excess_kw: float
    exceeded: tuple[str, ...]  # BREACH_<source> codes, in breach precedence
    primary_reason_code: str
    # A phase breach (BREACH_PHASE_CURRENT): the phase and its currents; the kW figures are
    # then that phase's (A x voltage_v / 1000). None on a breach of the node's kW limit.
    phase: str | None = None
    measured_a: float | None = None
    limit_a: float | None = None
    excess_a: float | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "node_id": self.node_id,
            "measured_kw": self.measured_kw,
            "limit_kw": self.limit_kw,
            "excess_kw": self.excess_kw,
            "exceeded": list(self.exceeded),
            "primary_reason_code": self.primary_reason_code,
        }
        if self.phase is not None:
            d.update(
                phase=self.phase,
                measured_a=self.measured_a,
                limit_a=self.limit_a,
                excess_a=self.excess_a,
            )
        return d

    @property
    def key(self) -> tuple[str, str]:
        """What one open breach is per: the node, and the phase for a phase breach."""
        return (self.node_id, self.phase or "")


def breach_tolerance_kw(limit_kw: float) -> float:
    """How far a measurement may exceed a limit before it is a breach: 1 %, at least 0.5 kW."""
    return max(0.01 * limit_kw, 0.5)


def _exceeds(measured: float, limit: float) -> bool:
    # (The same rule for amperes: more than 1 %, at least 0.5 A.)
    # "More than 1 %": a reading exactly at the tolerance is not a breach. The rounding to 1 W
    # keeps float noise (1.01 * 100 = 101.00000000000001) from deciding the edge.
    return _round3(measured - limit) > _round3(breach_tolerance_kw(limit))


def _breach_code(source: str) -> str:
    return LIMIT_SOURCE_TO_BREACH.get(source) or f"BREACH_{source}"


def _round3(x: float) -> float:
    return floor(x * 1000.0 + 0.5) / 1000.0


def phase_currents_measured(meters: Sequence[MeterReading]) -> dict[str, list[float]]:
    """node_id -> the largest fresh current of each phase over the node's meters."""
    out: dict[str, list[float]] = {}
    for meter in meters:
        if meter.freshness != "FRESH" or meter.current_a is None:
            continue
        have = out.get(meter.node_id)
        if have is None:
            out[meter.node_id] = list(meter.current_a)
        else:
            out[meter.node_id] = [max(a, b) for a, b in zip(have, meter.current_a, strict=True)]
    return out


def detect_breaches(
    nodes: Sequence[BreachNodeInput], meters: Sequence[MeterReading]
) -> tuple[BreachFinding, ...]:
    """The breaches of one cycle, sorted by node_id (a node's kW breach before its phases')."""
    measured: dict[str, float] = {}
    for meter in meters:
        if meter.freshness != "FRESH" or meter.power_kw is None:
            continue
        # Several meters on one node measure the same flow; the largest reading is the safe one.
        current = measured.get(meter.node_id)
        if current is None or meter.power_kw > current:
            measured[meter.node_id] = meter.power_kw
    amps = phase_currents_measured(meters)
    findings = []
    for node in sorted(nodes, key=lambda n: n.node_id):
        findings.extend(_kw_breach(node, measured.get(node.node_id)))
        findings.extend(_phase_breaches(node, amps.get(node.node_id)))
    return tuple(findings)


def _phase_breaches(node: BreachNodeInput, currents: list[float] | None) -> list[BreachFinding]:
    """One breach per phase measured above the node's per-phase current limit (more than 1 %,
    at least 0.5 A, as for kW); a single-phase node has only L1."""
    if currents is None or node.limit_a is None:
        return []
    out = []
    to_kw = node.voltage_v / 1000.0
    for p in range(1 if node.phases == 1 else 3):
        limit = node.phase_limits_a[p] if node.phase_limits_a else node.limit_a
        if limit == float("inf"):
            continue
        value = currents[p]
        if not _exceeds(value, limit):
            continue
        out.append(
            BreachFinding(
                node_id=node.node_id,
                measured_kw=_round3(value * to_kw),
                limit_kw=_round3(limit * to_kw),
                excess_kw=_round3((value - limit) * to_kw),
                exceeded=(BREACH_PHASE_CURRENT,),
                primary_reason_code=BREACH_PHASE_CURRENT,
                phase=PHASE_NAMES[p],
                measured_a=_round3(value),
                limit_a=_round3(limit),
                excess_a=_round3(value - limit),
            )
        )
    return out


def _kw_breach(node: BreachNodeInput, value: float | None) -> list[BreachFinding]:
    """The breach of the node's kW limit, if the measured flow is above it."""
    if value is None or not _exceeds(value, node.effective_limit_kw):
        return []
    codes = {
        _breach_code(source) for source, limit_kw in node.constraints if _exceeds(value, limit_kw)
    }
    # The effective limit is one of the constraints; it counts even when the caller left
    # the list empty.
    codes.add(_breach_code(node.limit_source))
    exceeded = tuple(sorted(codes, key=breach_rank))
    return [
        BreachFinding(
            node_id=node.node_id,
            measured_kw=_round3(value),
            limit_kw=_round3(node.effective_limit_kw),
            excess_kw=_round3(value - node.effective_limit_kw),
            exceeded=exceeded,
            primary_reason_code=exceeded[0],
        )
    ]
