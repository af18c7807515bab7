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
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from math import floor, inf
from operator import attrgetter
from typing import Any

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
    "EngineInput",
    "EngineResult",
    "FallbackEntry",
    "LoadInput",
    "NodeInput",
    "NodeResult",
    "allocate",
    "sort_reasons",
]

# Spec 4.5: one table, one precedence.
REASON_PRECEDENCE: tuple[str, ...] = (
    "FAILSAFE_TELEMETRY_UNAVAILABLE",
    "TELEMETRY_FALLBACK",
    "EXTERNAL_CONTROL",
    "OPERATING_ENVELOPE_LIMIT",
    "MICROGRID_LIMIT",
    "TOU_LIMIT",
    "NODE_LIMIT",
    "PHYSICAL_RATING",
    "MIN_POWER_UNSERVED",
    "ASSET_MAX_POWER",
    "DEMAND_MET",
)
_RANK = {code: rank for rank, code in enumerate(REASON_PRECEDENCE)}

LIMIT_SOURCE_TO_REASON: dict[str, str] = {
    "OPERATING_ENVELOPE": "OPERATING_ENVELOPE_LIMIT",
    "MICROGRID_LIMIT": "MICROGRID_LIMIT",
    "TOU_LIMIT": "TOU_LIMIT",
    "NODE_LIMIT": "NODE_LIMIT",
    "PHYSICAL_RATING": "PHYSICAL_RATING",
}
LIMIT_REASONS = frozenset(LIMIT_SOURCE_TO_REASON.values())

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
_R_NONE: tuple[str, ...] = ()
_TELEMETRY_CODES = (FAILSAFE_TELEMETRY_UNAVAILABLE, TELEMETRY_FALLBACK)


def sort_reasons(codes: Iterable[str]) -> tuple[str, ...]:
    """Deduplicate reason codes and sort them by the precedence of spec 4.5."""
    return tuple(sorted(set(codes), key=_RANK.__getitem__))


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "parent_id": self.parent_id,
            "limit_kw": self.limit_kw,
            "limit_source": self.limit_source,
            "external_control": self.external_control,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeInput:
        return cls(
            node_id=d["node_id"],
            parent_id=d["parent_id"],
            limit_kw=float(d["limit_kw"]),
            limit_source=d["limit_source"],
            external_control=bool(d.get("external_control", False)),
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

    def to_dict(self) -> dict[str, Any]:
        return {
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
        )


@dataclass(frozen=True, slots=True)
class EngineInput:
    nodes: tuple[NodeInput, ...]
    loads: tuple[LoadInput, ...]
    chargers: tuple[ChargerInput, ...]
    threshold_s: int  # the microgrid's telemetry_stale_after_s, copied into fallback entries

    def to_dict(self) -> dict[str, Any]:
        """The JSON input snapshot a cycle stores (spec 4.3, replay_cycle)."""
        return {
            "nodes": [n.to_dict() for n in self.nodes],
            "loads": [ld.to_dict() for ld in self.loads],
            "chargers": [c.to_dict() for c in self.chargers],
            "threshold_s": self.threshold_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineInput:
        return cls(
            nodes=tuple(NodeInput.from_dict(n) for n in d["nodes"]),
            loads=tuple(LoadInput.from_dict(ld) for ld in d.get("loads", ())),
            chargers=tuple(ChargerInput.from_dict(c) for c in d.get("chargers", ())),
            threshold_s=int(d["threshold_s"]),
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "limit_source": self.limit_source,
            "limit_kw": self.limit_kw,
        }


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
        return d


@dataclass(frozen=True, slots=True)
class ChargerResult:
    asset_id: str
    node_id: str
    requested_kw: float
    allocated_kw: float | None  # None: set by an external controller
    reason_codes: tuple[str, ...]
    binding: Binding | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "node_id": self.node_id,
            "requested_kw": self.requested_kw,
            "allocated_kw": self.allocated_kw,
            "reason_codes": list(self.reason_codes),
            "binding": None if self.binding is None else self.binding.to_dict(),
        }


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
# object.__setattr__ once per field, which costs several times a plain attribute store and,
# for thousands of chargers, most of the engine's budget. These twins have the very same slot
# layout without the frozen __setattr__: the engine fills one and re-classes it, which CPython
# allows between layout-identical classes. The object is then an ordinary frozen ChargerResult
# (equality, hashing, repr and immutability as usual).
class _ChargerResultTwin:
    __slots__ = ChargerResult.__slots__

    def __init__(self, asset_id, node_id, requested_kw, allocated_kw, reason_codes, binding):  # noqa: PLR0913
        self.asset_id = asset_id
        self.node_id = node_id
        self.requested_kw = requested_kw
        self.allocated_kw = allocated_kw
        self.reason_codes = reason_codes
        self.binding = binding


class _NodeResultTwin:
    __slots__ = NodeResult.__slots__

    def __init__(  # noqa: PLR0913
        self,
        node_id,
        effective_limit_kw,
        limit_source,
        uncontrolled_load_kw,
        allocated_kw,
        headroom_kw,
        source_mode,
        fallback,
        reason_codes,
        budget_kw,
    ):
        self.node_id = node_id
        self.effective_limit_kw = effective_limit_kw
        self.limit_source = limit_source
        self.uncontrolled_load_kw = uncontrolled_load_kw
        self.allocated_kw = allocated_kw
        self.headroom_kw = headroom_kw
        self.source_mode = source_mode
        self.fallback = fallback
        self.reason_codes = reason_codes
        self.budget_kw = budget_kw


def _charger_result(
    asset_id: str,
    node_id: str,
    requested_kw: float,
    allocated_kw: float | None,
    reason_codes: tuple[str, ...],
    binding: Binding | None,
) -> ChargerResult:
    obj = _ChargerResultTwin(asset_id, node_id, requested_kw, allocated_kw, reason_codes, binding)
    obj.__class__ = ChargerResult  # type: ignore[assignment]
    return obj  # type: ignore[return-value]


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
                return x + (cap - val) / slope if slope > 0 else x
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


def _group_by_class(
    active: list[tuple], skip: set[int]
) -> dict[int, dict[int, tuple[list[float], list[float]]]]:
    """priority -> node -> (demands, minimums) of the chargers taking part in fair share."""
    groups: dict[int, dict[int, tuple[list[float], list[float]]]] = {}
    for k, (_c, _pos, ni, d, m, prio, _dr, _req) in enumerate(active):
        if k in skip:
            continue
        by_node = groups.get(prio)
        if by_node is None:
            by_node = groups[prio] = {}
        g = by_node.get(ni)
        if g is None:
            by_node[ni] = ([d], [m])
        else:
            g[0].append(d)
            g[1].append(m)
    return groups


def allocate(inp: EngineInput) -> EngineResult:
    """Allocate charging power for one cycle (spec 4.1 to 4.5)."""
    threshold_s = inp.threshold_s

    # ---- topology ---------------------------------------------------------------------------
    order = _tree_order(inp.nodes)
    n_nodes = len(order)
    index = {n.node_id: i for i, n in enumerate(order)}
    parent = [-1] * n_nodes
    for i in range(1, n_nodes):
        parent[i] = index[order[i].parent_id]  # type: ignore[index]
    # Preorder puts every parent before its children: walking the indices backwards is a
    # bottom-up pass, forwards a top-down one.
    limits = [n.limit_kw for n in order]

    def path_of(ni: int) -> list[int]:
        out = []
        while ni >= 0:
            out.append(ni)
            ni = parent[ni]
        return out

    def node_of(node_id: str, asset_id: str) -> int:
        try:
            return index[node_id]
        except KeyError:
            raise ValueError(f"asset {asset_id!r} names unknown node {node_id!r}") from None

    own_unc = [0.0] * n_nodes
    fallbacks: list[list[FallbackEntry]] = [[] for _ in range(n_nodes)]
    has_fallback_value = [False] * n_nodes
    failsafe = [False] * n_nodes

    # ---- uncontrolled load: site loads, batteries, PV (spec 4.2) ----------------------------
    for ld in sorted(inp.loads, key=attrgetter("asset_id")):
        ni = node_of(ld.node_id, ld.asset_id)
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
        for j in path_of(ni):
            fallbacks[j].append(entry)
            if value is None:
                failsafe[j] = True
            else:
                has_fallback_value[j] = True
        if value is not None:
            own_unc[ni] += value

    # The failsafe set is closed upwards (every path ends at the root), so in practice the
    # whole tree is in fail safe; the rule is still written for any subtree.
    under_failsafe = failsafe[:]
    under_external = [n.external_control for n in order]
    any_external = any(under_external)
    if any_external or any(failsafe):
        for i in range(1, n_nodes):
            p = parent[i]
            if under_failsafe[p]:
                under_failsafe[i] = True
            if under_external[p]:
                under_external[i] = True

    # ---- chargers: classify -----------------------------------------------------------------
    chargers = sorted(inp.chargers, key=attrgetter("asset_id"))
    n_ch = len(chargers)
    results: list[ChargerResult] = [None] * n_ch  # type: ignore[list-item]
    setpoint = [0.0] * n_ch  # what each charger counts in its nodes' allocated_kw
    ch_node = [0] * n_ch
    failsafe_list: list[int] = []
    # Connected, fresh, asking for power, not in fail safe:
    # (charger, position, node, demand, minimum, priority, demand reason, requested rounded)
    active: list[tuple] = []
    own_min = [0.0] * n_nodes
    index_get = index.get
    for pos, c in enumerate(chargers):
        ni = index_get(c.node_id)
        if ni is None:
            ni = node_of(c.node_id, c.asset_id)
        ch_node[pos] = ni
        if c.freshness != FRESH:
            # It cannot be steered: fixed load at what it draws on its own.
            fs_kw = c.failsafe_power_kw
            own_unc[ni] += fs_kw
            entry = FallbackEntry(
                c.asset_id, c.freshness, c.last_observed_at, _kw(fs_kw), threshold_s
            )
            for j in path_of(ni):
                fallbacks[j].append(entry)
                has_fallback_value[j] = True
            results[pos] = _charger_result(
                c.asset_id, c.node_id, 0.0, _kw(fs_kw), _R_FALLBACK, None
            )
            continue
        if not c.connected:
            results[pos] = _charger_result(c.asset_id, c.node_id, 0.0, 0.0, _R_NONE, None)
            continue
        if under_failsafe[ni]:
            failsafe_list.append(pos)
            continue
        req = c.requested_kw
        if req <= 0.0:
            results[pos] = _charger_result(c.asset_id, c.node_id, 0.0, 0.0, _R_DEMAND, None)
            continue
        mx = c.max_power_kw
        m = c.min_power_kw
        if req > mx:
            d = mx
            dr = _R_ASSET_MAX
        else:
            d = req
            dr = _R_DEMAND
        if d < m:
            d = m  # a charger cannot run below its minimum; the EV simply draws less
        if m > 0.0:
            own_min[ni] += m
        active.append((c, pos, ni, d, m, c.priority, dr, floor(req * 1000.0 + 0.5) / 1000.0))

    # ---- budgets ------------------------------------------------------------------------------
    unc = own_unc[:]
    for i in range(n_nodes - 1, 0, -1):
        unc[parent[i]] += unc[i]
    # remaining[n]: what chargers under n may still take; a negative budget allocates nothing.
    remaining = [0.0] * n_nodes
    for i in range(n_nodes):
        b = limits[i] - unc[i]
        if b > 0.0:
            remaining[i] = b

    # ---- fail safe setpoints (spec 4.2), in asset_id order within every known budget ----------
    for pos in failsafe_list:
        c = chargers[pos]
        fs_kw = c.failsafe_power_kw
        path = path_of(ch_node[pos])
        if all(remaining[j] >= fs_kw - _EPS for j in path):
            for j in path:
                remaining[j] -= fs_kw
            setpoint[pos] = fs_kw
        results[pos] = _charger_result(
            c.asset_id, c.node_id, _kw(c.requested_kw), _kw(setpoint[pos]), _R_FAILSAFE, None
        )

    # ---- minimums (spec 4.3 step 1) -----------------------------------------------------------
    sub_min = own_min[:]
    for i in range(n_nodes - 1, 0, -1):
        sub_min[parent[i]] += sub_min[i]
    unserved: set[int] = set()
    # Only a node whose minimums do not all fit can refuse one. Under no such node every
    # minimum is served whatever the order, so the ordered pass only visits the chargers below
    # an at-risk node, and only checks those nodes.
    at_risk = [sub_min[i] > remaining[i] + _EPS for i in range(n_nodes)]
    if any(at_risk):
        risky_paths = [[j for j in path_of(i) if at_risk[j]] for i in range(n_nodes)]

        def min_order(k: int) -> tuple[int, bool, str, str]:
            c = active[k][0]
            plugged = c.plugged_in_at
            return (-c.priority, plugged is None, plugged or "", c.asset_id)

        candidates = [k for k, a in enumerate(active) if a[4] > 0.0 and risky_paths[a[2]]]
        candidates.sort(key=min_order)
        room = remaining[:]
        for k in candidates:
            m = active[k][4]
            ni = active[k][2]
            path = risky_paths[ni]
            if all(room[j] >= m - _EPS for j in path):
                for j in path:
                    room[j] -= m
            else:
                unserved.add(k)
                own_min[ni] -= m
                c = active[k][0]
                results[c_pos := active[k][1]] = _charger_result(
                    c.asset_id, c.node_id, active[k][7], 0.0, _R_MIN_UNSERVED, None
                )
                setpoint[c_pos] = 0.0
        sub_min = own_min[:]
        for i in range(n_nodes - 1, 0, -1):
            sub_min[parent[i]] += sub_min[i]
    for i in range(n_nodes):
        remaining[i] -= sub_min[i]

    # ---- fair share, one priority class at a time (spec 4.3 step 2) ---------------------------
    groups = _group_by_class(active, unserved)
    classes = sorted(groups, reverse=True)
    level_of: dict[int, list[float]] = {}  # priority -> each node's effective fill level
    bind_of: dict[int, list[int]] = {}  # priority -> the node that binds at that level
    bindings: list[Binding | None] = [None] * n_nodes
    for ci, prio in enumerate(classes):
        by_node = groups[prio]
        # Bottom-up: each node's fill level given the levels already found below it. A node's
        # lists hold, for the class chargers of its subtree, the upper bounds u_i (capped by the
        # full nodes below) and the non-zero minimums; they are handed up to the parent whole.
        us: list[list[float] | None] = [None] * n_nodes
        ms: list[list[float]] = [[]] * n_nodes  # shared empty default, replaced before mutating
        base = [0.0] * n_nodes  # sum of the class minimums in the subtree
        total = [0.0] * n_nodes  # sum of u_i in the subtree: what it takes if nothing binds
        for ni, (ds, mins) in by_node.items():
            us[ni] = ds[:]
            b = sum(mins)
            if b > 0.0:
                ms[ni] = [m for m in mins if m > 0.0]
                base[ni] = b
            total[ni] = sum(ds)
        level = [inf] * n_nodes
        touched: list[int] = []
        for n in range(n_nodes - 1, -1, -1):
            u = us[n]
            if u is None:
                continue
            touched.append(n)
            m_list = ms[n]
            cap = remaining[n] + base[n]
            if total[n] > cap + _EPS:
                lam = _fill_level(u, m_list, base[n], cap)
                level[n] = lam
                if bindings[n] is None:
                    nd = order[n]
                    bindings[n] = Binding(nd.node_id, nd.limit_source, _kw(nd.limit_kw))
                # Above this node its items never exceed lam: cap the bounds, and drop the items
                # whose minimum is above lam (they stay at their minimum, a constant).
                ku = bisect_left(u, lam)
                km = bisect_right(m_list, lam)
                keep = len(u) - ku - (len(m_list) - km)
                u = u[:ku]
                if keep:
                    u.extend([lam] * keep)
                m_list = m_list[:km]
                total[n] = cap
            p = parent[n]
            if p >= 0:
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
                base[p] += base[n]
                total[p] += total[n]
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
        level_of[prio] = eff
        bind_of[prio] = bind_node
        if ci + 1 == len(classes):
            break
        # What the class took above its minimums comes off every budget on the way up.
        spent = [0.0] * n_nodes
        for ni, (ds, mins) in by_node.items():
            lam = eff[ni]
            if lam == inf:
                spent[ni] = total_own = sum(ds) - sum(mins)
            else:
                total_own = 0.0
                for d, m in zip(ds, mins, strict=True):
                    total_own += m if lam < m else (d if lam > d else lam)
                spent[ni] = total_own - sum(mins)
        for n in touched:  # children before parents
            p = parent[n]
            if p >= 0:
                spent[p] += spent[n]
            remaining[n] -= spent[n]

    # ---- setpoints (spec 4.3 step 3) ----------------------------------------------------------
    own_alloc = [0.0] * n_nodes
    binds = [False] * n_nodes
    limit_reason = [(LIMIT_SOURCE_TO_REASON[n.limit_source],) for n in order]
    twin = _ChargerResultTwin
    result_cls = ChargerResult
    for k, (c, pos, ni, d, m, prio, dr, req) in enumerate(active):
        if unserved and k in unserved:
            continue
        lam = level_of[prio][ni]
        if lam >= d:
            a = d
            reason = dr
            binding = None
        else:
            a = lam if lam > m else m
            if a >= d - _EPS:
                reason = dr
                binding = None
            else:
                bn = bind_of[prio][ni]
                reason = limit_reason[bn]
                binding = bindings[bn]
                binds[bn] = True
        # Round down to 0.1 kW (the 1e-9 absorbs float noise such as 6.9999999999), but never
        # below the minimum: a charger cannot run under it, and the unrounded value it replaces
        # already fitted every budget.
        r = floor(a * 10.0 + 1e-9) / 10.0
        if r < m:
            r = floor(m * 1000.0 + 0.5) / 1000.0
        own_alloc[ni] += r
        setpoint[pos] = r
        obj = twin(c.asset_id, c.node_id, req, r, reason, binding)
        obj.__class__ = result_cls
        results[pos] = obj
    for pos in failsafe_list:
        own_alloc[ch_node[pos]] += setpoint[pos]

    # ---- external control (spec 3.4) ----------------------------------------------------------
    # The allocation ran through the delegated scope so that it gets a fair amount; the product
    # sets no point inside it, and its limits only count as binding for visible chargers.
    own_hidden = [0.0] * n_nodes
    if any_external:
        binds = [False] * n_nodes
        for pos, c in enumerate(chargers):
            ni = ch_node[pos]
            res = results[pos]
            if not under_external[ni]:
                if res.binding is not None:
                    binds[index[res.binding.node_id]] = True
                continue
            if c.freshness == FRESH and not c.connected:
                continue  # not connected: 0 and no reasons, in every mode
            own_hidden[ni] += setpoint[pos]
            kept = [r for r in res.reason_codes if r in _TELEMETRY_CODES]
            results[pos] = _charger_result(
                c.asset_id, c.node_id, res.requested_kw, None, (*kept, EXTERNAL_CONTROL), None
            )

    # ---- nodes --------------------------------------------------------------------------------
    alloc = own_alloc[:]
    hidden_sum = own_hidden[:]
    for i in range(n_nodes - 1, 0, -1):
        p = parent[i]
        alloc[p] += alloc[i]
        if any_external:
            hidden_sum[p] += hidden_sum[i]
    headroom = [0.0] * n_nodes
    for i in range(n_nodes):
        h = limits[i] - unc[i] - alloc[i]
        if h > 0.0:
            headroom[i] = h
    if any_external:
        # smallest headroom from each node up to the root
        path_headroom = headroom[:]
        for i in range(1, n_nodes):
            if path_headroom[parent[i]] < path_headroom[i]:
                path_headroom[i] = path_headroom[parent[i]]

    node_results: list[NodeResult] = []
    cycle_codes: set[str] = set()
    worst_rank = 0
    node_twin = _NodeResultTwin
    node_cls = NodeResult
    for i, nd in enumerate(order):
        fb: tuple[FallbackEntry, ...] | list[FallbackEntry] = fallbacks[i]
        budget = None
        if fb or binds[i] or under_external[i]:
            codes: list[str] = []
            if failsafe[i]:
                codes.append(FAILSAFE_TELEMETRY_UNAVAILABLE)
                mode = FAILSAFE
            elif fb:
                mode = FALLBACK_DERIVED
            else:
                mode = MEASURED
            if has_fallback_value[i]:
                codes.append(TELEMETRY_FALLBACK)
            if nd.external_control:
                codes.append(EXTERNAL_CONTROL)
                # What the node may draw under every constraint above it without taking power
                # from anyone else: what its chargers hold now plus the smallest spare room on
                # its path. Floored to 1 W so that rounding never hands out more than exists.
                budget = floor((hidden_sum[i] + path_headroom[i]) * 1000.0 + 1e-6) / 1000.0
            if binds[i]:
                codes.append(limit_reason[i][0])
            reasons = tuple(codes)  # appended in precedence order
            cycle_codes.update(reasons)
            rank = SOURCE_MODE_RANK[mode]
            if rank > worst_rank:
                worst_rank = rank
            fb = tuple(sorted(fb, key=attrgetter("asset_id")))
        else:
            mode = MEASURED
            reasons = _R_NONE
            fb = ()
        obj = node_twin(
            nd.node_id,
            floor(nd.limit_kw * 1000.0 + 0.5) / 1000.0,
            nd.limit_source,
            floor(unc[i] * 1000.0 + 0.5) / 1000.0,
            floor(alloc[i] * 1000.0 + 0.5) / 1000.0,
            floor(headroom[i] * 1000.0 + 0.5) / 1000.0,
            mode,
            fb,
            reasons,
            budget,
        )
        obj.__class__ = node_cls
        node_results.append(obj)  # type: ignore[arg-type]

    constrained = False
    for codes_t in set(map(attrgetter("reason_codes"), results)):
        for code in codes_t:
            cycle_codes.add(code)
            if code in LIMIT_REASONS or code == MIN_POWER_UNSERVED:
                constrained = True
    worst_mode = (MEASURED, FALLBACK_DERIVED, FAILSAFE)[worst_rank]
    if worst_mode == FAILSAFE:
        outcome = FAILSAFE
    elif constrained:
        outcome = "CONSTRAINED"
    else:
        outcome = "OK"
    return EngineResult(
        outcome, worst_mode, sort_reasons(cycle_codes), tuple(node_results), tuple(results)
    )
