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

from collections.abc import Callable
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
    max_unbalance_a: float | None = None  # largest current difference between two phases
    # Per phase (L1, L2, L3) where they differ (a per-phase operating envelope): the limit and
    # its source of each phase (None: no limit on that phase).
    phase_limits_a: tuple[float | None, ...] | None = None
    phase_sources: tuple[str | None, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "node_id": self.node_id,
            "voltage_v": self.voltage_v,
            "phases": self.phases,
            "limit_a": self.limit_a,
            "limit_a_source": self.limit_a_source,
        }
        if self.max_unbalance_a is not None:
            d["max_unbalance_a"] = self.max_unbalance_a
        if self.phase_limits_a is not None:
            d["phase_limits_a"] = list(self.phase_limits_a)
            d["phase_sources"] = list(self.phase_sources or (None,) * 3)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhaseNode:
        return cls(
            node_id=d["node_id"],
            voltage_v=float(d["voltage_v"]),
            phases=int(d["phases"]),
            limit_a=None if d.get("limit_a") is None else float(d["limit_a"]),
            limit_a_source=d.get("limit_a_source"),
            max_unbalance_a=(
                None if d.get("max_unbalance_a") is None else float(d["max_unbalance_a"])
            ),
            phase_limits_a=(
                None
                if d.get("phase_limits_a") is None
                else tuple(None if v is None else float(v) for v in d["phase_limits_a"])
            ),
            phase_sources=(None if d.get("phase_sources") is None else tuple(d["phase_sources"])),
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


# --------------------------------------------------------------------------------------------
# The per-phase allocation (spec 4.3, "Phases"): the pure arithmetic the engine calls when its
# input carries a PhaseInput. Everything is in kW per charger (the setpoint), and every
# constraint is linear in the setpoints: a node's kW budget (coefficient 1), each phase of a
# node with a current limit (coefficient A per kW for the chargers drawing on that phase), and
# the unbalance of a node with max_unbalance_a (I_p - I_q <= U for every ordered pair).
# --------------------------------------------------------------------------------------------

import numpy as np  # noqa: E402  (the data classes above stay importable without numpy work)

KIND_KW, KIND_PHASE, KIND_UNBALANCE = 0, 1, 2
_EPS = 1e-9
_PAIRS = ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))


class PhaseModel:
    """The per-phase facts of one cycle, in the engine's node order and charger order."""

    __slots__ = (
        "n",
        "parent",
        "depth_anc",
        "node_phases",
        "node_v",
        "limit_a",
        "limit_a_source",
        "phase_limit",
        "phase_source",
        "unbalance_a",
        "on",
        "k",
        "amps_per_kw",
        "min_a",
        "max_a",
        "cons_node",
        "cons_kind",
        "cons_p",
        "cons_q",
    )


# Node phases drawn on (sorted tuples) -> which of L1, L2, L3
_ON = {
    (0,): (True, False, False),
    (1,): (False, True, False),
    (2,): (False, False, True),
    (0, 1): (True, True, False),
    (0, 2): (True, False, True),
    (1, 2): (False, True, True),
}
_ALL3 = (True, True, True)
_ON[(0, 1, 2)] = _ALL3
_NO_CHARGER = (_ALL3, None, None)  # a charger without per-phase data: every phase, no range


def _on_row(drawn: tuple[int, ...]) -> tuple[bool, bool, bool]:
    row = _ON.get(drawn)
    if row is not None:
        return row
    if not drawn or len(set(drawn)) == 3:
        return _ALL3
    return (0 in drawn, 1 in drawn, 2 in drawn)


def build_model(
    phase: PhaseInput,
    node_ids: list[str],
    parent: list[int],
    asset_ids: list[str],
    ch_node: np.ndarray,
) -> PhaseModel:
    """The model for the engine's nodes (preorder) and chargers (asset_id order)."""
    m = PhaseModel()
    n = m.n = len(node_ids)
    m.parent = parent
    index = {node_id: i for i, node_id in enumerate(node_ids)}
    known = [(index[pn.node_id], pn) for pn in phase.nodes if pn.node_id in index]
    at = np.array([i for i, _ in known], dtype=np.intp)
    pns = [pn for _, pn in known]
    m.node_phases = np.full(n, 3)
    m.node_phases[at] = [pn.phases for pn in pns]
    m.node_v = np.full(n, 230.0)
    m.node_v[at] = [pn.voltage_v for pn in pns]
    m.limit_a = np.full(n, np.inf)
    m.limit_a[at] = np.array([pn.limit_a for pn in pns], dtype=float)  # None -> nan
    m.limit_a[np.isnan(m.limit_a)] = np.inf
    sources: list[str | None] = [None] * n
    for i, pn in known:
        sources[i] = pn.limit_a_source
    m.limit_a_source = sources
    m.unbalance_a = np.full(n, np.inf)
    m.unbalance_a[at] = np.array([pn.max_unbalance_a for pn in pns], dtype=float)
    m.unbalance_a[np.isnan(m.unbalance_a)] = np.inf
    # per node and phase: the node's limit, or its phase's own where they differ
    m.phase_limit = np.repeat(m.limit_a[:, None], 3, axis=1)
    m.phase_source = [[src] * 3 for src in sources]
    for i, pn in known:
        if pn.phase_limits_a is None:
            continue
        per_source = pn.phase_sources or (None, None, None)
        for p, value in enumerate(pn.phase_limits_a[:3]):
            m.phase_limit[i, p] = np.inf if value is None else value
            m.phase_source[i][p] = per_source[p]
        m.limit_a[i] = m.phase_limit[i, : pn.phases].min()
    # Ancestors of each node by depth (the node itself last): depth_anc[i] = path root..i.
    par = np.array(parent, dtype=np.intp)
    depth = np.zeros(n, dtype=np.intp)
    for i in range(1, n):  # preorder: a parent's depth is known first
        depth[i] = depth[parent[i]] + 1
    m.depth_anc = np.full((n, int(depth.max()) + 1 if n else 1), -1, dtype=np.intp)
    cur = np.arange(n)
    level = depth.copy()
    while True:
        live = level >= 0
        if not live.any():
            break
        rows = np.flatnonzero(live)
        m.depth_anc[rows, level[rows]] = cur[rows]
        cur = np.where(live, par[np.maximum(cur, 0)], -1)
        level = level - 1
    # A single-phase node anywhere on a charger's path leaves it one phase: the node's L1.
    single = m.node_phases == 1
    on_single = (
        (single[np.maximum(m.depth_anc, 0)] & (m.depth_anc >= 0)).any(axis=1)
        if single.any()
        else single
    )
    on_get = _ON.get
    by_asset = {
        pc.asset_id: (on_get(pc.drawn) or _on_row(pc.drawn), pc.min_current_a, pc.max_current_a)
        for pc in phase.chargers
    }
    n_ch = len(asset_ids)
    rows = list(map(by_asset.get, asset_ids, [_NO_CHARGER] * n_ch))
    on_rows, min_l, max_l = zip(*rows, strict=True) if rows else ((), (), ())
    on = m.on = np.array(on_rows, dtype=bool).reshape(n_ch, 3)
    if on_single.any():
        on[on_single[ch_node]] = (True, False, False)
    m.k = on.sum(axis=1).astype(float)
    m.min_a = np.array(min_l, dtype=float)  # None -> nan
    m.max_a = np.array(max_l, dtype=float)
    m.amps_per_kw = 1000.0 / (m.node_v[ch_node] * m.k)
    # The constraints, node by node: kW, then the phases (a node with a current limit), then
    # the unbalance pairs (a three-phase node with max_unbalance_a).
    n_phase = np.where(np.isfinite(m.limit_a), m.node_phases, 0)
    n_pair = np.where(np.isfinite(m.unbalance_a) & (m.node_phases == 3), len(_PAIRS), 0)
    per_node = 1 + n_phase + n_pair
    m.cons_node = np.repeat(np.arange(n, dtype=np.intp), per_node)
    starts = np.concatenate([[0], np.cumsum(per_node)[:-1]]).astype(np.intp)
    slot = np.arange(len(m.cons_node), dtype=np.intp) - starts[m.cons_node]
    n_ph = n_phase[m.cons_node]
    m.cons_kind = np.where(slot == 0, KIND_KW, np.where(slot <= n_ph, KIND_PHASE, KIND_UNBALANCE))
    pair = np.clip(slot - 1 - n_ph, 0, len(_PAIRS) - 1)
    pairs = np.array(_PAIRS, dtype=np.intp)
    m.cons_p = np.where(
        m.cons_kind == KIND_KW, -1, np.where(m.cons_kind == KIND_PHASE, slot - 1, pairs[pair, 0])
    ).astype(np.intp)
    m.cons_q = np.where(m.cons_kind == KIND_UNBALANCE, pairs[pair, 1], -1).astype(np.intp)
    return m


def current_range_kw(
    m: PhaseModel, min_kw: np.ndarray, max_kw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each charger's kW range with its current range applied: a charger that limits by
    current runs between min_current_a and max_current_a on the phases the EV draws on, so a
    single-phase EV on a three-phase charger gets a third of the three-phase figures."""
    kw_per_a = 1.0 / m.amps_per_kw
    lo = np.where(np.isnan(m.min_a), min_kw, m.min_a * kw_per_a)
    hi = np.where(np.isnan(m.max_a), max_kw, np.minimum(max_kw, m.max_a * kw_per_a))
    return np.minimum(lo, hi), hi


def _stable_order(keys: np.ndarray, bound: int) -> np.ndarray:
    """np.argsort(keys, kind="stable") for integer keys in [0, bound): a radix sort when they
    fit 16 bits (several times faster than the merge sort of wider integers)."""
    if bound <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    return np.argsort(keys, kind="stable")


def entries(m: PhaseModel, ch_node: np.ndarray, members: np.ndarray):
    """The nonzero coefficients of the constraints: (constraint, member position, coefficient)
    for the chargers `members` (positions in the engine's columns), sorted by constraint."""
    node = ch_node[members]
    on = m.on[members]
    amps = m.amps_per_kw[members]
    # Constraint ids per node: kW first, phase p at +1 + p, unbalance pairs after the phases.
    first = np.searchsorted(m.cons_node, np.arange(m.n))
    n_phase = np.where(np.isfinite(m.limit_a), m.node_phases, 0)
    unbalanced = np.isfinite(m.unbalance_a) & (m.node_phases == 3)
    out_c, out_j, out_v = [], [], []
    for d in range(m.depth_anc.shape[1]):
        anc = m.depth_anc[node, d]
        ok = np.flatnonzero(anc >= 0)
        if not len(ok):
            continue
        a_ok = anc[ok]
        base = first[a_ok]
        out_c.append(base), out_j.append(ok), out_v.append(np.ones(len(ok)))
        has_p = n_phase[a_ok]
        on_ok = on[ok]
        amps_ok = amps[ok]
        for p in range(3):
            sel = (has_p > p) & on_ok[:, p]
            if sel.any():
                out_c.append(base[sel] + 1 + p)
                out_j.append(ok[sel])
                out_v.append(amps_ok[sel])
        unb = np.flatnonzero(unbalanced[a_ok])
        if len(unb):
            u_on = on_ok[unb].astype(float)
            u_amps = amps_ok[unb]
            u_base = base[unb] + 1 + has_p[unb]
            for t, (p, q) in enumerate(_PAIRS):
                coef = u_amps * (u_on[:, p] - u_on[:, q])
                sel = coef != 0.0
                if sel.any():
                    out_c.append(u_base[sel] + t)
                    out_j.append(ok[unb[sel]])
                    out_v.append(coef[sel])
    if not out_c:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0)
    e_c = np.concatenate(out_c)
    o = _stable_order(e_c, len(m.cons_node))  # by constraint, as `fill` reads them
    return e_c[o], np.concatenate(out_j)[o], np.concatenate(out_v)[o]


def rooms(
    m: PhaseModel,
    kw_room: np.ndarray,
    own_unc_kw: np.ndarray,
    fixed_kw: np.ndarray,
    fixed_node: np.ndarray,
    fixed_members: np.ndarray,
) -> np.ndarray:
    """What every constraint has left before the fair share: the kW budgets as the engine
    computed them; for the phases the current limit minus the uncontrolled load (spread evenly
    over the node's phases: nothing says more) and minus the fixed setpoints (stale chargers'
    failsafe power, fail safe setpoints) on the phases they draw on; for the unbalance
    U - (I_p - I_q) of the same."""
    n = m.n
    # Own uncontrolled current per node and phase, then subtree sums.
    own = np.zeros((n, 3))
    share = own_unc_kw * 1000.0 / (m.node_v * m.node_phases)
    for p in range(3):
        own[:, p] = np.where(m.node_phases > p, share, 0.0)
    if len(fixed_members):
        amps = m.amps_per_kw[fixed_members] * fixed_kw
        for p in range(3):
            own[:, p] += np.bincount(fixed_node, weights=amps * m.on[fixed_members, p], minlength=n)
    total = own.copy()
    parent = m.parent
    for i in range(n - 1, 0, -1):
        total[parent[i]] += total[i]
    i, kind, p, q = m.cons_node, m.cons_kind, m.cons_p, m.cons_q
    pp, qq = np.maximum(p, 0), np.maximum(q, 0)
    room = np.where(
        kind == KIND_KW,
        kw_room[i],
        np.where(
            kind == KIND_PHASE,
            m.phase_limit[i, pp] - total[i, pp],
            m.unbalance_a[i] - (total[i, pp] - total[i, qq]),
        ),
    )
    return room


def admit_minimums(
    order: Callable[[list[int]], list[int]],
    mins: np.ndarray,
    e_c: np.ndarray,
    e_j: np.ndarray,
    e_v: np.ndarray,
    room: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimums in the order `order(candidates)` puts the candidates in (positions into
    `mins`): each served when it fits every constraint it raises (spec 4.3 step 1). Returns
    the served mask and the room left.

    Only a constraint whose minimums do not all fit can refuse one: the ordered pass visits
    only the chargers in such a constraint and checks only those constraints (as the kW
    engine's `_minimums` does)."""
    served = np.ones(len(mins), dtype=bool)
    contrib = e_v * mins[e_j]
    need = np.bincount(e_c, weights=contrib, minlength=len(room))
    # Only what raises a constraint can fill it: a minimum that lowers one (the other phase
    # of an unbalance pair) is not counted on, since it may itself be refused.
    at_risk = np.bincount(e_c, weights=np.maximum(contrib, 0.0), minlength=len(room)) > room + _EPS
    if not at_risk.any():
        return served, room - need
    risky = at_risk[e_c] & (e_v * mins[e_j] > 0.0)
    rc, rj, rv = e_c[risky], e_j[risky], (e_v * mins[e_j])[risky]
    sort = np.argsort(rj, kind="stable")
    rc, rj, rv = rc[sort].tolist(), rj[sort], rv[sort].tolist()
    starts = np.searchsorted(rj, np.arange(len(mins) + 1)).tolist()
    left = room.tolist()
    for q in order(np.unique(rj).tolist()):
        lo, hi = starts[q], starts[q + 1]
        if lo == hi:
            continue
        cs, vs = rc[lo:hi], rv[lo:hi]
        if all(left[c] >= v - _EPS for c, v in zip(cs, vs, strict=True)):
            for c, v in zip(cs, vs, strict=True):
                left[c] -= v
        else:
            served[q] = False
    taken = served[e_j]
    return served, room - np.bincount(
        e_c[taken], weights=(e_v * mins[e_j])[taken], minlength=len(room)
    )


def grant(
    order: Callable[[list[int]], list[int]],
    want: np.ndarray,
    e_c: np.ndarray,
    e_j: np.ndarray,
    e_v: np.ndarray,
    room: np.ndarray,
) -> np.ndarray:
    """Departure grants (spec 4.3, "Departures", step 2a) under every constraint: each member
    asks `want` above its minimum (0: nothing); in the order `order(candidates)` puts them,
    each gets it, or what is left of it in the constraints it raises. Returns what each got.

    As `admit_minimums`: only a constraint whose grants do not all fit can cut one, so the
    ordered pass visits only the members of such constraints and checks only those."""
    got = want.astype(float).copy()
    raise_ = np.maximum(e_v, 0.0) * want[e_j]
    short = np.bincount(e_c, weights=raise_, minlength=len(room)) > room + _EPS
    if not short.any():
        return got
    risky = short[e_c] & (raise_ > 0.0)
    rc, rj, rv = e_c[risky], e_j[risky], e_v[risky]
    sort = np.argsort(rj, kind="stable")
    rc, rj, rv = rc[sort].tolist(), rj[sort], rv[sort].tolist()
    starts = np.searchsorted(rj, np.arange(len(want) + 1)).tolist()
    left = room.tolist()
    for q in order(np.unique(rj).tolist()):
        lo, hi = starts[q], starts[q + 1]
        cs, vs = rc[lo:hi], rv[lo:hi]
        g = float(want[q])
        for c, v in zip(cs, vs, strict=True):
            g = min(g, left[c] / v)
        if g <= _EPS:
            got[q] = 0.0
            continue
        for c, v in zip(cs, vs, strict=True):
            left[c] -= v * g
        got[q] = g
    return got


def _clamp(level: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(level, lo), hi)


def _heads(keys: np.ndarray) -> np.ndarray:
    """Where a run of equal keys starts (keys sorted)."""
    heads = np.empty(len(keys), dtype=bool)
    if len(keys):
        heads[0] = True
        np.not_equal(keys[1:], keys[:-1], out=heads[1:])
    return heads


def fill(
    mins: np.ndarray,
    dem: np.ndarray,
    e_c: np.ndarray,
    e_j: np.ndarray,
    e_v: np.ndarray,
    room: np.ndarray,
    depth: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Max-min fair progressive filling of one priority class above its minimums under every
    constraint at once: all rising chargers share one level t (a charger's setpoint is
    clamp(t, min, demand)); a constraint that becomes tight stops the chargers that raise it.

    Returns each member's level (its setpoint before rounding) and the constraint that stopped
    it (-1: its own demand); `depth` (of each constraint's node) breaks ties: the deeper node,
    then the lower constraint number, is the one that stops a charger.

    The result is that of stopping one constraint at a time, in level order. It is computed in
    rounds: each round solves, for every constraint whose members changed, the level at which
    it becomes tight (exactly: a member contributes v x clamp(t, min, upper), upper its demand,
    or its setpoint once stopped, so each constraint is piecewise linear in t between its
    members' breakpoints, which are sorted once), orders the constraints by that level, and
    applies every one whose level cannot change any more, in the same round, wherever it is
    in the tree:
    - not one with a member that an earlier constraint stops lower (its level is later; it
      waits for the next round);
    - not one with a member it would bind below its demand whose first constraint waits
      (which of the two binds it is not known yet);
    - not one with a member raised by an unbalance constraint that waits (or is not tight as
      computed) while a charger it lowers is stopped below that member's level this round
      (a lowering charger that stops makes the constraint tight sooner).
    The first constraint in the order never waits. A charger stopped above the level the
    round ends at keeps counting as clamp(t, min, its setpoint) in the constraints that wait,
    so their next levels are exact too."""
    n_m = len(mins)
    n_c = len(room)
    value = mins.astype(float).copy()
    bind = np.full(n_m, -1, dtype=np.intp)
    if not len(e_c) or not n_m:
        return dem.astype(float).copy(), bind
    if depth is None:
        depth = np.zeros(n_c, dtype=np.intp)
    # the constraints as seen by this class: room above the minimums, plus the minimums
    cap = room + np.bincount(e_c, weights=e_v * mins[e_j], minlength=n_c)
    # A constraint that holds even with every member at its demand (and those that lower it at
    # their minimums) never becomes tight: it stops nobody, and is left out.
    top = np.bincount(e_c, weights=e_v * np.where(e_v > 0.0, dem[e_j], mins[e_j]), minlength=n_c)
    keep = (top >= cap - _EPS)[e_c]
    if not keep.all():
        e_c, e_j, e_v = e_c[keep], e_j[keep], e_v[keep]
        if not len(e_c):
            return dem.astype(float).copy(), bind
    upper = dem.astype(float).copy()  # demand, or the setpoint once stopped
    decided = np.zeros(n_m, dtype=bool)
    # The live entries (constraint not done; member undecided, or stopped above the level), by
    # constraint.
    if len(e_c) > 1 and (e_c[1:] < e_c[:-1]).any():
        o = np.argsort(e_c, kind="stable")
        e_c, e_j, e_v = e_c[o], e_j[o], e_v[o]
    l_c, l_j, l_v = e_c, e_j, e_v
    fixed = np.zeros(n_c)  # what each constraint's members finished below the level hold
    done = np.zeros(n_c, dtype=bool)
    # Constraints already tight at level 0 (no room above the minimums, typically taken by a
    # higher class) stop every charger they raise at its minimum, deepest node first; when no
    # other constraint can become tight as near to 0 as to tie with them (a lower bound of its
    # level: room over its steepest rise), they are applied before anything is sorted.
    lo_e = l_v * mins[l_j]
    g0 = np.bincount(l_c, weights=lo_e, minlength=n_c)
    tight0 = g0 >= cap - _EPS
    if tight0[l_c].any():
        rise = np.bincount(l_c, weights=np.maximum(l_v, 0.0), minlength=n_c)
        with np.errstate(divide="ignore", invalid="ignore"):
            soonest = np.where(tight0, np.inf, (cap - _EPS - g0) / rise)
        if not (soonest < 1e-6).any():
            t0 = np.flatnonzero(tight0 & (np.bincount(l_c, minlength=n_c) > 0))
            t0 = t0[np.argsort(-depth[t0], kind="stable")]
            rank0 = np.full(n_c, n_c, dtype=np.intp)
            rank0[t0] = np.arange(len(t0))
            up = (l_v > 0.0) & tight0[l_c]
            stop0 = np.full(n_m, n_c, dtype=np.intp)
            np.minimum.at(stop0, l_j[up], rank0[l_c[up]])
            hit = np.flatnonzero(stop0 < n_c)
            short = mins[hit] < dem[hit] - _EPS
            bind[hit[short]] = t0[stop0[hit[short]]]
            decided[hit] = True
            upper[hit] = mins[hit]
            done[t0] = True
            gone = decided[l_j]
            fixed += np.bincount(l_c[gone], weights=lo_e[gone], minlength=n_c)
            keep = ~gone & ~done[l_c]
            l_c, l_j, l_v = l_c[keep], l_j[keep], l_v[keep]
            if not len(l_c):
                return np.where(decided, mins, dem).astype(float), bind
    # The events of each entry, sorted by (constraint, breakpoint) once: the member enters the
    # slope at its minimum and leaves it at its upper bound. An integer key per event: the
    # constraint, then the breakpoint's rank among all minimums and demands (a stopped
    # member's setpoint gets the odd rank just below the next breakpoint).
    breaks = np.sort(np.concatenate([mins, dem]))
    width = 2 * len(breaks) + 2

    def rank(b: np.ndarray) -> np.ndarray:
        at = np.searchsorted(breaks, b)
        exact = breaks[np.minimum(at, len(breaks) - 1)] == b
        return 2 * at + np.where(exact, 1, 0)

    n_e = len(l_c)
    both = np.concatenate([mins[l_j], dem[l_j]])
    ranks = np.concatenate([rank(mins)[l_j], rank(dem)[l_j]])
    by_rank = _stable_order(ranks, width)
    eo = by_rank[_stable_order(np.concatenate([l_c, l_c])[by_rank], n_c)]
    key = np.concatenate([l_c, l_c]) * width + ranks
    side = np.where(eo < n_e, -1.0, 1.0)  # -1: the minimum (enters), +1: the upper (leaves)
    src_e = np.where(eo < n_e, eo, eo - n_e)
    v_key, v_c, v_j, v_b = key[eo], l_c[src_e], l_j[src_e], both[eo]
    v_sv = side * l_v[src_e]  # event changes: constant + sv x b, slope - sv
    v_low = eo < n_e
    later = v_b > 0.0  # (what happens at or below the level is in the state at the level)
    v_key, v_c, v_j, v_b, v_sv, v_low = (
        v_key[later],
        v_c[later],
        v_j[later],
        v_b[later],
        v_sv[later],
        v_low[later],
    )
    # a stopped member's new upper events, kept apart (few), sorted by key
    p_key = np.zeros(0, dtype=key.dtype)
    p_c = p_j = np.zeros(0, dtype=np.intp)
    p_b = p_sv = np.zeros(0)
    t = 0.0
    dirty = np.zeros(n_c, dtype=bool)
    dirty[l_c] = True
    t_c = np.full(n_c, np.inf)
    big = n_c + 1
    while True:
        und = ~decided[l_j]
        if not und.any():
            break
        # -- the level at which each changed constraint becomes tight --------------------------
        sel = dirty[l_c]
        rc, rj, rv = l_c[sel], l_j[sel], l_v[sel]
        lo_, hi_ = mins[rj], upper[rj]
        below = t < lo_
        inside = (~below) & (t < hi_)
        c0 = np.bincount(
            rc, weights=np.where(below, rv * lo_, np.where(inside, 0.0, rv * hi_)), minlength=n_c
        )
        s0 = np.bincount(rc, weights=np.where(inside, rv, 0.0), minlength=n_c)
        g_t = fixed + c0 + t * s0
        t_c[dirty] = np.inf
        movable = np.bincount(rc[und[sel]], minlength=n_c) > 0
        now_tight = dirty & (g_t >= cap - _EPS) & movable
        sel = dirty[v_c]
        ev_c, ev_b, ev_sv = v_c[sel], v_b[sel], v_sv[sel]
        if len(p_c):
            sel = dirty[p_c]
            if sel.any():
                ev_key = np.concatenate([v_key[dirty[v_c]], p_key[sel]])
                m = np.argsort(ev_key, kind="stable")  # two sorted runs: a merge
                ev_c = np.concatenate([ev_c, p_c[sel]])[m]
                ev_b = np.concatenate([ev_b, p_b[sel]])[m]
                ev_sv = np.concatenate([ev_sv, p_sv[sel]])[m]
        if len(ev_c):
            ev_dc = ev_sv * ev_b
            cum_c = np.cumsum(ev_dc)
            cum_s = np.cumsum(ev_sv)
            n_ev = len(ev_c)
            first = np.maximum.accumulate(np.where(_heads(ev_c), np.arange(n_ev), 0))
            base_c = np.where(first > 0, cum_c[first - 1], 0.0)
            base_s = np.where(first > 0, cum_s[first - 1], 0.0)
            # state before each event (within its constraint)
            prev_c = c0[ev_c] + cum_c - ev_dc - base_c
            prev_s = s0[ev_c] - (cum_s - ev_sv - base_s)
            g_at = fixed[ev_c] + prev_c + ev_b * prev_s
            hit = np.flatnonzero(g_at >= cap[ev_c] - _EPS)
            if len(hit):
                hc = ev_c[hit]
                head = _heads(hc)
                k = hit[head]
                hc = hc[head]
                slope = prev_s[k]
                lam = np.where(
                    slope > _EPS,
                    (cap[hc] - fixed[hc] - prev_c[k]) / np.where(slope > _EPS, slope, 1.0),
                    ev_b[k],
                )
                t_c[hc] = np.minimum(np.maximum(lam, t), ev_b[k])
        t_c[now_tight] = t
        finite = np.flatnonzero(np.isfinite(t_c))
        if not len(finite):
            break
        # -- level order: ties (up to float noise) deepest node first, then constraint order,
        # so that a charger is said to be bound by the node nearest to it (as the kW engine).
        by_depth = finite[np.argsort(-depth[finite], kind="stable")]
        order = by_depth[np.argsort(np.round(t_c[by_depth], 6), kind="stable")]
        n_o = len(order)
        pos = np.full(n_c, big, dtype=np.intp)
        pos[order] = np.arange(n_o)
        l_pos = pos[l_c]
        ins = (l_pos < big) & und
        oc, oj, ov, op = l_c[ins], l_j[ins], l_v[ins], l_pos[ins]
        raising = ov > 0.0
        # each undecided charger's first constraint in the order that it raises
        first = np.full(n_m, big, dtype=np.intp)
        np.minimum.at(first, oj[raising], op[raising])
        # The lowest level at which each undecided charger may still be stopped: that of the
        # first constraint it raises, or of an unbalance constraint that a charger lowering it
        # can make tight sooner (from that charger's own lowest level on; an unbalance
        # constraint's own level as computed holds until then).
        bound = np.where(np.isfinite(t_c), t_c, np.inf)
        up = (l_v > 0.0) & und
        u_c, u_j = l_c[up], l_j[up]
        low = np.full(n_m, np.inf)
        np.minimum.at(low, u_j, bound[u_c])
        neg = np.flatnonzero((l_v < 0.0) & und)
        if len(neg):
            n_c_, n_j = l_c[neg], l_j[neg]
            for sweep in range(12):
                lj = low[n_j]
                reach = np.where(lj < dem[n_j] - _EPS, np.maximum(lj, mins[n_j]), np.inf)
                lowered = bound.copy()
                np.minimum.at(lowered, n_c_, reach)
                if (lowered >= bound).all():
                    break
                if sweep == 11:  # (a long chain: every such constraint may be tight now)
                    lowered[n_c_] = np.minimum(lowered[n_c_], t)
                bound = lowered
                low = np.full(n_m, np.inf)
                np.minimum.at(low, u_j, bound[u_c])
        blocked = np.zeros(n_o + 1, dtype=bool)
        blocked[n_o] = True  # (the position of "no constraint", and of one not in the order)
        # A member that may be stopped lower than this constraint's level assumes of it: its
        # level is not certain yet (it waits for the next round).
        ok_ = np.isfinite(low[oj])
        e_ = np.flatnonzero(ok_)
        if len(e_):
            kj = oj[e_]
            may = _clamp(low[kj], mins[kj], dem[kj])
            assumed = _clamp(t_c[oc[e_]], mins[kj], dem[kj])
            blocked[op[e_[may < assumed - _EPS]]] = True
        # A member it would bind below its demand whose first constraint waits: which of the two
        # binds it is not known yet.
        earlier = np.flatnonzero(raising & (first[oj] < op))
        u_from = u_to = np.zeros(0, dtype=np.intp)
        if len(earlier):
            ej_ = oj[earlier]
            assumed = _clamp(t_c[oc[earlier]], mins[ej_], dem[ej_])
            unsure = earlier[assumed < dem[ej_] - _EPS]
            u_from, u_to = first[oj[unsure]], op[unsure]
        blocked[0] = False  # the first never waits: progress every round
        for _ in range(len(u_from) + 1):
            grow = u_to[blocked[u_from] & ~blocked[u_to]]
            if not len(grow):
                break
            blocked[grow] = True
        ap = raising & ~blocked[op]
        stop = np.full(n_m, big, dtype=np.intp)
        np.minimum.at(stop, oj[ap], op[ap])
        # -- apply: each undecided charger stopped by its first applied constraint ------------
        hit = np.flatnonzero(stop < big)
        hit_c = order[stop[hit]]
        level = _clamp(t_c[hit_c], mins[hit], dem[hit])
        value[hit] = level
        short = level < dem[hit] - _EPS
        bind[hit[short]] = hit_c[short]
        decided[hit] = True
        upper[hit] = level
        applied = order[~blocked[:n_o]]
        done[applied] = True
        # The level moves up to the highest applied, but never past the lowest level at which
        # a constraint not applied may become tight.
        t_next = float(t_c[applied].max())
        rest = np.flatnonzero(~done & np.isfinite(bound))
        if len(rest):
            t_next = min(t_next, float(bound[rest].min()))
        t = max(t, t_next)
        t_c[applied] = np.inf
        if decided[l_j].all():
            break
        # -- next round: the changed constraints; entries and events still to come ----------
        now = np.zeros(n_m, dtype=bool)
        now[hit] = True
        changed = now[l_j]
        dirty = np.zeros(n_c, dtype=bool)
        dirty[l_c[changed]] = True
        dirty &= ~done
        # stopped members' upper events move to their setpoints
        live = ~done[l_c]
        new_ev = np.flatnonzero(changed & live & (upper[l_j] > t) & (upper[l_j] > mins[l_j]))
        finished = decided[l_j] & ((upper[l_j] <= t) | (upper[l_j] <= mins[l_j]))
        fixed += np.bincount(
            l_c[finished], weights=l_v[finished] * upper[l_j[finished]], minlength=n_c
        )
        keep = live & ~finished
        # (a stopped member's minimum event stays while above the level; its demand event goes)
        keep_v = ~done[v_c] & (v_b > t) & ~(now[v_j] & (~v_low | (upper[v_j] <= mins[v_j])))
        v_key, v_c, v_j, v_b, v_sv, v_low = (
            v_key[keep_v],
            v_c[keep_v],
            v_j[keep_v],
            v_b[keep_v],
            v_sv[keep_v],
            v_low[keep_v],
        )
        keep_p = ~done[p_c] & (p_b > t)
        p_key, p_c, p_j, p_b, p_sv = (
            p_key[keep_p],
            p_c[keep_p],
            p_j[keep_p],
            p_b[keep_p],
            p_sv[keep_p],
        )
        if len(new_ev):
            nc_, nj_ = l_c[new_ev], l_j[new_ev]
            nb_ = upper[nj_]
            k_ = nc_ * width + rank(nb_)
            p_key = np.concatenate([p_key, k_])
            p_c = np.concatenate([p_c, nc_])
            p_j = np.concatenate([p_j, nj_])
            p_b = np.concatenate([p_b, nb_])
            p_sv = np.concatenate([p_sv, l_v[new_ev]])
            m = np.argsort(p_key, kind="stable")
            p_key, p_c, p_j, p_b, p_sv = p_key[m], p_c[m], p_j[m], p_b[m], p_sv[m]
        l_c, l_j, l_v = l_c[keep], l_j[keep], l_v[keep]
    return np.where(decided, value, dem), bind
