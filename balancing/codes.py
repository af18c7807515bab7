"""Reason and breach codes (spec 4.5): each list defined once, in precedence order, with labels.

The engine, breach detection, the pages' labels and the OpenAPI document all import these;
nothing else spells a code list out. Pure Python (no Django), so the engine stays importable
on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BREACH_LABELS",
    "BREACH_PHASE_CURRENT",
    "DEPARTURE_PRIORITY",
    "BREACH_PRECEDENCE",
    "LIMIT_REASONS",
    "LIMIT_SOURCE_TO_BREACH",
    "LIMIT_SOURCE_TO_REASON",
    "PHASE_CURRENT_LIMIT",
    "PHASE_UNBALANCE_LIMIT",
    "REASON_LABELS",
    "REASON_PRECEDENCE",
    "breach_rank",
    "sort_reasons",
]

# Spec 4.5: one table, one precedence (the first code of a charger's or node's list is the one
# that explains it best). The label is the plain-language text the pages show beside the code.
_REASONS: tuple[tuple[str, str], ...] = (
    ("FAILSAFE_TELEMETRY_UNAVAILABLE", "Fallback needed but not configured: fail safe"),
    ("TELEMETRY_FALLBACK", "A stale or missing reading was replaced by its fallback"),
    ("EXTERNAL_CONTROL", "Delegated to an external controller"),
    # Issue 19: a phase's current limit comes before every kW limit. It is what trips a fuse,
    # and it binds while the kW total looks well inside its limit (three single-phase EVs on
    # one phase), so it is the explanation an operator needs first.
    ("PHASE_CURRENT_LIMIT", "Bound by the current limit of one phase of a node"),
    ("PHASE_UNBALANCE_LIMIT", "Bound by the largest current difference allowed between phases"),
    ("OPERATING_ENVELOPE_LIMIT", "Bound by an operating envelope"),
    ("MICROGRID_LIMIT", "Bound by the microgrid aggregate cap"),
    ("TOU_LIMIT", "Bound by an active scheduled cap"),
    ("NODE_LIMIT", "Bound by a Node Limit"),
    ("PHYSICAL_RATING", "Bound by a physical rating"),
    (
        "DEPARTURE_PRIORITY",
        "Served first to finish by its departure, or held back for vehicles leaving sooner",
    ),
    ("MIN_POWER_UNSERVED", "No room for the charger's minimum: set to 0"),
    ("ASSET_MAX_POWER", "Charger at its own maximum"),
    ("DEMAND_MET", "Charger got all it asked for"),
)
REASON_PRECEDENCE: tuple[str, ...] = tuple(code for code, _ in _REASONS)
DEPARTURE_PRIORITY = "DEPARTURE_PRIORITY"
REASON_LABELS: dict[str, str] = dict(_REASONS)

# Spec 4.5, breach precedence (for primary_reason_code).
# BREACH_PHASE_CURRENT (issue 19) comes first: a phase current above its limit is what trips a
# fuse, and it can happen while the node's kW total looks well inside its limit.
BREACH_PHASE_CURRENT = "BREACH_PHASE_CURRENT"
_BREACHES: tuple[tuple[str, str], ...] = (
    (BREACH_PHASE_CURRENT, "Measured above the per-phase current limit on one phase"),
    ("BREACH_PHYSICAL_RATING", "Measured above the physical rating"),
    ("BREACH_OPERATING_ENVELOPE", "Measured above an operating envelope"),
    ("BREACH_MICROGRID_LIMIT", "Measured above the microgrid cap"),
    ("BREACH_TOU_LIMIT", "Measured above a scheduled cap"),
    ("BREACH_NODE_LIMIT", "Measured above a Node Limit"),
)
BREACH_PRECEDENCE: tuple[str, ...] = tuple(code for code, _ in _BREACHES)
BREACH_LABELS: dict[str, str] = dict(_BREACHES)

# A node's limit source (the constraint that sets its effective limit) -> the reason code of a
# charger it binds, and the breach code of a measurement above it.
LIMIT_SOURCE_TO_REASON: dict[str, str] = {
    "OPERATING_ENVELOPE": "OPERATING_ENVELOPE_LIMIT",
    "MICROGRID_LIMIT": "MICROGRID_LIMIT",
    "TOU_LIMIT": "TOU_LIMIT",
    "NODE_LIMIT": "NODE_LIMIT",
    "PHYSICAL_RATING": "PHYSICAL_RATING",
}
PHASE_CURRENT_LIMIT = "PHASE_CURRENT_LIMIT"
PHASE_UNBALANCE_LIMIT = "PHASE_UNBALANCE_LIMIT"
# The codes of a limit that stopped a charger: the kW limit sources' and the per-phase ones.
LIMIT_REASONS = frozenset(
    {*LIMIT_SOURCE_TO_REASON.values(), PHASE_CURRENT_LIMIT, PHASE_UNBALANCE_LIMIT}
)
LIMIT_SOURCE_TO_BREACH: dict[str, str] = {
    source: f"BREACH_{source}" for source in LIMIT_SOURCE_TO_REASON
}

_REASON_RANK = {code: rank for rank, code in enumerate(REASON_PRECEDENCE)}
_BREACH_RANK = {code: rank for rank, code in enumerate(BREACH_PRECEDENCE)}


def sort_reasons(codes: Iterable[str]) -> tuple[str, ...]:
    """Deduplicate reason codes and sort them by the precedence of spec 4.5."""
    return tuple(sorted(set(codes), key=_REASON_RANK.__getitem__))


def breach_rank(code: str) -> int:
    """A breach code's place in the breach precedence (unknown codes last)."""
    return _BREACH_RANK.get(code, len(_BREACH_RANK))
