"""The balancing engine: one pure function that allocates charging power in a microgrid.

`allocate(EngineInput) -> EngineResult` implements spec 4.1 to 4.5: uncontrolled load and
telemetry fallback, fail safe, minimums, max-min fair water filling per priority class over the
nested node budgets, rounding, reason codes and external control (spec 3.4). It knows nothing of
the ORM, the clock or randomness: the cycle service builds the input from the database, stores
`EngineInput.to_dict()` as the cycle's input snapshot, and `replay_cycle` rebuilds it with
`EngineInput.from_dict()` and calls `allocate` again. The benchmark calls it directly.

The result depends only on the content of the input, never on the order of its tuples: every
collection is put into a canonical order (nodes in tree order, assets by asset_id) before any
arithmetic, so even float sums are computed in the same order.

How the fair share is computed (it runs every cycle, for thousands of chargers): for each
priority class, one bottom-up pass finds every node's fill level, the level L at which
sum_i clamp(L, min_i, u_i) over the class chargers below it reaches the node's budget, where
u_i is the charger's demand already capped by the levels of the nodes below. A charger's level
is then the lowest on its path, and the deepest node holding that level is the one that binds
it. This gives exactly the progressive filling of spec 4.3 without iterating over levels.
Per-charger work is done column-wise with numpy; Python loops run per node, or over the few
exceptions (stale, unplugged, fail safe, refused minimums).

`allocate` runs named phases, each a function below it, in this order: `_topology` (the tree),
`_uncontrolled_load` and `_charger_columns` (inputs to columns), `_budgets`,
`_failsafe_setpoints`, `_minimums`, `_water_fill` (one `_fill_class` per priority class),
`_round_setpoints`, `_external_control`, the reasons (`_charger_reason_tables`,
`_node_reasons`) and the results (`_charger_results`, `_node_results`, `_cycle_result`). They
hand each other small slotted state objects (`_Tree`, `_Loads`, `_Columns`, `_Active`,
`_Fill`, `_NodeReasons`). The tree is the engine's own (`_tree_order`, `_Tree`): it must refuse
anything but one valid tree and stay free of Django, where `microgrid/topology/tree.py` is
lenient by design (it renders whatever the database holds).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from heapq import heapify, heappop, heappush
from itertools import accumulate
from math import floor, inf
from operator import attrgetter
from typing import Any

import numpy as np

from balancing import phase_alloc
from balancing.codes import (
    DEPARTURE_PRIORITY,
    LIMIT_REASONS,
    LIMIT_SOURCE_TO_REASON,
    PHASE_CURRENT_LIMIT,
    PHASE_UNBALANCE_LIMIT,
    REASON_PRECEDENCE,
    sort_reasons,
)
from balancing.isotimes import epoch_seconds, finish_stamps, when
from balancing.phase_alloc import PhaseInput

__all__ = [
    "EXTERNAL_CONTROL",
    "FAILSAFE_TELEMETRY_UNAVAILABLE",
    "LIMIT_REASONS",
    "LIMIT_SOURCE_TO_REASON",
    "REASON_PRECEDENCE",
    "SOURCE_MODE_RANK",
    "TELEMETRY_FALLBACK",
    "Binding",
    "ChargerInput",
    "ChargerResult",
    "PhaseChargerResult",
    "DepartureResult",
    "EngineInput",
    "EngineResult",
    "FallbackEntry",
    "LoadInput",
    "NodeInput",
    "NodeResult",
    "allocate",
    "sort_reasons",
]

# Spec 4.5: the code lists and their precedence are defined once, in balancing/codes.py.
FAILSAFE_TELEMETRY_UNAVAILABLE = "FAILSAFE_TELEMETRY_UNAVAILABLE"
TELEMETRY_FALLBACK = "TELEMETRY_FALLBACK"
EXTERNAL_CONTROL = "EXTERNAL_CONTROL"
MIN_POWER_UNSERVED = "MIN_POWER_UNSERVED"
ASSET_MAX_POWER = "ASSET_MAX_POWER"
DEMAND_MET = "DEMAND_MET"

FRESH = "FRESH"
MEASURED = "MEASURED"
FALLBACK_DERIVED = "FALLBACK_DERIVED"
FAILSAFE = "FAILSAFE"
SOURCE_MODE_RANK = {MEASURED: 0, FALLBACK_DERIVED: 1, FAILSAFE: 2}

# Budgets are differences of floats; a minimum that fits "exactly" must not be refused because
# of the last bit, and a node is only "full" when its demand exceeds it by more than noise.
_EPS = 1e-9

# Reason tuples are shared, not rebuilt per charger: they are immutable and the hot loop is
# dominated by allocations.
_R_DEMAND = (DEMAND_MET,)
_R_ASSET_MAX = (ASSET_MAX_POWER,)
_R_MIN_UNSERVED = (MIN_POWER_UNSERVED,)
_R_FALLBACK = (TELEMETRY_FALLBACK,)
_R_FAILSAFE = (FAILSAFE_TELEMETRY_UNAVAILABLE,)
_R_EXTERNAL = (EXTERNAL_CONTROL,)
_R_DEPARTURE = (DEPARTURE_PRIORITY,)
_R_NONE: tuple[str, ...] = ()


def _kw(value: float) -> float:
    # 3 decimals for every kW in the output. floor(x + 0.5) is several times cheaper than
    # round() and, dividing an int, never yields -0.0; it differs from round() only on exact
    # half-way ties, which no value with at most 3 decimals is.
    return floor(value * 1000.0 + 0.5) / 1000.0


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeInput:
    node_id: str
    parent_id: str | None  # None only for the root
    limit_kw: float  # effective limit at the cycle's time (min of every constraint)
    limit_source: (
        str  # PHYSICAL_RATING | NODE_LIMIT | TOU_LIMIT | MICROGRID_LIMIT | OPERATING_ENVELOPE
    )
    external_control: bool = False  # subtree delegated to an external controller (spec 3.4)
    # Headroom (spec 4.3): kW kept back for the uncontrolled load to rise before the next cycle,
    # and why (shown as given); None: headroom is off for this node.
    margin_kw: float = 0.0
    margin_basis: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "node_id": self.node_id,
            "parent_id": self.parent_id,
            "limit_kw": self.limit_kw,
            "limit_source": self.limit_source,
            "external_control": self.external_control,
        }
        if self.margin_basis is not None:
            d["margin_kw"] = self.margin_kw
            d["margin_basis"] = self.margin_basis
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeInput:
        return cls(
            node_id=d["node_id"],
            parent_id=d["parent_id"],
            limit_kw=float(d["limit_kw"]),
            limit_source=d["limit_source"],
            external_control=bool(d.get("external_control", False)),
            margin_kw=float(d.get("margin_kw", 0.0)),
            margin_basis=d.get("margin_basis"),
        )


@dataclass(frozen=True, slots=True)
class LoadInput:
    """A SITE_LOAD, BATTERY or PV asset (signs as in spec 3.5)."""

    asset_id: str
    node_id: str
    kind: str  # "SITE_LOAD" | "BATTERY" | "PV"
    freshness: str  # "FRESH" | "STALE" | "MISSING"
    power_kw: float | None  # None when MISSING
    last_observed_at: str | None  # copied into fallback entries untouched
    fallback_kw: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "node_id": self.node_id,
            "kind": self.kind,
            "freshness": self.freshness,
            "power_kw": self.power_kw,
            "last_observed_at": self.last_observed_at,
            "fallback_kw": self.fallback_kw,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadInput:
        return cls(
            asset_id=d["asset_id"],
            node_id=d["node_id"],
            kind=d["kind"],
            freshness=d["freshness"],
            power_kw=_opt_float(d.get("power_kw")),
            last_observed_at=d.get("last_observed_at"),
            fallback_kw=_opt_float(d.get("fallback_kw")),
        )


@dataclass(frozen=True, slots=True)
class ChargerInput:
    asset_id: str
    node_id: str
    max_power_kw: float
    min_power_kw: float
    failsafe_power_kw: float
    priority: int = 0
    freshness: str = "FRESH"
    connected: bool = False
    requested_kw: float = 0.0
    plugged_in_at: str | None = None  # ISO UTC, same format everywhere, so text order is time order
    last_observed_at: str | None = None
    # The session (spec 4.3, "Departures"): when the vehicle leaves (ISO UTC), the energy it
    # needs in this connection and what it got so far. None: unknown.
    departure_at: str | None = None
    energy_needed_kwh: float | None = None
    energy_delivered_kwh: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {
            "asset_id": self.asset_id,
            "node_id": self.node_id,
            "max_power_kw": self.max_power_kw,
            "min_power_kw": self.min_power_kw,
            "failsafe_power_kw": self.failsafe_power_kw,
            "priority": self.priority,
            "freshness": self.freshness,
            "connected": self.connected,
            "requested_kw": self.requested_kw,
            "plugged_in_at": self.plugged_in_at,
            "last_observed_at": self.last_observed_at,
        }
        if self.departure_at is not None or self.energy_needed_kwh is not None:
            d["departure_at"] = self.departure_at
            d["energy_needed_kwh"] = self.energy_needed_kwh
            d["energy_delivered_kwh"] = self.energy_delivered_kwh
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChargerInput:
        return cls(
            asset_id=d["asset_id"],
            node_id=d["node_id"],
            max_power_kw=float(d["max_power_kw"]),
            min_power_kw=float(d["min_power_kw"]),
            failsafe_power_kw=float(d["failsafe_power_kw"]),
            priority=int(d.get("priority", 0)),
            freshness=d.get("freshness", FRESH),
            connected=bool(d.get("connected", False)),
            requested_kw=float(d.get("requested_kw", 0.0)),
            plugged_in_at=d.get("plugged_in_at"),
            last_observed_at=d.get("last_observed_at"),
            departure_at=d.get("departure_at"),
            energy_needed_kwh=_opt_float(d.get("energy_needed_kwh")),
            energy_delivered_kwh=float(d.get("energy_delivered_kwh") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class EngineInput:
    nodes: tuple[NodeInput, ...]
    loads: tuple[LoadInput, ...]
    chargers: tuple[ChargerInput, ...]
    threshold_s: int  # the microgrid's telemetry_stale_after_s, copied into fallback entries
    # The per-phase model (balancing/phase_alloc.py); None when no per-phase data exists.
    phase: PhaseInput | None = None
    # The cycle's time (ISO UTC) and how long before its departure a vehicle is planned to be
    # full: only departures need them (spec 4.3, "Departures").
    now: str | None = None
    departure_guard_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON input snapshot a cycle stores (spec 4.3, replay_cycle)."""
        d = {
            "nodes": [n.to_dict() for n in self.nodes],
            "loads": [ld.to_dict() for ld in self.loads],
            "chargers": [c.to_dict() for c in self.chargers],
            "threshold_s": self.threshold_s,
        }
        if self.phase is not None:
            d["phase"] = self.phase.to_dict()
        if self.now is not None:
            d["now"] = self.now
            d["departure_guard_s"] = self.departure_guard_s
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineInput:
        return cls(
            nodes=tuple(NodeInput.from_dict(n) for n in d["nodes"]),
            loads=tuple(LoadInput.from_dict(ld) for ld in d.get("loads", ())),
            chargers=tuple(ChargerInput.from_dict(c) for c in d.get("chargers", ())),
            threshold_s=int(d["threshold_s"]),
            phase=PhaseInput.from_dict(d["phase"]) if d.get("phase") else None,
            now=d.get("now"),
            departure_guard_s=float(d.get("departure_guard_s", 0.0)),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------------------------
# Output (spec 4.1 shapes)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FallbackEntry:
    asset_id: str
    why: str  # "STALE" | "MISSING"
    last_observed_at: str | None
    value_kw: float | None  # None: no fallback configured (fail safe)
    threshold_s: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "why": self.why,
            "last_observed_at": self.last_observed_at,
            "value_kw": self.value_kw,
            "threshold_s": self.threshold_s,
        }


@dataclass(frozen=True, slots=True)
class Binding:
    node_id: str
    limit_source: str
    limit_kw: float
    # A per-phase binding (issue 19): the phase ("L2", or "L1-L3" for an unbalance) and the
    # current limit (A) that bound; the kW figures stay the node's.
    phase: str | None = None
    limit_a: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "node_id": self.node_id,
            "limit_source": self.limit_source,
            "limit_kw": self.limit_kw,
        }
        if self.phase is not None:
            d["phase"] = self.phase
            d["limit_a"] = self.limit_a
        return d


@dataclass(frozen=True, slots=True)
class NodeResult:
    node_id: str
    effective_limit_kw: float
    limit_source: str
    uncontrolled_load_kw: float
    allocated_kw: float
    headroom_kw: float
    source_mode: str
    fallback: tuple[FallbackEntry, ...]
    reason_codes: tuple[str, ...]
    budget_kw: float | None = None  # only for a node under external control
    margin_kw: float | None = None  # headroom kept back (None: headroom off)
    margin_basis: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "node_id": self.node_id,
            "effective_limit_kw": self.effective_limit_kw,
            "limit_source": self.limit_source,
            "uncontrolled_load_kw": self.uncontrolled_load_kw,
            "allocated_kw": self.allocated_kw,
            "headroom_kw": self.headroom_kw,
            "source_mode": self.source_mode,
            "fallback": [f.to_dict() for f in self.fallback],
            "reason_codes": list(self.reason_codes),
        }
        if self.budget_kw is not None:
            d["budget_kw"] = self.budget_kw
        if self.margin_kw is not None:
            d["headroom_margin_kw"] = self.margin_kw
            d["headroom_margin"] = self.margin_basis
        return d


@dataclass(frozen=True, slots=True)
class DepartureResult:
    """What a cycle knows and expects of a charger's session (spec 4.3, "Departures")."""

    departure_at: str | None
    energy_needed_kwh: float | None
    energy_delivered_kwh: float
    projected_finish_at: str | None  # at this cycle's setpoint; None: unknown or never
    at_risk: bool | None  # cannot finish by its departure even at full power; None: unknown

    def to_dict(self) -> dict[str, Any]:
        return {
            "departure_at": self.departure_at,
            "energy_needed_kwh": self.energy_needed_kwh,
            "energy_delivered_kwh": self.energy_delivered_kwh,
            "projected_finish_at": self.projected_finish_at,
            "at_risk": self.at_risk,
        }


@dataclass(frozen=True, slots=True)
class ChargerResult:
    asset_id: str
    node_id: str
    requested_kw: float
    allocated_kw: float | None  # None: set by an external controller
    reason_codes: tuple[str, ...]
    binding: Binding | None
    departure: DepartureResult | None = None  # only for a charger with a session

    def to_dict(self) -> dict[str, Any]:
        d = {
            "asset_id": self.asset_id,
            "node_id": self.node_id,
            "requested_kw": self.requested_kw,
            "allocated_kw": self.allocated_kw,
            "reason_codes": list(self.reason_codes),
            "binding": None if self.binding is None else self.binding.to_dict(),
        }
        if self.departure is not None:
            d.update(self.departure.to_dict())
        return d


@dataclass(frozen=True, slots=True)
class PhaseChargerResult(ChargerResult):
    """A charger's result with per-phase data (issue 19): the setpoint as a kW limit and as a
    current per phase (A, rounded down to 0.1 A) on the `phases` phases the EV draws on. A
    subclass, so that a cycle without per-phase data builds exactly what it built before."""

    limit_kw: float | None = None
    limit_a: float | None = None
    phases: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = ChargerResult.to_dict(self)
        d["limit_kw"] = self.limit_kw
        d["limit_a"] = self.limit_a
        d["phases"] = self.phases
        return d


@dataclass(frozen=True, slots=True)
class EngineResult:
    outcome: str  # OK | CONSTRAINED | FAILSAFE
    source_mode: str  # MEASURED | FALLBACK_DERIVED | FAILSAFE
    reason_codes: tuple[str, ...]
    nodes: tuple[NodeResult, ...]
    chargers: tuple[ChargerResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "source_mode": self.source_mode,
            "reason_codes": list(self.reason_codes),
            "nodes": [n.to_dict() for n in self.nodes],
            "chargers": [c.to_dict() for c in self.chargers],
        }


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


# Frozen dataclasses are what callers get, but a frozen __init__ goes through
# object.__setattr__ once per field, which costs several times a plain slot store and, for
# thousands of chargers, a large share of the engine's time. These layout classes have the very
# same slots without the frozen __setattr__: the engine fills one and re-classes it, which
# CPython allows between layout-identical classes. The object is then an ordinary frozen
# ChargerResult / NodeResult (equality, hashing, repr and immutability as usual).
class _ChargerResultLayout:
    __slots__ = ChargerResult.__slots__


class _NodeResultLayout:
    __slots__ = NodeResult.__slots__


def _tree_order(nodes: tuple[NodeInput, ...]) -> list[NodeInput]:
    """Depth first, parent before child, siblings by node_id; refuses anything but one tree."""
    children: dict[str | None, list[NodeInput]] = {}
    # Sorting once by node_id leaves every sibling list sorted.
    ordered = sorted(nodes, key=attrgetter("node_id"))
    for n in ordered:
        kids = children.get(n.parent_id)
        if kids is None:
            children[n.parent_id] = [n]
        else:
            kids.append(n)
    roots = children.get(None, ())
    if len(roots) != 1:
        raise ValueError(f"expected exactly one root node, got {len(roots)}")
    order: list[NodeInput] = []
    stack = [roots[0]]
    while stack:
        n = stack.pop()
        order.append(n)
        kids = children.get(n.node_id)
        if kids:
            stack.extend(reversed(kids))
    unknown = {n.limit_source for n in ordered} - LIMIT_SOURCE_TO_REASON.keys()
    if unknown:
        raise ValueError(f"unknown limit_source {sorted(unknown)}")
    if len(order) != len(nodes):
        ids = [n.node_id for n in ordered]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate node_id")
        raise ValueError("node tree has a cycle, an unknown parent or unreachable nodes")
    return order


def _fill_level(us: list[float], ms: list[float], base: float, cap: float) -> float:
    """The smallest level L >= 0 with  sum_i clamp(L, m_i, u_i) >= cap.

    `us` holds the upper bounds of the items, `ms` their non-zero minimums and `base` the sum of
    every minimum (cap >= base). As base + sum_i min(L, u_i) - sum_i min(L, m_i) the function is
    piecewise linear with breakpoints at the u_i and m_i; the slope between breakpoints is the
    number of items strictly between their minimum and their bound.
    """
    us.sort()
    ms.sort()
    nu = len(us)
    nm = len(ms)
    if nu + nm <= 48:
        # Small node: walk the breakpoints in order (cheaper than building prefix sums).
        x = 0.0
        val = base
        iu = im = 0
        while True:
            while iu < nu and us[iu] <= x:
                iu += 1
            while im < nm and ms[im] <= x:
                im += 1
            slope = (nu - iu) - (nm - im)
            if iu < nu:
                nxt = us[iu] if im >= nm or us[iu] < ms[im] else ms[im]
            elif im < nm:
                nxt = ms[im]
            else:
                return x  # no breakpoint left: total is reached here (float noise)
            reach = val + slope * (nxt - x)
            if reach >= cap:
                # (cap < val only by float noise, at x = 0: the level is then 0)
                return x + (cap - val) / slope if slope > 0 and cap > val else x
            x = nxt
            val = reach
    # Large node: with prefix sums one evaluation is two bisections, and the crossing segment
    # is found by bisecting the merged breakpoints: no Python-level loop over the items.
    pu = list(accumulate(us, initial=0.0))
    pm = list(accumulate(ms, initial=0.0))

    def f(level: float) -> float:
        ju = bisect_right(us, level)
        jm = bisect_right(ms, level)
        return base + pu[ju] - pm[jm] + level * ((nu - ju) - (nm - jm))

    points = sorted(us + ms) if nm else us
    i = bisect_left(points, cap, key=f)
    prev = points[i - 1] if i else 0.0
    ju = bisect_right(us, prev)
    jm = bisect_right(ms, prev)
    slope = (nu - ju) - (nm - jm)
    if slope <= 0:
        return prev
    level = (cap - base - pu[ju] + pm[jm]) / slope
    # Float noise must not move the level out of the segment it was solved in.
    if level < prev:
        return prev
    if i < len(points) and level > points[i]:
        return points[i]
    return level


def _floor3(x: np.ndarray) -> np.ndarray:
    return np.floor(x * 1000.0 + 0.5) / 1000.0


# Charger outcomes are computed as integer codes (vectorised), then turned into reason tuples
# and bindings by table lookup: codes below _N_FIXED are fixed outcomes, _N_FIXED + n means
# "bound by node n".
(
    _C_DEMAND,
    _C_ASSET_MAX,
    _C_NONE,
    _C_FALLBACK,
    _C_FAILSAFE,
    _C_MIN_UNSERVED,
    _C_EXTERNAL,
    _C_FALLBACK_EXTERNAL,
    _C_FAILSAFE_EXTERNAL,
    _C_DEPARTURE,
) = range(10)
_FIXED_REASONS: tuple[tuple[str, ...], ...] = (
    _R_DEMAND,
    _R_ASSET_MAX,
    _R_NONE,
    _R_FALLBACK,
    _R_FAILSAFE,
    _R_MIN_UNSERVED,
    _R_EXTERNAL,
    (TELEMETRY_FALLBACK, EXTERNAL_CONTROL),
    (FAILSAFE_TELEMETRY_UNAVAILABLE, EXTERNAL_CONTROL),
    _R_DEPARTURE,
)
_N_FIXED = len(_FIXED_REASONS)


def allocate(inp: EngineInput) -> EngineResult:
    """Allocate charging power for one cycle (spec 4.1 to 4.5)."""
    tree = _topology(inp.nodes)
    loads = _uncontrolled_load(inp.loads, tree, inp.threshold_s)
    cols = _charger_columns(inp.chargers, tree, loads, inp.threshold_s)
    unc, remaining = _budgets(tree, loads)
    remaining = _failsafe_setpoints(cols, tree, remaining)
    dep = _departures(inp, cols)
    model = None
    if inp.phase is None:
        active, remaining = _minimums(cols, tree, remaining)
        fill = _water_fill(active, tree, remaining, dep)
    else:
        # Per-phase data (issue 19): minimums, departure grants and the fair share under every
        # node's kW budget and phase currents at once (balancing/phase_alloc.py).
        model, active, fill = _phase_fill(inp.phase, cols, tree, loads, remaining, dep)
    _round_setpoints(cols, active, fill)
    own_hidden = _external_control(cols, tree, loads)
    reason_table, binding_table = _charger_reason_tables(tree, fill.bindings)
    if model is not None:
        _phase_reason_tables(tree, model, fill, reason_table, binding_table)
    chargers = _charger_results(cols, reason_table, binding_table, dep, model)
    alloc_sum = tree.subtree_sums(
        np.bincount(cols.ch_node, weights=cols.setpoint, minlength=tree.n)
    )
    headroom = np.maximum(tree.limits - unc - alloc_sum, 0.0)
    used_codes = set(cols.code_list)
    # An external controller may use the spare room on its path, but not the kept-back margin.
    spare = headroom if tree.margins is None else np.maximum(headroom - tree.margins, 0.0)
    reasons = _node_reasons(tree, loads, used_codes, spare, own_hidden)
    nodes = _node_results(tree, unc, alloc_sum, headroom, reasons)
    return _cycle_result(used_codes, reason_table, reasons, nodes, chargers)


# --------------------------------------------------------------------------------------------
# Phase state. Plain slotted classes: the phases hand them on and fill them in; nothing outside
# this module sees them.
# --------------------------------------------------------------------------------------------


class _Tree:
    """The node tree in preorder (parents before children) with what every phase needs of it."""

    __slots__ = ("order", "index", "parent", "limits", "margins", "levels", "pair_levels", "n")

    order: list[NodeInput]
    index: dict[str, int]  # node_id -> position in order
    parent: list[int]  # position of the parent, -1 for the root
    limits: np.ndarray  # effective limit per node
    margins: np.ndarray | None  # headroom kept back per node (None: none anywhere)
    levels: list[tuple[np.ndarray, np.ndarray]]  # (nodes, their parents) per depth, deepest first
    pair_levels: list[tuple[np.ndarray, np.ndarray]] | None  # the same for two columns at once
    n: int

    def subtree_sums(self, own: np.ndarray) -> np.ndarray:
        """Each node's value plus every value below it."""
        n_nodes = self.n
        if n_nodes <= 64:
            # A small tree: one Python pass costs less than a few numpy calls per level.
            parent = self.parent
            acc = own.tolist()
            for i in range(n_nodes - 1, 0, -1):
                acc[parent[i]] += acc[i]
            return np.array(acc, dtype=float)
        total = np.array(own, dtype=float)  # a copy; bincount of nothing is an int array
        for kids, parents in self.levels:
            total += np.bincount(parents, weights=total[kids], minlength=n_nodes)
        return total

    def subtree_sums_pair(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`subtree_sums` of two columns in one pass, to the last bit: interleaved, each column
        gets the very same additions in the very same order."""
        n_nodes = self.n
        if n_nodes <= 64:
            return self.subtree_sums(a), self.subtree_sums(b)
        levels = self.pair_levels
        if levels is None:
            levels = self.pair_levels = [
                (
                    np.stack((2 * kids, 2 * kids + 1), axis=1).ravel(),
                    np.stack((2 * parents, 2 * parents + 1), axis=1).ravel(),
                )
                for kids, parents in self.levels
            ]
        total = np.empty(2 * n_nodes)
        total[0::2] = a
        total[1::2] = b
        for kids, parents in levels:
            total += np.bincount(parents, weights=total[kids], minlength=2 * n_nodes)
        return total[0::2], total[1::2]

    def path_of(self, ni: int) -> list[int]:
        """The node and its ancestors up to the root."""
        parent = self.parent
        out = []
        while ni >= 0:
            out.append(ni)
            ni = parent[ni]
        return out

    def node_of(self, node_id: str, asset_id: str) -> int:
        """The position of an asset's node; an unknown node is an invalid input."""
        try:
            return self.index[node_id]
        except KeyError:
            raise ValueError(f"asset {asset_id!r} names unknown node {node_id!r}") from None


class _Loads:
    """Uncontrolled load and telemetry state per node (spec 4.2)."""

    __slots__ = (
        "own_unc",
        "fallbacks",
        "has_fallback_value",
        "failsafe",
        "under_failsafe",
        "under_external",
        "any_failsafe",
        "any_external",
    )

    own_unc: list[float]  # uncontrolled load at the node itself (not below it)
    fallbacks: list[list[FallbackEntry]]  # entries of the node's subtree
    has_fallback_value: list[bool]  # a fallback value was used in the subtree
    failsafe: list[bool]  # a value without fallback in the subtree
    under_failsafe: list[bool]  # the node or an ancestor is in fail safe
    under_external: list[bool]  # the node or an ancestor is under external control
    any_failsafe: bool
    any_external: bool


class _Columns:
    """The chargers in asset_id order, one numpy column per field, and their outcome so far."""

    __slots__ = (
        "chargers",
        "asset_ids",
        "node_ids",
        "ni_list",
        "ch_node",
        "req",
        "max_kw",
        "min_kw",
        "prio",
        "requesting",
        "req_out",
        "failsafe_list",
        "code",
        "code_list",
        "setpoint",
        "alloc_override",
    )

    chargers: list[ChargerInput]
    asset_ids: list[str]
    node_ids: list[str]
    ni_list: list[int]  # node position per charger
    ch_node: np.ndarray  # the same as an array
    req: np.ndarray
    max_kw: np.ndarray
    min_kw: np.ndarray
    prio: np.ndarray
    requesting: np.ndarray  # connected, fresh, asking, not in fail safe
    req_out: np.ndarray  # requested_kw as the result shows it
    failsafe_list: list[int]  # chargers set to their fail safe power
    code: np.ndarray  # outcome code per charger (see _FIXED_REASONS)
    code_list: list[int]  # the same as a list, once final
    setpoint: np.ndarray  # what counts in the nodes' allocated_kw
    alloc_override: dict[int, float | None]  # output allocated_kw that differs from setpoint


class _Active:
    """The chargers of the fair share: positions in _Columns and their columns."""

    __slots__ = ("idx", "node", "min", "over", "dem", "prio")

    idx: np.ndarray
    node: np.ndarray
    min: np.ndarray
    over: np.ndarray  # asks more than its maximum
    dem: np.ndarray  # what it would take: request capped by the maximum, at least the minimum
    prio: np.ndarray

    def take(self, which: np.ndarray) -> None:
        """Keep (a mask) or reorder (positions) every column alike."""
        self.idx = self.idx[which]
        self.node = self.node[which]
        self.min = self.min[which]
        self.over = self.over[which]
        self.dem = self.dem[which]
        self.prio = self.prio[which]


class _Fill:
    """The fair share's result per active charger: its level and the node that sets it."""

    __slots__ = ("level", "bind", "bindings", "min0", "granted", "held", "phase_bindings")

    level: np.ndarray
    bind: np.ndarray  # node position, -1 for none
    bindings: list[Binding | None]  # per node, once it bound someone
    min0: np.ndarray  # each charger's own minimum (a.min may be raised by a departure grant)
    granted: np.ndarray | None  # served first for its departure (None: no departures)
    held: np.ndarray | None  # bound by a node whose room departures took first
    phase_bindings: dict[int, tuple[int, Binding]]  # per-phase node code -> its binding


class _NodeReasons:
    """Per-node modes, fallback entries, reasons and budgets, and what they add to the cycle."""

    __slots__ = ("modes", "fallback", "reasons", "budget", "codes", "worst_rank", "constrained")

    modes: list[str]
    fallback: list[tuple[FallbackEntry, ...]]
    reasons: list[tuple[str, ...]]
    budget: list[float | None]
    codes: set[str]
    worst_rank: int
    constrained: bool


# --------------------------------------------------------------------------------------------
# Phases, in the order allocate runs them
# --------------------------------------------------------------------------------------------


def _topology(nodes: tuple[NodeInput, ...]) -> _Tree:
    """The node tree in preorder with parent positions and the per-depth levels of sums."""
    tree = _Tree()
    order = tree.order = _tree_order(nodes)
    n_nodes = tree.n = len(order)
    index = tree.index = {n.node_id: i for i, n in enumerate(order)}
    # Preorder puts every parent before its children: walking the positions backwards is a
    # bottom-up pass, forwards a top-down one.
    parent = tree.parent = [-1] * n_nodes
    depth = [0] * n_nodes
    for i in range(1, n_nodes):
        p = parent[i] = index[order[i].parent_id]  # type: ignore[index]
        depth[i] = depth[p] + 1
    tree.limits = np.array([n.limit_kw for n in order], dtype=float)
    margins = [n.margin_kw for n in order]
    tree.margins = np.array(margins, dtype=float) if any(margins) else None
    # Subtree sums level by level, deepest first: one bincount per level.
    by_depth: dict[int, list[int]] = {}
    for i in range(1, n_nodes):
        by_depth.setdefault(depth[i], []).append(i)
    tree.levels = [
        (np.array(by_depth[k], dtype=np.intp), np.array([parent[i] for i in by_depth[k]]))
        for k in sorted(by_depth, reverse=True)
    ]
    tree.pair_levels = None
    return tree


def _uncontrolled_load(loads: tuple[LoadInput, ...], tree: _Tree, threshold_s: int) -> _Loads:
    """Site loads, batteries and PV into each node's own load, fallbacks and fail safe (4.2)."""
    n_nodes = tree.n
    state = _Loads()
    own_unc = state.own_unc = [0.0] * n_nodes
    fallbacks = state.fallbacks = [[] for _ in range(n_nodes)]
    has_fallback_value = state.has_fallback_value = [False] * n_nodes
    failsafe = state.failsafe = [False] * n_nodes
    for ld in sorted(loads, key=attrgetter("asset_id")):
        ni = tree.node_of(ld.node_id, ld.asset_id)
        kind = ld.kind
        if kind == "METER":
            continue  # meters feed breach detection only (spec 3.5)
        if kind not in ("SITE_LOAD", "BATTERY", "PV"):
            raise ValueError(f"asset {ld.asset_id!r} has unknown kind {kind!r}")
        if ld.freshness == FRESH:
            power = ld.power_kw or 0.0
            own_unc[ni] += -power if kind == "PV" else power
            continue
        # PV counts 0: no headroom from generation nobody sees.
        value = 0.0 if kind == "PV" else ld.fallback_kw
        entry = FallbackEntry(
            ld.asset_id,
            ld.freshness,
            ld.last_observed_at,
            None if value is None else _kw(value),
            threshold_s,
        )
        for j in tree.path_of(ni):
            fallbacks[j].append(entry)
            if value is None:
                failsafe[j] = True
            else:
                has_fallback_value[j] = True
        if value is not None:
            own_unc[ni] += value

    # The failsafe set is closed upwards (every path ends at the root), so in practice the
    # whole tree is in fail safe; the rule is still written for any subtree.
    under_failsafe = state.under_failsafe = failsafe[:]
    under_external = state.under_external = [n.external_control for n in tree.order]
    state.any_failsafe = any(failsafe)
    state.any_external = any(under_external)
    if state.any_external or state.any_failsafe:
        parent = tree.parent
        for i in range(1, n_nodes):
            p = parent[i]
            if under_failsafe[p]:
                under_failsafe[i] = True
            if under_external[p]:
                under_external[i] = True
    return state


def _charger_columns(
    chargers_in: tuple[ChargerInput, ...], tree: _Tree, loads: _Loads, threshold_s: int
) -> _Columns:
    """Chargers into columns, classified: unplugged, stale (a fixed load), fail safe, asking."""
    # Column-wise from here on: per-charger work is vectorised, and Python loops only visit
    # the exceptions (stale, unplugged, fail safe, refused minimums).
    cols = _Columns()
    chargers = cols.chargers = sorted(chargers_in, key=attrgetter("asset_id"))
    n_ch = len(chargers)
    # (comprehensions read slots faster than attrgetter does)
    asset_ids = cols.asset_ids = [c.asset_id for c in chargers]
    node_ids = cols.node_ids = [c.node_id for c in chargers]
    fresh_col = [c.freshness for c in chargers]
    ni_list = cols.ni_list = list(map(tree.index.get, node_ids))  # type: ignore[arg-type]
    if None in ni_list:
        k = ni_list.index(None)  # type: ignore[arg-type]
        tree.node_of(node_ids[k], asset_ids[k])
    ch_node = cols.ch_node = np.array(ni_list, dtype=np.intp)
    req = cols.req = np.array([c.requested_kw for c in chargers], dtype=float)
    cols.max_kw = np.array([c.max_power_kw for c in chargers], dtype=float)
    cols.min_kw = np.array([c.min_power_kw for c in chargers], dtype=float)
    cols.prio = np.array([c.priority for c in chargers], dtype=np.int64)
    connected = np.array([c.connected for c in chargers], dtype=bool)
    fresh = np.ones(n_ch, dtype=bool)
    stale = []
    if fresh_col.count(FRESH) != n_ch:
        stale = [k for k, f in enumerate(fresh_col) if f != FRESH]
    fresh[stale] = False
    code = cols.code = np.full(n_ch, _C_DEMAND, dtype=np.intp)
    cols.setpoint = np.zeros(n_ch)
    alloc_override = cols.alloc_override = {}
    plugged_fresh = fresh & connected
    code[fresh & ~connected] = _C_NONE
    own_unc = loads.own_unc
    fallbacks = loads.fallbacks
    has_fallback_value = loads.has_fallback_value
    for k in stale:
        # It cannot be steered: fixed load at what it draws on its own.
        c = chargers[k]
        ni = ni_list[k]
        fs_kw = c.failsafe_power_kw
        own_unc[ni] += fs_kw
        entry = FallbackEntry(c.asset_id, c.freshness, c.last_observed_at, _kw(fs_kw), threshold_s)
        for j in tree.path_of(ni):
            fallbacks[j].append(entry)
            has_fallback_value[j] = True
        code[k] = _C_FALLBACK
        alloc_override[k] = _kw(fs_kw)
    requesting = plugged_fresh & (req > 0.0)
    req_out = np.where(requesting, _floor3(req), 0.0)
    cols.failsafe_list = []
    if loads.any_failsafe:
        in_failsafe = plugged_fresh & np.array(loads.under_failsafe)[ch_node]
        cols.failsafe_list = np.flatnonzero(in_failsafe).tolist()
        code[in_failsafe] = _C_FAILSAFE
        requesting &= ~in_failsafe
        # asking for 0 still shows what was asked, the setpoint is the failsafe power
        req_out[in_failsafe] = np.maximum(_floor3(req[in_failsafe]), 0.0)
    cols.requesting = requesting
    cols.req_out = req_out
    return cols


def _budgets(tree: _Tree, loads: _Loads) -> tuple[np.ndarray, np.ndarray]:
    """Each node's uncontrolled load (subtree sum) and what its chargers may still take."""
    unc = tree.subtree_sums(np.array(loads.own_unc))
    # A negative budget allocates nothing. The headroom margin (spec 4.3) comes off the budget:
    # room kept for the uncontrolled load to rise before the next cycle.
    if tree.margins is not None:
        return unc, np.maximum(tree.limits - unc - tree.margins, 0.0)
    return unc, np.maximum(tree.limits - unc, 0.0)


def _failsafe_setpoints(cols: _Columns, tree: _Tree, remaining: np.ndarray) -> np.ndarray:
    """Fail safe setpoints (spec 4.2), in asset_id order within every known budget."""
    if not cols.failsafe_list:
        return remaining
    room = remaining.tolist()
    chargers = cols.chargers
    ni_list = cols.ni_list
    setpoint = cols.setpoint
    for k in cols.failsafe_list:
        fs_kw = chargers[k].failsafe_power_kw
        path = tree.path_of(ni_list[k])
        if all(room[j] >= fs_kw - _EPS for j in path):
            for j in path:
                room[j] -= fs_kw
            setpoint[k] = fs_kw
    return np.array(room)


def _active(cols: _Columns) -> _Active:
    """The requesting chargers' columns: node, minimum, demand (capped at the charger's
    maximum, never below its minimum: a charger cannot run lower; the EV draws less), class."""
    act = np.flatnonzero(cols.requesting)
    a = _Active()
    a.idx = act
    a.node = cols.ch_node[act]
    a.min = cols.min_kw[act]
    req = cols.req[act]
    max_kw = cols.max_kw[act]
    a.over = req > max_kw
    a.dem = np.maximum(np.where(a.over, max_kw, req), a.min)
    a.prio = cols.prio[act]
    return a


def _minimums(cols: _Columns, tree: _Tree, remaining: np.ndarray) -> tuple[_Active, np.ndarray]:
    """Serve minimums by priority and plug-in time where they do not all fit (spec 4.3 step 1)."""
    n_nodes = tree.n
    a = _active(cols)
    act = a.idx
    sub_min = tree.subtree_sums(np.bincount(a.node, weights=a.min, minlength=n_nodes))
    # Only a node whose minimums do not all fit can refuse one. Under no such node every
    # minimum is served whatever the order, so the ordered pass only visits the chargers below
    # an at-risk node, and only checks those nodes.
    at_risk = (sub_min > remaining + _EPS).tolist()
    if any(at_risk):
        path_of = tree.path_of
        risky_paths = [[j for j in path_of(i) if at_risk[j]] for i in range(n_nodes)]
        a_min_l = a.min.tolist()
        a_node_l = a.node.tolist()
        act_l = act.tolist()
        chargers = cols.chargers
        candidates = [q for q in range(len(act_l)) if a_min_l[q] > 0.0 and risky_paths[a_node_l[q]]]
        # (asset_ids are unique, so the keys never tie and the positions are never compared)
        candidates = [
            q for _, q in sorted((_minimum_order(chargers[act_l[q]]), q) for q in candidates)
        ]
        room = remaining.tolist()
        served = np.ones(len(act_l), dtype=bool)
        for q in candidates:
            m = a_min_l[q]
            path = risky_paths[a_node_l[q]]
            if all(room[j] >= m - _EPS for j in path):
                for j in path:
                    room[j] -= m
            else:
                served[q] = False
        cols.code[act[~served]] = _C_MIN_UNSERVED
        a.take(served)
        sub_min = tree.subtree_sums(np.bincount(a.node, weights=a.min, minlength=n_nodes))
    return a, remaining - sub_min


def _minimum_order(c: ChargerInput) -> tuple[int, bool, str, str]:
    """Who gets a minimum first: priority desc, plugged-in time asc, asset_id (spec 4.3)."""
    plugged = c.plugged_in_at
    return (-c.priority, plugged is None, plugged or "", c.asset_id)


def _water_fill(a: _Active, tree: _Tree, remaining: np.ndarray, dep: _Departures | None) -> _Fill:
    """Max-min fair levels above the minimums, one priority class at a time (spec 4.3 step 2),
    each class's departure grants first (step 2a)."""
    n_nodes = tree.n
    fill = _Fill()
    fill.bindings = [None] * n_nodes
    fill.granted = fill.held = None
    # One sort for every class: priority descending, then node, asset_id order within a node
    # (lexsort is stable), so that each class is a slice and each node a run within it.
    a.take(np.lexsort((a.node, -a.prio)))
    n_act = len(a.idx)
    fill.level = np.empty(n_act)
    fill.bind = np.empty(n_act, dtype=np.intp)
    class_starts = [0, *(np.flatnonzero(a.prio[1:] != a.prio[:-1]) + 1).tolist()]
    class_ends = [*class_starts[1:], n_act]
    dem_all = a.dem.tolist()
    min_all = a.min.tolist()
    node_all = a.node.tolist()
    fill.min0 = a.min
    grants_below = None
    if dep is not None and dep.grantable[a.idx].any():
        # Who may be served first in every class and what each wants, from the minimums as
        # they are: a class's grants raise only its own, so each class's are still these when
        # its turn comes.
        candidates = _departure_candidates(a, dep)
        a.min = a.min.copy()
        fill.granted = np.zeros(n_act, dtype=bool)
        fill.held = np.zeros(n_act, dtype=bool)
        grants_below = np.zeros(n_nodes)
    n_classes = len(class_starts) if n_act else 0
    for ci in range(n_classes):
        lo_c = class_starts[ci]
        hi_c = class_ends[ci]
        if grants_below is not None:
            lo, hi = np.searchsorted(candidates[0], (lo_c, hi_c)).tolist()
            remaining, given, sub_given = _departure_grants(
                a,
                tree,
                remaining,
                dep,  # type: ignore[arg-type]
                fill,
                lo_c,
                tuple(column[lo:hi] for column in candidates),
            )
            if given is not None:
                min_all[lo_c:hi_c] = a.min[lo_c:hi_c].tolist()
                grants_below += sub_given
        c_level = _fill_class(a, tree, remaining, fill, lo_c, hi_c, dem_all, min_all, node_all)
        if grants_below is not None:
            # Bound by a node where departures (of this class or a higher one) took room first.
            c_bind = fill.bind[lo_c:hi_c]
            fill.held[lo_c:hi_c] = (c_bind >= 0) & (grants_below[c_bind] > _EPS)  # type: ignore[index]
        if ci + 1 < n_classes:
            # What the class took above its minimums comes off every budget on the way up.
            c_node = a.node[lo_c:hi_c]
            c_dem = a.dem[lo_c:hi_c]
            c_min = a.min[lo_c:hi_c]
            taken = np.where(c_level >= c_dem, c_dem, np.maximum(c_level, c_min)) - c_min
            remaining = remaining - tree.subtree_sums(np.bincount(c_node, taken, n_nodes))
    return fill


def _fill_class(
    a: _Active,
    tree: _Tree,
    remaining: np.ndarray,
    fill: _Fill,
    lo_c: int,
    hi_c: int,
    dem_all: list[float],
    min_all: list[float],
    node_all: list[int],
) -> np.ndarray:
    """One class's fill levels: every node's level bottom-up, each charger's lowest on its path."""
    n_nodes = tree.n
    parent = tree.parent
    order = tree.order
    bindings = fill.bindings
    c_node = a.node[lo_c:hi_c]
    rem = remaining.tolist()
    # A node below an exhausted one (no room above the minimums, typically taken by a
    # higher class) can never set anyone's level: the exhausted node holds everything under
    # it at level 0. Such "dead" nodes only add up their totals, nothing is solved there.
    dead = [False] * n_nodes
    if min(rem) <= _EPS:
        for n in range(1, n_nodes):
            p = parent[n]
            if dead[p] or rem[p] <= _EPS:
                dead[n] = True

    # Bottom-up: each node's fill level given the levels already found below it. A node's
    # lists hold, for the class chargers of its subtree, the upper bounds u_i (capped by the
    # full nodes below) and the non-zero minimums; they are handed up to the parent whole.
    has = (np.bincount(c_node, minlength=n_nodes) > 0).tolist()  # class chargers below
    base = np.bincount(c_node, a.min[lo_c:hi_c], n_nodes).tolist()  # sum of the minimums
    total = np.bincount(c_node, a.dem[lo_c:hi_c], n_nodes).tolist()  # sum of u_i
    us: list[list[float] | None] = [None] * n_nodes
    ms: list[list[float]] = [[]] * n_nodes  # shared empty default, replaced before mutating
    run_starts = [lo_c, *(np.flatnonzero(c_node[1:] != c_node[:-1]) + (lo_c + 1)).tolist()]
    for lo, hi in zip(run_starts, [*run_starts[1:], hi_c], strict=True):
        n = node_all[lo]
        if not dead[n]:
            us[n] = dem_all[lo:hi]
            if base[n] > 0.0:
                ms[n] = [m for m in min_all[lo:hi] if m > 0.0]
    level = [inf] * n_nodes
    touched: list[int] = []
    for n in range(n_nodes - 1, -1, -1):
        if not has[n]:
            continue
        touched.append(n)
        b = base[n]
        r = rem[n]
        u = us[n]
        m_list = ms[n]
        if total[n] > r + b + _EPS:
            cap = total[n] = r + b
            if r <= _EPS:
                # Every item stays at its minimum: nothing of this subtree moves any more.
                level[n] = 0.0
                u = []
                m_list = []
            elif not dead[n]:
                lam = level[n] = _fill_level(u, m_list, b, cap)  # type: ignore[arg-type]
                # Above this node its items never exceed lam: cap the bounds, and drop the
                # items whose minimum is above lam (they stay at it, a constant).
                ku = bisect_left(u, lam)  # type: ignore[arg-type]
                km = bisect_right(m_list, lam)
                keep = len(u) - ku - (len(m_list) - km)  # type: ignore[arg-type]
                u = u[:ku]  # type: ignore[index]
                if keep:
                    u.extend([lam] * keep)
                m_list = m_list[:km]
            if level[n] < inf and bindings[n] is None:
                nd = order[n]
                bindings[n] = Binding(nd.node_id, nd.limit_source, _kw(nd.limit_kw))
        p = parent[n]
        if p < 0:
            continue
        has[p] = True
        base[p] += b
        total[p] += total[n]
        if not dead[n]:
            if u is None:
                u = []  # only children below an exhausted node: constants, no items
            pu = us[p]
            if pu is None:
                us[p] = u
                ms[p] = m_list
            else:
                pu.extend(u)
                if m_list:
                    if ms[p]:
                        ms[p].extend(m_list)
                    else:
                        ms[p] = m_list

    # Top-down: a charger's level is the lowest on its path; the deepest full node at that
    # level is the one that binds it (a tie, up to float noise, goes to the deeper node).
    eff = level  # updated in place: a parent is final before its children are read
    bind_node = [-1] * n_nodes
    for n in reversed(touched):
        lam = level[n]
        p = parent[n]
        above = eff[p] if p >= 0 else inf
        if lam <= above + _EPS:
            if lam < inf:
                bind_node[n] = n
            if lam > above:
                eff[n] = above
        else:
            eff[n] = above
            bind_node[n] = bind_node[p]

    c_level = np.array(eff)[c_node]
    fill.level[lo_c:hi_c] = c_level
    fill.bind[lo_c:hi_c] = np.array(bind_node)[c_node]
    return c_level


def _phase_fill(
    phase: PhaseInput,
    cols: _Columns,
    tree: _Tree,
    loads: _Loads,
    remaining: np.ndarray,
    dep: _Departures | None,
) -> tuple[phase_alloc.PhaseModel, _Active, _Fill]:
    """Minimums, departure grants and the fair share with per-phase data (issue 19, spec 4.3
    "Phases").

    The same steps as `_minimums` and `_water_fill` (with `_departure_grants`), under every
    constraint at once: each node's kW budget, each phase of a node with a current limit, each
    unbalance limit. The arithmetic is `phase_alloc`'s; this joins it to the engine's columns
    and codes."""
    n_nodes = tree.n
    model = phase_alloc.build_model(
        phase, [nd.node_id for nd in tree.order], tree.parent, cols.asset_ids, cols.ch_node
    )
    cols.min_kw, cols.max_kw = phase_alloc.current_range_kw(model, cols.min_kw, cols.max_kw)
    a = _active(cols)
    act = a.idx
    # Fixed draws on known phases: stale chargers at their failsafe power (counted in the
    # nodes' uncontrolled load by _charger_columns) and fail safe setpoints.
    stale = np.flatnonzero(cols.code == _C_FALLBACK)
    fs = np.array([cols.chargers[k].failsafe_power_kw for k in stale.tolist()], dtype=float)
    own_unc = np.array(loads.own_unc) - np.bincount(
        cols.ch_node[stale], weights=fs, minlength=n_nodes
    )
    held = np.flatnonzero(cols.setpoint > 0.0)
    fixed = np.concatenate([stale, held])
    fixed_kw = np.concatenate([fs, cols.setpoint[held]])
    room = phase_alloc.rooms(model, remaining, own_unc, fixed_kw, cols.ch_node[fixed], fixed)
    e_c, e_j, e_v = phase_alloc.entries(model, cols.ch_node, act)
    # Setpoints are rounded down: on an unbalance pair that lowers the chargers that lower the
    # difference (those on the second phase only) and so raises it. Keep back what that can
    # add (0.1 kW each) so that the rounded setpoints still keep the unbalance.
    neg = e_v < 0.0
    if neg.any():
        room = room - np.bincount(e_c[neg], weights=-0.1 * e_v[neg], minlength=len(room))
    chargers = cols.chargers
    act_l = act.tolist()

    def order(candidates: list[int]) -> list[int]:
        # (only asked for when some minimums do not all fit, for the chargers they concern)
        return [q for _, q in sorted((_minimum_order(chargers[act_l[q]]), q) for q in candidates)]

    served, room = phase_alloc.admit_minimums(order, a.min, e_c, e_j, e_v, room)
    if not served.all():
        cols.code[act[~served]] = _C_MIN_UNSERVED
        a.take(served)
        # the served chargers' entries, at their new positions
        kept = served[e_j]
        e_c, e_j, e_v = e_c[kept], (np.cumsum(served) - 1)[e_j[kept]], e_v[kept]
    fill = _Fill()
    fill.granted = fill.held = None
    fill.min0 = a.min
    n_act = len(a.idx)
    fill.level = np.empty(n_act)
    fill.bind = np.full(n_act, -1, dtype=np.intp)
    # Constraint -> the engine's node code block: kW at the node, (kW after departure grants
    # took room first), a phase current, an unbalance, then the last two after grants.
    is_kw = model.cons_kind == phase_alloc.KIND_KW
    block = np.where(is_kw, 0, np.where(model.cons_kind == phase_alloc.KIND_PHASE, 2, 3))
    cons_code = block * n_nodes + model.cons_node
    held_code = cons_code + np.where(is_kw, 1, 2) * n_nodes
    cons_depth = (model.depth_anc >= 0).sum(axis=1)[model.cons_node]
    used_cons: set[int] = set()
    grants = dep is not None and bool(dep.grantable[a.idx].any())
    if grants:
        a.min = a.min.copy()  # (raised by grants; fill.min0 keeps each charger's own)
        fill.granted = np.zeros(n_act, dtype=bool)
        fill.held = np.zeros(n_act, dtype=bool)  # (held back: in the bind codes)
        granted_on = np.zeros(len(room))  # what grants (this class or higher) took per constraint
    for prio in sorted(set(a.prio.tolist()), reverse=True):
        members = np.flatnonzero(a.prio == prio)
        local = np.full(n_act, -1, dtype=np.intp)
        local[members] = np.arange(len(members))
        keep = local[e_j] >= 0
        ec, ej, ev = e_c[keep], local[e_j[keep]], e_v[keep]
        if grants:
            given = _phase_departure_grants(a, dep, members, ec, ej, ev, room)  # type: ignore[arg-type]
            if given is not None:
                a.min[members] += given
                fill.granted[members] = given > 0.0  # type: ignore[index]
                room = room - np.bincount(ec, weights=ev * given[ej], minlength=len(room))
                granted_on += np.bincount(
                    ec, weights=np.maximum(ev, 0.0) * given[ej], minlength=len(room)
                )
        mins, dem = a.min[members], a.dem[members]
        value, bind = phase_alloc.fill(mins, dem, ec, ej, ev, room, cons_depth)
        fill.level[members] = value
        bound = bind >= 0
        codes = cons_code[bind[bound]]
        if grants:
            # Bound by a constraint where grants took room first: its code and
            # DEPARTURE_PRIORITY (the blocks after grants).
            codes = np.where(granted_on[bind[bound]] > _EPS, held_code[bind[bound]], codes)
        fill.bind[members[bound]] = codes
        used_cons.update(bind[bound].tolist())
        # What the class took above its minimums comes off every constraint.
        room = room - np.bincount(ec, weights=ev * (value - mins)[ej], minlength=len(room))
    fill.bindings = [None] * n_nodes
    fill.phase_bindings = {}
    for c in used_cons:
        i = int(model.cons_node[c])
        nd = tree.order[i]
        kind = int(model.cons_kind[c])
        if kind == phase_alloc.KIND_KW:
            fill.bindings[i] = Binding(nd.node_id, nd.limit_source, _kw(nd.limit_kw))
            continue
        p = int(model.cons_p[c])
        if kind == phase_alloc.KIND_PHASE:
            name = phase_alloc.PHASE_NAMES[p]
            source = model.phase_source[i][p] or nd.limit_source
            limit_a = float(model.phase_limit[i, p])
        else:
            q = int(model.cons_q[c])
            name = f"{phase_alloc.PHASE_NAMES[p]}-{phase_alloc.PHASE_NAMES[q]}"
            source = nd.limit_source
            limit_a = float(model.unbalance_a[i])
        # One binding per node and kind: the first phase (by constraint order) that bound.
        key = int(cons_code[c])
        if key not in fill.phase_bindings or c < fill.phase_bindings[key][0]:
            fill.phase_bindings[key] = (
                c,
                Binding(nd.node_id, source, _kw(nd.limit_kw), name, _kw(limit_a)),
            )
    return model, a, fill


def _phase_departure_grants(
    a: _Active,
    dep: _Departures,
    members: np.ndarray,
    e_c: np.ndarray,
    e_j: np.ndarray,
    e_v: np.ndarray,
    room: np.ndarray,
) -> np.ndarray | None:
    """Step 2a with per-phase data for one class (`members`, positions in `a`; entries local to
    them): as `_departure_grants`, least slack first (then asset_id), each charger's minimum
    raised by what it needs to finish on time, as far as every constraint it raises (its
    nodes' kW, their phases, their unbalance) still has room. Returns the grant per member,
    or None when no member is served first."""
    pos, k, slack, _, _, want = _departure_wants(a, dep, members)
    ok = (slack >= 0.0) & (want > _EPS)
    if not ok.any():
        return None
    local = np.searchsorted(members, pos[ok])  # (members is sorted)
    wants = np.zeros(len(members))
    wants[local] = want[ok]
    slack_of = dict(zip(local.tolist(), slack[ok].tolist(), strict=True))
    asset_ids = dep.asset_ids
    idx = a.idx[members]

    def order(candidates: list[int]) -> list[int]:
        return sorted(candidates, key=lambda q: (slack_of[q], asset_ids[idx[q]]))

    given = phase_alloc.grant(order, wants, e_c, e_j, e_v, room)
    return given if (given > 0.0).any() else None


def _phase_reason_tables(
    tree: _Tree,
    model: phase_alloc.PhaseModel,
    fill: _Fill,
    reason_table: list[tuple[str, ...]],
    binding_table: list[Binding | None],
) -> None:
    """The third and fourth blocks of node codes: bound by a phase current, by an unbalance."""
    n_nodes = tree.n
    reason_table.extend([(PHASE_CURRENT_LIMIT,)] * n_nodes)
    reason_table.extend([(PHASE_UNBALANCE_LIMIT,)] * n_nodes)
    # the same after departure grants took room first (spec 4.3, "Departures")
    reason_table.extend([sort_reasons((PHASE_CURRENT_LIMIT, DEPARTURE_PRIORITY))] * n_nodes)
    reason_table.extend([sort_reasons((PHASE_UNBALANCE_LIMIT, DEPARTURE_PRIORITY))] * n_nodes)
    extra: list[Binding | None] = [None] * (2 * n_nodes)
    for key, (_, binding) in fill.phase_bindings.items():
        extra[key - 2 * n_nodes] = binding
    binding_table.extend(extra)
    binding_table.extend(extra)


def _round_setpoints(cols: _Columns, a: _Active, fill: _Fill) -> None:
    """Levels into setpoints rounded down to 0.1 kW, and each charger's outcome code (4.3)."""
    alloc = np.where(fill.level >= a.dem, a.dem, np.maximum(fill.level, a.min))
    # Round down to 0.1 kW (the 1e-9 absorbs float noise such as 6.9999999999), but never below
    # the minimum: a charger cannot run under it, and the unrounded value it replaces already
    # fitted every budget.
    rounded = np.floor(alloc * 10.0 + 1e-9) / 10.0
    min0 = fill.min0
    low = rounded < min0
    if low.any():
        rounded[low] = _floor3(min0[low])
    cols.setpoint[a.idx] = rounded
    if fill.granted is None:
        short = _N_FIXED + fill.bind
    else:
        # Served first and held at what it needs to finish on time: DEPARTURE_PRIORITY; bound
        # by a node whose room departures took first: that node's code and DEPARTURE_PRIORITY
        # (the second block of node codes, see _charger_reason_tables).
        short = np.where(
            fill.granted & (fill.level <= a.min + _EPS),
            _C_DEPARTURE,
            _N_FIXED + fill.bind + np.where(fill.held, len(fill.bindings), 0),
        )
    cols.code[a.idx] = np.where(
        alloc < a.dem - _EPS,
        short,
        np.where(a.over, _C_ASSET_MAX, _C_DEMAND),
    )


def _external_control(cols: _Columns, tree: _Tree, loads: _Loads) -> np.ndarray | None:
    """Hide the setpoints inside delegated scopes (spec 3.4); what they hold per node."""
    # The allocation ran through the delegated scope so that it gets a fair amount; the product
    # sets no point inside it, and its limits only count as binding for visible chargers.
    if not loads.any_external:
        return None
    code = cols.code
    ch_node = cols.ch_node
    hidden = np.array(loads.under_external)[ch_node] & (code != _C_NONE)
    own_hidden = np.bincount(ch_node[hidden], weights=cols.setpoint[hidden], minlength=tree.n)
    hcode = code[hidden]
    code[hidden] = np.where(
        hcode == _C_FALLBACK,
        _C_FALLBACK_EXTERNAL,
        np.where(hcode == _C_FAILSAFE, _C_FAILSAFE_EXTERNAL, _C_EXTERNAL),
    )
    for k in np.flatnonzero(hidden).tolist():
        cols.alloc_override[k] = None
    return own_hidden


def _charger_reason_tables(
    tree: _Tree, bindings: list[Binding | None]
) -> tuple[list[tuple[str, ...]], list[Binding | None]]:
    """Outcome code -> reason codes and binding: the fixed outcomes, then one per node."""
    limit_reason = [(LIMIT_SOURCE_TO_REASON[n.limit_source],) for n in tree.order]
    # A second block of node codes: bound by the node after departures took room first.
    held_reason = [sort_reasons((*r, DEPARTURE_PRIORITY)) for r in limit_reason]
    return (
        [*_FIXED_REASONS, *limit_reason, *held_reason],
        [None] * _N_FIXED + bindings + bindings,
    )


def _charger_results(
    cols: _Columns,
    reason_table: list[tuple[str, ...]],
    binding_table: list[Binding | None],
    dep: _Departures | None,
    model: phase_alloc.PhaseModel | None = None,
) -> tuple[ChargerResult, ...]:
    """One ChargerResult per charger in asset_id order (spec 4.1)."""
    code_list = cols.code_list = cols.code.tolist()
    alloc_out = _floor3(cols.setpoint).tolist()
    for k, value in cols.alloc_override.items():
        alloc_out[k] = value
    if dep is not None and dep.every and model is None:
        return _charger_results_with_sessions(cols, reason_table, binding_table, alloc_out, dep)
    departures = [None] * len(code_list) if dep is None else _departure_results(cols, dep)
    if model is not None:
        return _phase_charger_results(
            cols, reason_table, binding_table, departures, model, alloc_out
        )
    out: list[ChargerResult] = []
    append = out.append
    new = object.__new__
    layout = _ChargerResultLayout
    result_cls = ChargerResult
    for asset_id, node_id, requested, allocated, reasons, binding, departure in zip(
        cols.asset_ids,
        cols.node_ids,
        cols.req_out.tolist(),
        alloc_out,
        map(reason_table.__getitem__, code_list),
        map(binding_table.__getitem__, code_list),
        departures,
        strict=True,
    ):
        obj = new(layout)
        obj.asset_id = asset_id
        obj.node_id = node_id
        obj.requested_kw = requested
        obj.allocated_kw = allocated
        obj.reason_codes = reasons
        obj.binding = binding
        obj.departure = departure
        obj.__class__ = result_cls
        append(obj)
    return tuple(out)


def _charger_results_with_sessions(
    cols: _Columns,
    reason_table: list[tuple[str, ...]],
    binding_table: list[Binding | None],
    alloc_out: list[float | None],
    dep: _Departures,
) -> tuple[ChargerResult, ...]:
    """`_charger_results` when every charger has a session: each result and its session's
    (`_departure_columns`) are built in one loop."""
    out: list[ChargerResult] = []
    append = out.append
    new = object.__new__
    layout = _ChargerResultLayout
    result_cls = ChargerResult
    dep_layout = _DepartureLayout
    dep_cls = DepartureResult
    for (
        asset_id,
        node_id,
        requested,
        allocated,
        reasons,
        binding,
        text,
        needed_kwh,
        delivered_kwh,
        finish,
        risk,
    ) in zip(
        cols.asset_ids,
        cols.node_ids,
        cols.req_out.tolist(),
        alloc_out,
        map(reason_table.__getitem__, cols.code_list),
        map(binding_table.__getitem__, cols.code_list),
        *_departure_columns(cols, dep),
        strict=True,
    ):
        departure = new(dep_layout)
        departure.departure_at = text
        departure.energy_needed_kwh = needed_kwh
        departure.energy_delivered_kwh = delivered_kwh
        departure.projected_finish_at = finish
        departure.at_risk = risk
        departure.__class__ = dep_cls
        obj = new(layout)
        obj.asset_id = asset_id
        obj.node_id = node_id
        obj.requested_kw = requested
        obj.allocated_kw = allocated
        obj.reason_codes = reasons
        obj.binding = binding
        obj.departure = departure
        obj.__class__ = result_cls
        append(obj)
    return tuple(out)


class _PhaseChargerResultLayout(ChargerResult):
    """PhaseChargerResult's layout without its frozen __init__ (see _ChargerResultLayout): its
    slots are filled through their descriptors, then the object is re-classed."""

    __slots__ = PhaseChargerResult.__slots__


_PHASE_RESULT_SETTERS = tuple(
    (ChargerResult.__dict__.get(name) or _PhaseChargerResultLayout.__dict__[name]).__set__
    for name in (*ChargerResult.__slots__, *PhaseChargerResult.__slots__)
)


def _phase_charger_results(
    cols: _Columns,
    reason_table: list[tuple[str, ...]],
    binding_table: list[Binding | None],
    departures: list[DepartureResult | None],
    model: phase_alloc.PhaseModel,
    alloc_out: list[float | None],
) -> tuple[ChargerResult, ...]:
    """`_charger_results` with per-phase data: each result also says its setpoint in A."""
    code_list = cols.code_list
    # the setpoint's current per phase, rounded down to 0.1 A (None where the setpoint is)
    alloc = np.array(alloc_out, dtype=float)
    amps = np.floor(alloc * model.amps_per_kw * 10.0 + 1e-9) / 10.0
    limit_a = np.where(np.isnan(alloc), None, amps).tolist()
    (s_asset, s_node, s_req, s_alloc, s_reasons, s_binding, s_dep, s_kw, s_a, s_phases) = (
        _PHASE_RESULT_SETTERS
    )
    new = object.__new__
    layout = _PhaseChargerResultLayout
    result_cls = PhaseChargerResult
    reclass = object.__setattr__
    out: list[ChargerResult] = []
    append = out.append
    for asset_id, node_id, requested, allocated, reasons, binding, departure, amp, k in zip(
        cols.asset_ids,
        cols.node_ids,
        cols.req_out.tolist(),
        alloc_out,
        map(reason_table.__getitem__, code_list),
        map(binding_table.__getitem__, code_list),
        departures,
        limit_a,
        model.k.astype(int).tolist(),
        strict=True,
    ):
        obj = new(layout)
        s_asset(obj, asset_id)
        s_node(obj, node_id)
        s_req(obj, requested)
        s_alloc(obj, allocated)
        s_reasons(obj, reasons)
        s_binding(obj, binding)
        s_dep(obj, departure)
        s_kw(obj, allocated)
        s_a(obj, amp)
        s_phases(obj, k)
        reclass(obj, "__class__", result_cls)
        append(obj)
    return tuple(out)


def _node_reasons(
    tree: _Tree,
    loads: _Loads,
    used_codes: set[int],
    headroom: np.ndarray,
    own_hidden: np.ndarray | None,
) -> _NodeReasons:
    """Each node's source mode, fallback entries, reason codes and external budget (4.1, 3.4)."""
    n_nodes = tree.n
    parent = tree.parent
    order = tree.order
    binds = [False] * n_nodes
    # Per-phase bindings (issue 19): the third block of node codes is a phase current limit,
    # the fourth an unbalance limit (see _phase_reason_tables).
    phase_binds: dict[int, list[str]] = {}
    out = _NodeReasons()
    out.constrained = _C_MIN_UNSERVED in used_codes
    for cd in used_codes:
        if cd >= _N_FIXED:
            block, i = divmod(cd - _N_FIXED, n_nodes)
            out.constrained = True
            if block < 2:
                binds[i] = True
            else:
                phase_binds.setdefault(i, []).append(
                    PHASE_CURRENT_LIMIT if block == 2 else PHASE_UNBALANCE_LIMIT
                )
    n_modes = out.modes = [MEASURED] * n_nodes
    n_fallback = out.fallback = [()] * n_nodes
    n_reasons = out.reasons = [_R_NONE] * n_nodes
    n_budget = out.budget = [None] * n_nodes
    if own_hidden is not None:
        hidden_sum = tree.subtree_sums(own_hidden).tolist()
        path_headroom = headroom.tolist()  # smallest headroom from each node up to the root
        for i in range(1, n_nodes):
            if path_headroom[parent[i]] < path_headroom[i]:
                path_headroom[i] = path_headroom[parent[i]]
    cycle_codes = out.codes = set()
    worst_rank = 0
    fallbacks = loads.fallbacks
    failsafe = loads.failsafe
    has_fallback_value = loads.has_fallback_value
    for i in range(n_nodes):
        fb = fallbacks[i]
        nd = order[i]
        external = nd.external_control
        if not (fb or binds[i] or external or i in phase_binds):
            continue
        codes: list[str] = []
        if failsafe[i]:
            codes.append(FAILSAFE_TELEMETRY_UNAVAILABLE)
            n_modes[i] = FAILSAFE
            worst_rank = 2
        elif fb:
            n_modes[i] = FALLBACK_DERIVED
            worst_rank = max(worst_rank, 1)
        if has_fallback_value[i]:
            codes.append(TELEMETRY_FALLBACK)
        if external:
            codes.append(EXTERNAL_CONTROL)
            # What the node may draw under every constraint above it without taking power
            # from anyone else: what its chargers hold now plus the smallest spare room on its
            # path. Floored to 1 W so that rounding never hands out more than exists.
            n_budget[i] = floor((hidden_sum[i] + path_headroom[i]) * 1000.0 + 1e-6) / 1000.0
        if binds[i]:
            codes.append(LIMIT_SOURCE_TO_REASON[nd.limit_source])
        if i in phase_binds:
            codes = list(sort_reasons((*codes, *phase_binds[i])))
        n_reasons[i] = reason_t = tuple(codes)  # appended in precedence order
        cycle_codes.update(reason_t)
        n_fallback[i] = tuple(sorted(fb, key=attrgetter("asset_id")))
    out.worst_rank = worst_rank
    return out


def _node_results(
    tree: _Tree,
    unc: np.ndarray,
    alloc_sum: np.ndarray,
    headroom: np.ndarray,
    reasons: _NodeReasons,
) -> tuple[NodeResult, ...]:
    """One NodeResult per node in tree order (spec 4.1)."""
    node_out: list[NodeResult] = []
    new = object.__new__
    node_layout = _NodeResultLayout
    node_cls = NodeResult
    for nd, limit, unc_i, alloc_i, head_i, mode, fbs, codes, budget in zip(
        tree.order,
        _floor3(tree.limits).tolist(),
        _floor3(unc).tolist(),
        _floor3(alloc_sum).tolist(),
        _floor3(headroom).tolist(),
        reasons.modes,
        reasons.fallback,
        reasons.reasons,
        reasons.budget,
        strict=True,
    ):
        obj = new(node_layout)
        obj.node_id = nd.node_id
        obj.effective_limit_kw = limit
        obj.limit_source = nd.limit_source
        obj.uncontrolled_load_kw = unc_i
        obj.allocated_kw = alloc_i
        obj.headroom_kw = head_i
        obj.source_mode = mode
        obj.fallback = fbs
        obj.reason_codes = codes
        obj.budget_kw = budget
        if nd.margin_basis is None:
            obj.margin_kw = obj.margin_basis = None
        else:
            obj.margin_kw = _kw(nd.margin_kw)
            obj.margin_basis = nd.margin_basis
        obj.__class__ = node_cls
        node_out.append(obj)
    return tuple(node_out)


def _cycle_result(
    used_codes: set[int],
    reason_table: list[tuple[str, ...]],
    reasons: _NodeReasons,
    nodes: tuple[NodeResult, ...],
    chargers: tuple[ChargerResult, ...],
) -> EngineResult:
    """The cycle's outcome, source mode and reason codes around the node and charger results."""
    cycle_codes = reasons.codes
    for cd in used_codes:
        cycle_codes.update(reason_table[cd])
    worst_mode = (MEASURED, FALLBACK_DERIVED, FAILSAFE)[reasons.worst_rank]
    if worst_mode == FAILSAFE:
        outcome = FAILSAFE
    elif reasons.constrained:
        outcome = "CONSTRAINED"
    else:
        outcome = "OK"
    return EngineResult(outcome, worst_mode, sort_reasons(cycle_codes), nodes, chargers)


# --------------------------------------------------------------------------------------------
# Departures (spec 4.3, "Departures"): who is served first, and what each session expects
# --------------------------------------------------------------------------------------------


class _Departures:
    """Per charger (positions in _Columns): time to departure and energy still needed."""

    __slots__ = (
        "now",
        "guard",
        "show",
        "every",
        "texts",
        "asset_ids",
        "t_left",
        "e_left",
        "energy_known",
        "grantable",
        "needed",
        "delivered",
        "active_t",
    )

    now: datetime
    guard: float  # plan to be full this many seconds before the departure
    show: np.ndarray  # chargers with a session (positions): their results carry it
    every: bool  # every charger has a session (show is every position)
    texts: list[str | None]  # their departure_at as given, in the order of show
    asset_ids: list[str]  # of every charger (the tie-break of equal slack)
    t_left: np.ndarray  # seconds to departure (inf: unknown)
    e_left: np.ndarray  # kWh still needed (0 where unknown)
    energy_known: np.ndarray
    grantable: np.ndarray  # departure and a positive remaining energy known
    needed: np.ndarray  # kWh needed in the session (nan: unknown)
    delivered: np.ndarray  # kWh delivered so far
    # (the active chargers' positions, their t_left, and who holds nothing it gives back: no
    # departure ahead; for _releases, once per cycle)
    active_t: tuple[np.ndarray, np.ndarray, np.ndarray] | None


_FLOAT_MAX = float(np.finfo(float).max)


def _no_inf(x: np.ndarray) -> np.ndarray:
    """np.nan_to_num where nan is masked out anyway: +-inf as the largest finite floats, for
    a fraction of its cost."""
    return np.minimum(np.maximum(x, -_FLOAT_MAX), _FLOAT_MAX)


def _departures(inp: EngineInput, cols: _Columns) -> _Departures | None:
    """The chargers' sessions as columns; None when no charger has one (today's allocation)."""
    chargers = cols.chargers
    # (a filtered comprehension: the cheapest test when no charger has a session)
    sessions = [
        c for c in chargers if c.departure_at is not None or c.energy_needed_kwh is not None
    ]
    if not sessions:
        return None
    if inp.now is None:
        raise ValueError("chargers with a session need the cycle's time (EngineInput.now)")
    dep = _Departures()
    now = dep.now = when(inp.now)
    dep.guard = max(float(inp.departure_guard_s), 0.0)
    dep.asset_ids = cols.asset_ids
    dep.active_t = None
    n_ch = len(chargers)
    every = dep.every = len(sessions) == n_ch
    if every:
        show = np.arange(n_ch)
    else:
        show = np.array(
            [
                k
                for k, c in enumerate(chargers)
                if c.departure_at is not None or c.energy_needed_kwh is not None
            ],
            dtype=np.intp,
        )
    dep.show = show
    texts = dep.texts = [c.departure_at for c in sessions]
    t_left = dep.t_left = np.full(n_ch, inf)
    untimed = texts.count(None)
    if not untimed:
        t_left[show] = epoch_seconds(texts) - now.timestamp()
    elif untimed < len(texts):
        ks = [k for k, d in zip(show.tolist(), texts, strict=True) if d is not None]
        t_left[ks] = epoch_seconds([d for d in texts if d is not None]) - now.timestamp()
    needed_in = np.array([c.energy_needed_kwh for c in sessions], dtype=float)  # None -> nan
    delivered_in = np.maximum(
        np.array([c.energy_delivered_kwh for c in sessions], dtype=float), 0.0
    )
    if every:
        needed = dep.needed = needed_in
        delivered = dep.delivered = delivered_in
    else:
        needed = dep.needed = np.full(n_ch, np.nan)
        needed[show] = needed_in
        delivered = dep.delivered = np.zeros(n_ch)
        delivered[show] = delivered_in
    known = dep.energy_known = ~np.isnan(needed)
    dep.e_left = np.where(known, np.maximum(_no_inf(needed) - delivered, 0.0), 0.0)
    dep.grantable = known & (t_left < inf) & (dep.e_left > _EPS)
    return dep


def _departure_wants(a: _Active, dep: _Departures, pos: np.ndarray) -> tuple[np.ndarray, ...]:
    """For the active chargers at `pos` that may be served first (a departure and an energy
    still needed): their positions, column indices, slack (s), planning horizon (s), time
    left (s) and the grant each wants above its minimum (kW; see _departure_grants)."""
    k = a.idx[pos]
    sel = np.flatnonzero(dep.grantable[k])
    pos, k = pos[sel], k[sel]
    dem = a.dem[pos]
    e_left = dep.e_left[k]
    t_left = dep.t_left[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        full_s = np.where(dem > 0.0, e_left * 3600.0 / dem, inf)
        slack = t_left - full_s
        # Full `guard` before the departure; within the guard, as fast as it can. Rounded up
        # to the 0.1 kW of a setpoint, so that rounding down never leaves it a little short.
        horizon = t_left - dep.guard
        need = np.where(horizon > 0.0, np.ceil(e_left * 36000.0 / horizon - 1e-9) / 10.0, inf)
    want = np.minimum(need, dem) - a.min[pos]
    return pos, k, slack, horizon, t_left, want


def _departure_candidates(a: _Active, dep: _Departures) -> tuple[np.ndarray, ...]:
    """The active chargers that may be served first (`_departure_wants`: a departure and an
    energy still needed, not at risk, wanting more than their minimum), in position order:
    position, node, grant wanted, slack (s), the time the grant is planned over (s) and
    column (asset_id order)."""
    pos, k, slack, horizon, t_left, want = _departure_wants(a, dep, np.arange(len(a.idx)))
    ok = np.flatnonzero((slack >= 0.0) & (want > _EPS))
    # The time over which a grant is planned: until `guard` before the departure, or until
    # the departure itself once within the guard (its whole demand then).
    h = horizon[ok]
    plan = np.where(h > 0.0, h, t_left[ok])
    cand = pos[ok]
    return cand, a.node[cand], want[ok], slack[ok], plan, k[ok]


def _departure_grants(
    a: _Active,
    tree: _Tree,
    remaining: np.ndarray,
    dep: _Departures,
    fill: _Fill,
    lo_c: int,
    candidates: tuple[np.ndarray, ...],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Step 2a for one class (starting at `lo_c`; `candidates`: `_departure_candidates` of
    its chargers): least slack first, each charger's minimum is raised to what it needs to be
    full `guard` before its departure (its whole demand once within the guard), within the
    room left on its path. A charger that cannot finish even at full power (negative slack)
    is not served first: it shares the rest fairly, so it never starves the others. Returns
    the room left, and the grants per node and summed over each subtree (None: nobody is
    served first)."""
    cand, cand_node, cand_want, slack, plan, k = candidates
    if not len(cand):
        return remaining, None, None
    given = np.bincount(cand_node, weights=cand_want, minlength=tree.n)
    sub_want = tree.subtree_sums(given)
    scarce = sub_want > remaining + _EPS
    granted = fill.granted
    if not scarce.any():
        # Room for every grant: the order does not matter.
        a.min[cand] += cand_want
        granted[cand] = True  # type: ignore[index]
        return remaining - sub_want, given, sub_want
    # As for minimums, only the nodes where the grants do not all fit are checked, and only
    # the candidates below one of them can get less than they want: first who may be served
    # first at all (_admitted), then in order of slack (then asset_id). Every other candidate
    # gets its whole grant (nothing on its path is short, and nobody else's grant is cut on
    # its account: the loops below only count the room of the short nodes).
    deepest = _deepest_scarce(tree, scarce)
    top = deepest[cand_node]
    under = np.flatnonzero(top >= 0)
    got = cand_want.copy()
    if len(under):
        # A candidate's scarce path (its short nodes, deepest first) is that of its deepest
        # short node: one list per short node.
        top_l = top[under].tolist()
        scarce_top = deepest.tolist()
        parent = tree.parent
        chains: dict[int, list[int]] = {}
        for x in set(top_l):
            chain = []
            y = x
            while y >= 0:
                chain.append(y)
                y = parent[y]
                if y >= 0:
                    y = scarce_top[y]
            chains[x] = chain
        paths = [chains[x] for x in top_l]
        u_want = cand_want[under]
        u_slack = slack[under]
        u_k = k[under]
        names = [dep.asset_ids[q] for q in u_k.tolist()]
        # Ties of slack (and of plan) go by asset_id: the column order, as the columns are
        # sorted by asset_id, unless two chargers share one (then by the names themselves).
        unique = len(set(names)) == len(names)
        room = remaining.tolist()
        admitted = _admitted(
            paths,
            u_want,
            plan[under],
            u_slack,
            u_k,
            names,
            unique,
            room,
            lambda: _releases(a, tree, dep, fill, lo_c),
        )
        if unique:
            order = np.lexsort((u_k, u_slack)).tolist()
        else:
            ranked = zip(u_slack.tolist(), names, range(len(names)), strict=True)
            order = [j for _, _, j in sorted(ranked)]
        want_l = u_want.tolist()
        got_l = [0.0] * len(want_l)
        for j in order:
            if not admitted[j]:
                continue
            path = paths[j]
            g = want_l[j]
            for x in path:
                if room[x] < g:
                    g = room[x]
            if g <= _EPS:
                continue
            for x in path:
                room[x] -= g
            got_l[j] = g
        got[under] = got_l
    a.min[cand] += got
    granted[cand] = got > 0.0  # type: ignore[index]
    given = np.bincount(cand_node, weights=got, minlength=tree.n)
    sub_given = tree.subtree_sums(given)
    return remaining - sub_given, given, sub_given


def _deepest_scarce(tree: _Tree, scarce: np.ndarray) -> np.ndarray:
    """Per node, the deepest node of its path (itself included) where `scarce`; -1: none."""
    top = np.where(scarce, np.arange(tree.n), -1)
    if tree.n <= 64:
        parent = tree.parent
        out = top.tolist()
        for i in range(1, tree.n):
            if out[i] < 0:
                out[i] = out[parent[i]]
        return np.array(out)
    for kids, parents in reversed(tree.levels):  # shallowest first: parents are final
        mine = top[kids]
        top[kids] = np.where(mine >= 0, mine, top[parents])
    return top


def _admitted(
    paths: list[list[int]],
    want: np.ndarray,
    plan: np.ndarray,
    slack: np.ndarray,
    k: np.ndarray,
    names: list[str],
    unique: bool,
    room: list[float],
    releases: Callable[[], tuple[list[float], list[float]]],
) -> list[bool]:
    """Who may be served first where the grants do not all fit (Moore-Hodgson per node):
    earliest planned finish first, each candidate's grant over its plan is energy its scarce
    nodes must give; when those admitted below a node need more than the node can give until
    the current candidate's planned finish `h`, the one that needs the most energy is
    dropped, so that as many as possible can finish. What a node can give until `h` is its
    room now for `h`, or more when the chargers below it that hold power now (`rate`) leave
    early enough: `(room + rate) x h - area` (`area`: their power x departure summed) counts
    what each gives back from its departure on, less what those leaving after `h` would give
    back before leaving, so it never overstates the exact sum. A dropped charger is not at
    risk (it could finish alone): it shares what remains fairly, and is considered again at
    the next cycle.

    The candidates are those below a scarce node (`paths`: their scarce nodes, deepest
    first; every other candidate is admitted), `k` their column (asset_id order: the
    tie-break when `unique`, else `names`). `releases()` gives `rate` and `area` per node,
    asked for only when a node's room alone does not do."""
    n = len(paths)
    admitted = [True] * n
    energy = (want * plan).tolist()  # kW x s above the minimum
    plan_l = plan.tolist()
    n_nodes = len(room)
    load = [0.0] * n_nodes
    # Per node, the candidates admitted below it (-energy, asset_id, position): a plain list
    # until the node first has to drop someone, a heap from then on.
    items: list[list[tuple[float, str, int]] | None] = [None] * n_nodes
    heaped = [False] * n_nodes
    rate: list[float] = []
    area: list[float] = []
    if unique:
        queue = np.lexsort((k, slack, plan)).tolist()
    else:
        ranked = zip(plan_l, slack.tolist(), names, range(n), strict=True)
        queue = [j for _, _, _, j in sorted(ranked)]
    for j in queue:
        h = plan_l[j]
        path = paths[j]
        e = energy[j]
        item = (-e, names[j], j)
        for x in path:
            load[x] += e
            mine = items[x]
            if mine is None:
                items[x] = [item]
            elif heaped[x]:
                heappush(mine, item)
            else:
                mine.append(item)
        for x in path:
            cap = room[x] * h
            if load[x] <= cap:
                continue
            if not rate:
                rate, area = releases()
            given_back = (room[x] + rate[x]) * h - area[x]
            if given_back > cap:
                cap = given_back
            cap += abs(cap) * 1e-9 + _EPS
            if load[x] <= cap:
                continue
            heap = items[x]
            if not heaped[x]:
                heapify(heap)  # type: ignore[arg-type]
                heaped[x] = True
            while load[x] > cap and heap:
                _, _, q = heappop(heap)  # type: ignore[arg-type]
                if not admitted[q]:
                    continue  # dropped earlier, below another node
                admitted[q] = False
                for y in paths[q]:
                    load[y] -= energy[q]
    return admitted


def _releases(
    a: _Active, tree: _Tree, dep: _Departures, fill: _Fill, lo_c: int
) -> tuple[list[float], list[float]]:
    """Per node, what the active chargers below it with a known departure hold now (a higher
    class what its fill gave it, this class and the lower ones their minimums: the grants
    and the fair share are not given yet), and that times their departure (seconds ahead),
    summed: what they give back when they leave."""
    cached = dep.active_t
    if cached is None or cached[0] is not a.idx:
        t = dep.t_left[a.idx]
        cached = dep.active_t = (a.idx, t, ~((t > 0.0) & (t < inf)))
    _, t, staying = cached
    held = a.min.copy()
    if lo_c:
        held[:lo_c] = np.minimum(np.maximum(fill.level[:lo_c], a.min[:lo_c]), a.dem[:lo_c])
    held[staying] = 0.0
    t = np.where(held > 0.0, t, 0.0)
    rate, area = tree.subtree_sums_pair(
        np.bincount(a.node, weights=held, minlength=tree.n),
        np.bincount(a.node, weights=held * t, minlength=tree.n),
    )
    return rate.tolist(), area.tolist()


class _DepartureLayout:
    __slots__ = DepartureResult.__slots__


def _departure_columns(cols: _Columns, dep: _Departures) -> tuple[list[Any], ...]:
    """Each session's figures, in the order of `dep.show`: departure_at, energy needed,
    energy delivered, projected finish at this cycle's setpoint, at risk (cannot finish by its
    departure even at full power)."""
    show = dep.show
    if dep.every:  # (every charger has a session: the columns as they are)
        known, e_left, t_left = dep.energy_known, dep.e_left, dep.t_left
        setpoint, req, max_kw, min_kw = cols.setpoint, cols.req, cols.max_kw, cols.min_kw
        needed, delivered = dep.needed, dep.delivered
    else:
        known, e_left, t_left = dep.energy_known[show], dep.e_left[show], dep.t_left[show]
        setpoint, req = cols.setpoint[show], cols.req[show]
        max_kw, min_kw = cols.max_kw[show], cols.min_kw[show]
        needed, delivered = dep.needed[show], dep.delivered[show]
    full_kw = np.where(req > 0.0, np.maximum(np.minimum(req, max_kw), min_kw), max_kw)
    done = e_left <= _EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        finish_s = np.where(done, 0.0, np.round(e_left * 3600.0 / setpoint))
        risky = (t_left <= 0.0) | (full_kw <= 0.0) | (e_left * 3600.0 / full_kw > t_left)
    has = known & (done | (setpoint > 0.0))
    if has.all():
        finish_l: list[str | None] = finish_stamps(dep.now, finish_s)  # type: ignore[assignment]
    elif has.any():
        stamps = np.array(finish_stamps(dep.now, np.where(has, finish_s, 0.0)), dtype=object)
        finish_l = np.where(has, stamps, None).tolist()
    else:
        finish_l = [None] * len(show)
    timed = known & (t_left < inf)
    if timed.all():
        risk_l = (~done & risky).tolist()
    else:
        risk_l = np.where(timed, ~done & risky, None).tolist()
    if known.all():
        needed_l = _floor3(needed).tolist()  # (no nan: as _floor3(_no_inf(needed)))
    else:
        needed_l = np.where(known, _floor3(_no_inf(needed)), None).tolist()
    return dep.texts, needed_l, _floor3(delivered).tolist(), finish_l, risk_l


def _departure_results(cols: _Columns, dep: _Departures) -> list[DepartureResult | None]:
    """Each session's figures (`_departure_columns`) as a result, per charger (None without
    a session)."""
    out: list[DepartureResult | None] = [None] * len(cols.chargers)
    new = object.__new__
    layout = _DepartureLayout
    result_cls = DepartureResult
    for k, text, needed_kwh, delivered_kwh, finish, risk in zip(
        dep.show.tolist(), *_departure_columns(cols, dep), strict=True
    ):
        obj = new(layout)
        obj.departure_at = text
        obj.energy_needed_kwh = needed_kwh
        obj.energy_delivered_kwh = delivered_kwh
        obj.projected_finish_at = finish
        obj.at_risk = risk
        obj.__class__ = result_cls
        out[k] = obj
    return out
