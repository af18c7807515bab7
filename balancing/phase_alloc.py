"""The per-phase electrical model of a cycle (issue 19): inputs, and how chargers sit on phases.

Pure (no Django, no clock), like `balancing/engine.py`, which carries a `PhaseInput` in its
`EngineInput` when any per-phase data exists (a node with a current limit, a charger limited by
current) and None otherwise, so that a microgrid without per-phase data gives the very input
snapshot, and the very allocation, it gave before per-phase data existed.

Phases are numbered 0, 1, 2 for L1, L2, L3 of the node a charger hangs on. Nodes are not
rotated against each other (every node's L1 is the grid connection's L1); a single-phase node
has only L1. A charger's `phase_rotation` says which node phase each of its own phases is on:
a single-phase charger names one (`L2`), a three-phase one the node phases of its L1, L2 and
L3 (`L2L3L1`: its L1 on the node's L2, its L2 on L3, its L3 on L1), as OCPP names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "PHASE_NAMES",
    "PhaseCharger",
    "PhaseInput",
    "PhaseNode",
    "drawn_phases",
    "rotation_phases",
]

PHASE_NAMES = ("L1", "L2", "L3")
_INDEX = {name: i for i, name in enumerate(PHASE_NAMES)}

# A phase counts as drawn on when its current is at least this, and at least this share of the
# largest of the three: an EV charging on one phase shows a few tenths of an ampere of noise on
# the others, and one that draws nothing (below 1 A on every phase) says nothing at all.
DRAW_MIN_A = 1.0
DRAW_SHARE = 0.25


def rotation_phases(phases: int, rotation: str | None) -> tuple[int, ...]:
    """The node phases of a charger's own L1, L2, L3 (one for a single-phase charger)."""
    if phases == 1:
        return (_INDEX.get(rotation or "L1", 0),)
    text = rotation or "L1L2L3"
    try:
        return tuple(_INDEX[text[i : i + 2]] for i in (0, 2, 4))
    except KeyError:
        return (0, 1, 2)


def drawn_phases(
    phases: int, rotation: str | None, current_a: list[float] | tuple[float, ...] | None
) -> tuple[int, ...]:
    """The node phases an EV actually draws on, learnt from the charger's own phase currents.

    A three-phase charger with a single-phase EV draws on one of its phases; its currents say
    which, and the rotation says which node phase that is. Without currents, or while the EV
    draws nothing, the charger's wiring is all there is to go by: every phase it has.
    """
    wired = rotation_phases(phases, rotation)
    if phases == 1 or not current_a:
        return tuple(sorted(wired))
    top = max(current_a)
    if top < DRAW_MIN_A:
        return tuple(sorted(wired))
    floor_a = max(DRAW_MIN_A, DRAW_SHARE * top)
    drawn = [wired[k] for k in range(3) if current_a[k] >= floor_a]
    return tuple(sorted(drawn))


@dataclass(frozen=True, slots=True)
class PhaseNode:
    node_id: str
    voltage_v: float  # line-to-neutral
    phases: int  # 1 or 3
    limit_a: float | None  # effective per-phase current limit; None: none
    limit_a_source: str | None  # its limit source (the kW sources' names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "voltage_v": self.voltage_v,
            "phases": self.phases,
            "limit_a": self.limit_a,
            "limit_a_source": self.limit_a_source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhaseNode:
        return cls(
            node_id=d["node_id"],
            voltage_v=float(d["voltage_v"]),
            phases=int(d["phases"]),
            limit_a=None if d.get("limit_a") is None else float(d["limit_a"]),
            limit_a_source=d.get("limit_a_source"),
        )


@dataclass(frozen=True, slots=True)
class PhaseCharger:
    asset_id: str
    phases: int  # the charger's own phases, 1 or 3
    phase_rotation: str
    min_current_a: float | None
    max_current_a: float | None
    drawn: tuple[int, ...]  # node phases the EV draws on (drawn_phases), sorted

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "phases": self.phases,
            "phase_rotation": self.phase_rotation,
            "min_current_a": self.min_current_a,
            "max_current_a": self.max_current_a,
            "drawn": [PHASE_NAMES[p] for p in self.drawn],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhaseCharger:
        return cls(
            asset_id=d["asset_id"],
            phases=int(d["phases"]),
            phase_rotation=d["phase_rotation"],
            min_current_a=None if d.get("min_current_a") is None else float(d["min_current_a"]),
            max_current_a=None if d.get("max_current_a") is None else float(d["max_current_a"]),
            drawn=tuple(_INDEX[p] for p in d["drawn"]),
        )


@dataclass(frozen=True, slots=True)
class PhaseInput:
    """Every node's voltage, phases and current limit, every charger's phases (tree and
    asset order do not matter: the engine puts them in its own order)."""

    nodes: tuple[PhaseNode, ...]
    chargers: tuple[PhaseCharger, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_dict() for n in self.nodes],
            "chargers": [c.to_dict() for c in self.chargers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhaseInput:
        return cls(
            nodes=tuple(PhaseNode.from_dict(n) for n in d["nodes"]),
            chargers=tuple(PhaseCharger.from_dict(c) for c in d["chargers"]),
        )
