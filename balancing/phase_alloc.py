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
    by_node = {pn.node_id: pn for pn in phase.nodes}
    m.node_phases = np.array([by_node[i].phases if i in by_node else 3 for i in node_ids])
    m.node_v = np.array([by_node[i].voltage_v if i in by_node else 230.0 for i in node_ids])
    m.limit_a = np.array(
        [
            by_node[i].limit_a if i in by_node and by_node[i].limit_a is not None else np.inf
            for i in node_ids
        ]
    )
    m.limit_a_source = [by_node[i].limit_a_source if i in by_node else None for i in node_ids]
    # per node and phase: the node's limit, or its phase's own where they differ
    m.phase_limit = np.repeat(m.limit_a[:, None], 3, axis=1)
    m.phase_source = [[src] * 3 for src in m.limit_a_source]
    for i, node_id in enumerate(node_ids):
        pn = by_node.get(node_id)
        if pn is None or pn.phase_limits_a is None:
            continue
        sources = pn.phase_sources or (None, None, None)
        for p, value in enumerate(pn.phase_limits_a[:3]):
            m.phase_limit[i, p] = np.inf if value is None else value
            m.phase_source[i][p] = sources[p]
        m.limit_a[i] = m.phase_limit[i, : pn.phases].min()
    m.unbalance_a = np.array(
        [
            by_node[i].max_unbalance_a
            if i in by_node and by_node[i].max_unbalance_a is not None
            else np.inf
            for i in node_ids
        ]
    )
    # A single-phase node anywhere on a charger's path leaves it one phase: the node's L1.
    single = (m.node_phases == 1).tolist()
    on_single = single[:]
    for i in range(1, n):
        if on_single[parent[i]]:
            on_single[i] = True
    # Ancestors of each node by depth (the node itself last): anc[i] = path root..i.
    anc: list[list[int]] = [[0]] + [[] for _ in range(n - 1)]
    for i in range(1, n):
        anc[i] = [*anc[parent[i]], i]
    depth = max(len(a) for a in anc)
    m.depth_anc = np.full((n, depth), -1, dtype=np.intp)
    for i, a in enumerate(anc):
        m.depth_anc[i, : len(a)] = a
    chargers = {pc.asset_id: pc for pc in phase.chargers}
    n_ch = len(asset_ids)
    on_rows: list[tuple[bool, bool, bool]] = []
    min_l: list[float] = [np.nan] * n_ch
    max_l: list[float] = [np.nan] * n_ch
    all3 = (True, True, True)
    only1 = (True, False, False)
    ch_node_l = ch_node.tolist()
    for j, asset_id in enumerate(asset_ids):
        pc = chargers.get(asset_id)
        if on_single[ch_node_l[j]]:
            on_rows.append(only1)
        elif pc is None or not pc.drawn or len(pc.drawn) == 3:
            on_rows.append(all3)
        else:
            on_rows.append((0 in pc.drawn, 1 in pc.drawn, 2 in pc.drawn))
        if pc is not None:
            if pc.min_current_a is not None:
                min_l[j] = pc.min_current_a
            if pc.max_current_a is not None:
                max_l[j] = pc.max_current_a
    on = m.on = np.array(on_rows, dtype=bool).reshape(n_ch, 3)
    k = m.k = on.sum(axis=1).astype(float)
    m.min_a = np.array(min_l, dtype=float)
    m.max_a = np.array(max_l, dtype=float)
    m.amps_per_kw = 1000.0 / (m.node_v[ch_node] * k)
    # The constraints, node by node: kW, then the phases (a node with a current limit), then
    # the unbalance pairs (a three-phase node with max_unbalance_a).
    cn, ck, cp, cq = [], [], [], []
    for i in range(n):
        cn.append(i), ck.append(KIND_KW), cp.append(-1), cq.append(-1)
        if np.isfinite(m.limit_a[i]):
            for p in range(int(m.node_phases[i])):
                cn.append(i), ck.append(KIND_PHASE), cp.append(p), cq.append(-1)
        if np.isfinite(m.unbalance_a[i]) and m.node_phases[i] == 3:
            for p, q in _PAIRS:
                cn.append(i), ck.append(KIND_UNBALANCE), cp.append(p), cq.append(q)
    m.cons_node = np.array(cn, dtype=np.intp)
    m.cons_kind = np.array(ck, dtype=np.intp)
    m.cons_p = np.array(cp, dtype=np.intp)
    m.cons_q = np.array(cq, dtype=np.intp)
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


def entries(m: PhaseModel, ch_node: np.ndarray, members: np.ndarray):
    """The nonzero coefficients of the constraints: (constraint, member position, coefficient)
    for the chargers `members` (positions in the engine's columns)."""
    node = ch_node[members]
    on = m.on[members]
    amps = m.amps_per_kw[members]
    # Constraint ids per node: kW first, phase p at +1 + p, unbalance pairs after the phases.
    first = np.searchsorted(m.cons_node, np.arange(m.n))
    n_phase = np.where(np.isfinite(m.limit_a), m.node_phases, 0)
    out_c, out_j, out_v = [], [], []
    pos = np.arange(len(members))
    for d in range(m.depth_anc.shape[1]):
        anc = m.depth_anc[node, d]
        ok = anc >= 0
        if not ok.any():
            continue
        a_ok, j_ok = anc[ok], pos[ok]
        base = first[a_ok]
        out_c.append(base), out_j.append(j_ok), out_v.append(np.ones(len(j_ok)))
        has_p = n_phase[a_ok]
        for p in range(3):
            sel = (has_p > p) & on[ok, p]
            if sel.any():
                out_c.append(base[sel] + 1 + p)
                out_j.append(j_ok[sel])
                out_v.append(amps[ok][sel])
        unb = np.isfinite(m.unbalance_a[a_ok]) & (m.node_phases[a_ok] == 3)
        if unb.any():
            for t, (p, q) in enumerate(_PAIRS):
                coef = amps[ok] * (on[ok, p].astype(float) - on[ok, q].astype(float))
                sel = unb & (coef != 0.0)
                if sel.any():
                    out_c.append(base[sel] + 1 + has_p[sel] + t)
                    out_j.append(j_ok[sel])
                    out_v.append(coef[sel])
    if not out_c:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0)
    return np.concatenate(out_c), np.concatenate(out_j), np.concatenate(out_v)


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
    order: Callable[[], list[int]],
    mins: np.ndarray,
    e_c: np.ndarray,
    e_j: np.ndarray,
    e_v: np.ndarray,
    room: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimums in the order `order()` gives (positions into `mins`): each served when it fits every
    constraint it raises (spec 4.3 step 1). Returns the served mask and the room left.

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
    for q in order():
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
    it (-1: its own demand); `depth` (of each constraint's node) breaks ties. Each round computes, exactly and for every constraint at once,
    the level at which it becomes tight (a piecewise-linear function of t, solved between its
    breakpoints), then applies the tight constraints in level order as long as none of them
    depends on a charger stopped earlier in the same round; the rest is recomputed."""
    n_m = len(mins)
    n_c = len(room)
    stopped = np.zeros(n_m, dtype=bool)
    value = mins.astype(float).copy()
    bind = np.full(n_m, -1, dtype=np.intp)
    # the constraints as seen by this class: room above the minimums, plus the minimums
    cap = room + np.bincount(e_c, weights=e_v * mins[e_j], minlength=n_c)
    t = 0.0
    done_c = np.zeros(n_c, dtype=bool)
    # A constraint's level is recomputed only when one of its members stopped since it was
    # last computed: the others' piecewise-linear functions have not changed.
    dirty = np.ones(n_c, dtype=bool)
    t_c = np.full(n_c, np.inf)
    while True:
        rising_all = ~stopped[e_j]
        if not rising_all.any():
            break
        in_dirty = dirty[e_c]
        fixed_e = in_dirty & ~rising_all
        # fixed part of each constraint: its stopped members
        fixed = np.bincount(e_c[fixed_e], weights=e_v[fixed_e] * value[e_j[fixed_e]], minlength=n_c)
        rising_e = rising_all & in_dirty
        rc, rj, rv = e_c[rising_e], e_j[rising_e], e_v[rising_e]
        lo_, hi_ = mins[rj], dem[rj]
        # state at t: C + t * S over the rising entries
        below = t < lo_
        inside = (~below) & (t < hi_)
        c0 = np.bincount(
            rc, weights=np.where(below, rv * lo_, np.where(inside, 0.0, rv * hi_)), minlength=n_c
        )
        s0 = np.bincount(rc, weights=np.where(inside, rv, 0.0), minlength=n_c)
        g_t = fixed + c0 + t * s0
        t_c[dirty] = np.inf
        now_tight = dirty & (g_t >= cap - _EPS) & ~done_c & (np.bincount(rc, minlength=n_c) > 0)
        # events after t: entering the slope at min, leaving it at demand
        ev_lo = lo_ > t
        ev_hi = hi_ > t
        ev_c = np.concatenate([rc[ev_lo], rc[ev_hi]])
        ev_b = np.concatenate([lo_[ev_lo], hi_[ev_hi]])
        ev_dc = np.concatenate([-rv[ev_lo] * lo_[ev_lo], rv[ev_hi] * hi_[ev_hi]])
        ev_ds = np.concatenate([rv[ev_lo], -rv[ev_hi]])
        if len(ev_c):
            o = np.lexsort((ev_b, ev_c))
            ev_c, ev_b, ev_dc, ev_ds = ev_c[o], ev_b[o], ev_dc[o], ev_ds[o]
            cum_c = np.cumsum(ev_dc)
            cum_s = np.cumsum(ev_ds)
            first = np.searchsorted(ev_c, ev_c, side="left")
            base_c = np.where(first > 0, cum_c[first - 1], 0.0)
            base_s = np.where(first > 0, cum_s[first - 1], 0.0)
            # state before each event (within its constraint)
            prev_c = c0[ev_c] + cum_c - ev_dc - base_c
            prev_s = s0[ev_c] + cum_s - ev_ds - base_s
            g_at = fixed[ev_c] + prev_c + ev_b * prev_s
            hit = np.flatnonzero(g_at >= cap[ev_c] - _EPS)
            if len(hit):
                hc, first_hit = np.unique(ev_c[hit], return_index=True)
                k = hit[first_hit]
                slope = prev_s[k]
                lam = np.where(
                    slope > _EPS,
                    (cap[hc] - fixed[hc] - prev_c[k]) / np.where(slope > _EPS, slope, 1.0),
                    ev_b[k],
                )
                t_c[hc] = np.minimum(np.maximum(lam, t), ev_b[k])
        t_c[now_tight] = t
        t_c[done_c] = np.inf
        finite = np.flatnonzero(np.isfinite(t_c))
        if not len(finite):
            break
        # Level order; constraints tight at the same level (up to float noise) deepest node
        # first, so that the charger is said to be bound by the node nearest to it (as the kW
        # engine says).
        if depth is None:
            order = finite[np.argsort(t_c[finite], kind="stable")]
        else:
            order = finite[np.lexsort((-depth[finite], np.round(t_c[finite], 6)))]
        in_order = np.zeros(n_c, dtype=bool)
        in_order[order] = True
        sel = rising_all & in_order[e_c]
        rc, rj, rv = e_c[sel], e_j[sel], e_v[sel]
        # Apply the tight constraints in level order up to the first one that depends on a
        # charger stopped by an earlier one in this round (its level would be later: it is
        # recomputed in the next round). Vectorised: each rising charger's first constraint
        # in that order (where it has a positive coefficient) is the one that stops it.
        pos = np.full(n_c, n_c + 1, dtype=np.intp)
        pos[order] = np.arange(len(order))
        e_pos = pos[rc]
        raising = rv > 0.0
        first = np.full(n_m, n_c + 1, dtype=np.intp)
        np.minimum.at(first, rj[raising], e_pos[raising])
        # A member stopped earlier matters only if it then holds less than this constraint's
        # level assumed of it (one stopped at its demand or its minimum does not).
        earlier = first[rj] < e_pos
        dependent = np.zeros(len(rj), dtype=bool)
        if earlier.any():
            ej_, fj_ = rj[earlier], first[rj[earlier]]
            held = np.minimum(np.maximum(t_c[order[fj_]], mins[ej_]), dem[ej_])
            assumed = np.minimum(np.maximum(t_c[rc[earlier]], mins[ej_]), dem[ej_])
            dependent[earlier] = held < assumed - _EPS
        cut = int(e_pos[dependent].min()) if dependent.any() else len(order)
        cut = min(max(cut, 1), len(order))  # the first never depends: progress every round
        hit = first < cut
        hit_c = order[first[hit]]
        level = np.minimum(np.maximum(t_c[hit_c], mins[hit]), dem[hit])
        value[hit] = level
        short = level < dem[hit] - _EPS
        bind[np.flatnonzero(hit)[short]] = hit_c[short]
        stopped[hit] = True
        done_c[order[:cut]] = True
        dirty = np.zeros(n_c, dtype=bool)
        dirty[e_c[hit[e_j]]] = True
        dirty &= ~done_c
        t = max(t, float(t_c[order[cut - 1]]))
    rising = ~stopped
    value[rising] = dem[rising]
    return value, bind
