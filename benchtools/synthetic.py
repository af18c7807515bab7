"""Synthetic depots for the balancing engine: benchmark inputs and an LP reference.

`build_engine_input` makes a deterministic depot (same arguments, same input) whose node limits
bind at several levels of the tree, so the engine does real work. `solve_lp` solves the same
allocation as a linear program with scipy's HiGHS; the benchmark times it beside `allocate`, and
the property tests use it as the reference optimum (spec 4.3: with no minimums the allocation is
maximal and its total equals the LP optimum).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from balancing.engine import ChargerInput, EngineInput, LoadInput, NodeInput

_AC_MAX_KW = (7.4, 11.0, 22.0)
_DC_MAX_KW = (50.0, 150.0)
_MIN_KW = 4.14  # 6 A x 3 phases x 230 V
_EPOCH = datetime(2025, 1, 6, 6, 0, tzinfo=UTC)


def _level_sizes(nodes: int, depth: int) -> list[int]:
    """Nodes per level, root first, growing geometrically and summing to `nodes`."""
    depth = max(1, min(depth, nodes))
    if depth == 1:
        return [1]
    # Find the branching factor b with 1 + b + ... + b^(depth-1) close to `nodes`.
    lo, hi = 1.0, float(nodes)
    for _ in range(60):
        b = (lo + hi) / 2
        if sum(b**k for k in range(depth)) < nodes:
            lo = b
        else:
            hi = b
    sizes = [1] + [max(1, round(lo**k)) for k in range(1, depth)]
    sizes[-1] += nodes - sum(sizes)
    # Keep every level at least as wide as the one above so no inner node is left childless.
    for k in range(depth - 1, 0, -1):
        if sizes[k] < sizes[k - 1]:
            sizes[k - 1], sizes[k] = sizes[k], sizes[k - 1]
    return sizes


def build_engine_input(chargers: int, nodes: int, depth: int = 5, seed: int = 1) -> EngineInput:
    """A depot of `nodes` nodes over `depth` levels with `chargers` connected fresh chargers."""
    rng = random.Random(seed)
    sizes = _level_sizes(nodes, depth)
    levels: list[list[str]] = []
    parent_of: dict[str, str | None] = {}
    for lvl, size in enumerate(sizes):
        ids = [f"n{lvl}-{i:04d}" for i in range(size)]
        if lvl == 0:
            ids = ["grid"]
            parent_of["grid"] = None
        else:
            above = levels[-1]
            # Every node of the level above gets a child first, the rest land at random.
            for i, node_id in enumerate(ids):
                parent_of[node_id] = above[i] if i < len(above) else rng.choice(above)
        levels.append(ids)
    has_child = {p for p in parent_of.values() if p is not None}
    leaves = [n for lvl in levels for n in lvl if n not in has_child]

    charger_list: list[ChargerInput] = []
    demand_under: dict[str, float] = dict.fromkeys(parent_of, 0.0)
    min_under: dict[str, float] = dict.fromkeys(parent_of, 0.0)
    for i in range(chargers):
        node_id = leaves[i % len(leaves)] if i < len(leaves) else rng.choice(leaves)
        max_kw = rng.choice(_AC_MAX_KW) if rng.random() < 0.75 else rng.choice(_DC_MAX_KW)
        min_kw = _MIN_KW if rng.random() < 0.5 else 0.0
        requested = round(max_kw * rng.uniform(0.3, 1.2), 1)
        plugged = _EPOCH + timedelta(seconds=rng.randrange(0, 8 * 3600))
        charger_list.append(
            ChargerInput(
                asset_id=f"CH-{i:05d}",
                node_id=node_id,
                max_power_kw=max_kw,
                min_power_kw=min_kw,
                failsafe_power_kw=min_kw,
                priority=rng.choice((0, 0, 1, 2)),
                freshness="FRESH",
                connected=True,
                requested_kw=requested,
                plugged_in_at=plugged.isoformat(),
                last_observed_at=_EPOCH.isoformat(),
            )
        )
        demand = max(min_kw, min(requested, max_kw))
        n: str | None = node_id
        while n is not None:
            demand_under[n] += demand
            min_under[n] += min_kw
            n = parent_of[n]

    loads: list[LoadInput] = []
    site_load_under: dict[str, float] = dict.fromkeys(parent_of, 0.0)
    for i in range(max(1, nodes // 20)):
        node_id = rng.choice(levels[min(1, len(levels) - 1)] + levels[-1])
        kind = "PV" if i % 4 == 3 else "SITE_LOAD"
        power = round(rng.uniform(5.0, 40.0), 1)
        loads.append(
            LoadInput(
                asset_id=f"{'PV' if kind == 'PV' else 'SITE'}-{i:04d}",
                node_id=node_id,
                kind=kind,
                freshness="FRESH",
                power_kw=power,
                last_observed_at=_EPOCH.isoformat(),
                fallback_kw=None if kind == "PV" else round(power * 1.5, 1),
            )
        )
        if kind == "SITE_LOAD":
            n = node_id
            while n is not None:
                site_load_under[n] += power
                n = parent_of[n]

    # Limits, leaves first: a fraction of what the subtree would take, never below what its
    # minimums and site loads need, so limits bind at every level and most minimums are served.
    children: dict[str, list[str]] = {}
    for node_id, parent_id in parent_of.items():
        if parent_id is not None:
            children.setdefault(parent_id, []).append(node_id)
    limit_of: dict[str, float] = {}
    for lvl in reversed(levels):
        for node_id in lvl:
            kids = children.get(node_id)
            wanted = sum(limit_of[k] for k in kids) if kids else demand_under[node_id]
            factor = 0.7 if node_id == "grid" else rng.uniform(0.55, 0.95)
            floor_kw = 1.05 * min_under[node_id] + site_load_under[node_id]
            limit_of[node_id] = round(max(factor * wanted, floor_kw, 1.0), 1)
    node_list: list[NodeInput] = []
    for lvl in levels:
        for node_id in lvl:
            if node_id == "grid":
                source = "MICROGRID_LIMIT"
            else:
                source = rng.choice(("NODE_LIMIT", "PHYSICAL_RATING", "TOU_LIMIT", "NODE_LIMIT"))
            node_list.append(NodeInput(node_id, parent_of[node_id], limit_of[node_id], source))
    return EngineInput(
        nodes=tuple(node_list), loads=tuple(loads), chargers=tuple(charger_list), threshold_s=60
    )


def solve_lp(inp: EngineInput) -> float:
    """The optimal total of the allocation as a linear program (minimums treated as 0)."""
    return solve_lp_problem(lp_problem(inp))


def lp_problem(inp: EngineInput) -> tuple | None:
    """The LP of `solve_lp` as (c, A_ub, b_ub, bounds), built once so a benchmark can time the solve alone.

    Variables: one a_i in [0, d_i] per connected fresh charger asking for power, with
    d_i = min(requested_kw, max_power_kw); one row per node: the sum under it stays within
    max(0, limit - uncontrolled load), uncontrolled load counted as the engine does (spec 4.2,
    a missing fallback counting 0). Maximises the total and returns it.
    """
    import numpy as np
    from scipy.sparse import csr_matrix

    index = {n.node_id: i for i, n in enumerate(inp.nodes)}
    parent = [-1 if n.parent_id is None else index[n.parent_id] for n in inp.nodes]
    paths: dict[int, list[int]] = {}

    def path(i: int) -> list[int]:
        found = paths.get(i)
        if found is None:
            found = paths[i] = [i] if parent[i] < 0 else [i, *path(parent[i])]
        return found

    own = [0.0] * len(inp.nodes)
    for ld in inp.loads:
        if ld.kind not in ("SITE_LOAD", "BATTERY", "PV"):
            continue
        if ld.freshness == "FRESH":
            value = ld.power_kw or 0.0
            own[index[ld.node_id]] += -value if ld.kind == "PV" else value
        elif ld.kind != "PV" and ld.fallback_kw is not None:
            own[index[ld.node_id]] += ld.fallback_kw
    rows: list[int] = []
    cols: list[int] = []
    upper: list[float] = []
    for c in inp.chargers:
        ni = index[c.node_id]
        if c.freshness != "FRESH":
            own[ni] += c.failsafe_power_kw
            continue
        if not _lp_column(c):
            continue
        col = len(upper)
        upper.append(min(c.requested_kw, c.max_power_kw))
        p = path(ni)
        rows.extend(p)
        cols.extend([col] * len(p))
    if not upper:
        return None
    unc = own[:]
    for i in sorted(range(len(inp.nodes)), key=lambda i: -len(path(i))):
        if parent[i] >= 0:
            unc[parent[i]] += unc[i]
    budgets = np.array([max(0.0, n.limit_kw - unc[i]) for i, n in enumerate(inp.nodes)])
    a_ub = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(inp.nodes), len(upper)))
    bounds = np.column_stack((np.zeros(len(upper)), np.array(upper)))
    return -np.ones(len(upper)), a_ub, budgets, bounds


def _lp_column(c: ChargerInput) -> bool:
    """Whether a charger is a variable of the LP: fresh, connected and asking for power."""
    return c.freshness == "FRESH" and c.connected and c.requested_kw > 0.0


def fair_lp_allocation(inp: EngineInput) -> tuple[dict[str, float], int]:
    """The engine's allocation (minimums as 0) computed with a linear-programming solver.

    One LP gives the largest total but not who gets it. The max-min fair split of the engine
    (spec 4.3: priority classes in order, within a class a common level under every node
    budget, capped by each charger's demand) is found the way an LP-based allocator finds it,
    by progressive filling: per class, maximise the level t that every not yet frozen charger
    reaches (a_i >= t) with the frozen ones fixed and the lower classes at 0; freeze those at
    their demand and those under a node that is full at t; solve again until none is left.
    One HiGHS solve per fill level. Returns (asset_id -> kW unrounded, number of solves).
    """
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, vstack

    problem = lp_problem(inp)
    if problem is None:
        return {}, 0
    _, a_nodes, budgets, bounds = problem
    columns = [c for c in inp.chargers if _lp_column(c)]
    n = len(columns)
    demand = bounds[:, 1]
    priority = np.array([c.priority for c in columns])
    value = np.zeros(n)
    # The node rows with a zero column for t.
    node_rows = hstack([a_nodes, csr_matrix((a_nodes.shape[0], 1))]).tocsr()
    members = a_nodes.tocsc()
    solves = 0
    for p in sorted(set(priority.tolist()), reverse=True):
        moving = priority == p
        while moving.any():
            idx = np.flatnonzero(moving)
            k = len(idx)
            # t - a_i <= 0 for every moving charger
            level_rows = csr_matrix(
                (
                    np.concatenate([-np.ones(k), np.ones(k)]),
                    (
                        np.concatenate([np.arange(k), np.arange(k)]),
                        np.concatenate([idx, np.full(k, n)]),
                    ),
                ),
                shape=(k, n + 1),
            )
            lo = value.copy()
            hi = value.copy()
            lo[idx] = 0.0
            hi[idx] = demand[idx]
            var_bounds = np.column_stack((np.append(lo, 0.0), np.append(hi, np.inf)))
            objective = np.zeros(n + 1)
            objective[n] = -1.0
            res = linprog(
                objective,
                A_ub=vstack([node_rows, level_rows]).tocsr(),
                b_ub=np.concatenate([budgets, np.zeros(k)]),
                bounds=var_bounds,
                method="highs",
            )
            solves += 1
            if not res.success:
                raise RuntimeError(f"LP failed: {res.message}")
            t = float(res.x[n])
            # Every moving charger exactly at t is feasible (the constraints only pack): the
            # nodes that are then full stop everyone under them.
            at = value.copy()
            at[idx] = np.minimum(t, demand[idx])
            full = a_nodes @ at >= budgets - 1e-7 * (1.0 + np.abs(budgets))
            under_full = np.asarray(members[full.nonzero()[0], :].sum(axis=0)).ravel()[idx] > 0
            done = under_full | (demand[idx] <= t + 1e-9)
            if not done.any():
                raise RuntimeError("progressive filling made no progress")
            value[idx[done]] = at[idx[done]]
            moving[idx[done]] = False
    return {c.asset_id: float(v) for c, v in zip(columns, value, strict=True)}, solves


def solve_lp_problem(problem: tuple | None) -> float:
    """One HiGHS solve of an `lp_problem`; returns the optimal total kW."""
    from scipy.optimize import linprog

    if problem is None:
        return 0.0
    c, a_ub, budgets, bounds = problem
    res = linprog(c, A_ub=a_ub, b_ub=budgets, bounds=bounds, method="highs")
    if not res.success:
        raise RuntimeError(f"LP failed: {res.message}")
    return float(-res.fun)


def with_departures(inp: EngineInput, seed: int = 1) -> EngineInput:
    """The same depot with a session on every charger (spec 4.3, "Departures"): departures
    between 15 minutes and 10 hours after the cycle, energy needs of 5 to 300 kWh with part of
    it delivered, so that some vehicles are served first, some are at risk, and most fill."""
    from dataclasses import replace

    rng = random.Random(seed)
    now = _EPOCH + timedelta(hours=8)
    chargers = []
    for c in inp.chargers:
        needed = round(rng.uniform(5.0, 300.0), 1)
        chargers.append(
            replace(
                c,
                departure_at=(now + timedelta(seconds=rng.randrange(900, 36_000))).isoformat(),
                energy_needed_kwh=needed,
                energy_delivered_kwh=round(needed * rng.uniform(0.0, 0.6), 1),
            )
        )
    return replace(inp, chargers=tuple(chargers), now=now.isoformat(), departure_guard_s=30.0)


# -- per-phase data (issue 19) -----------------------------------------------------------------


def with_phases(inp: EngineInput, seed: int = 1, *, unbalance: bool = True) -> EngineInput:
    """The same depot with per-phase data: every node a current limit that binds (a fraction of
    its kW limit as amperes, on three phases at 230 V), some an unbalance limit, and a third of
    the chargers single-phase on a random phase (half of the three-phase ones with a
    single-phase EV, learnt from their currents)."""
    from dataclasses import replace

    from balancing.phase_alloc import PhaseCharger, PhaseInput, PhaseNode

    rng = random.Random(seed)
    nodes = []
    for n in inp.nodes:
        amps = n.limit_kw * 1000.0 / (230.0 * 3)
        nodes.append(
            PhaseNode(
                node_id=n.node_id,
                voltage_v=230.0,
                phases=3,
                limit_a=round(amps * rng.uniform(0.6, 1.0), 1),
                limit_a_source=rng.choice(("PHYSICAL_RATING", "NODE_LIMIT")),
                max_unbalance_a=(
                    round(max(16.0, amps * 0.2), 1) if unbalance and rng.random() < 0.2 else None
                ),
            )
        )
    chargers = []
    new_inputs = []
    for c in inp.chargers:
        if rng.random() < 1 / 3:
            p = rng.randrange(3)
            pc = PhaseCharger(c.asset_id, 1, ("L1", "L2", "L3")[p], None, None, (p,))
            max_kw = min(c.max_power_kw, 7.4)
            c = replace(c, max_power_kw=max_kw, min_power_kw=min(c.min_power_kw, 1.38))
        else:
            rotation = rng.choice(("L1L2L3", "L2L3L1", "L3L1L2"))
            drawn = (0, 1, 2)
            if rng.random() < 0.5:
                drawn = (rng.randrange(3),)  # a single-phase EV on a three-phase charger
            pc = PhaseCharger(c.asset_id, 3, rotation, 6.0, None, drawn)
        chargers.append(pc)
        new_inputs.append(c)
    return replace(
        inp,
        chargers=tuple(new_inputs),
        phase=PhaseInput(nodes=tuple(nodes), chargers=tuple(chargers)),
    )


def phase_lp_problem(inp: EngineInput) -> tuple | None:
    """`lp_problem` with the per-phase rows of issue 19: every phase of a node with a current
    limit (sum of the currents of the chargers drawing on it, kW x 1000 / (V x phases drawn),
    within the limit minus the uncontrolled load spread evenly over the node's phases) and
    every ordered pair of phases of a node with `max_unbalance_a` (I_p - I_q within it, with
    the uncontrolled load even). Charger maxima by current apply (`max_current_a`). Written
    apart from the engine's own model so that the two can check each other."""
    import numpy as np
    from scipy.sparse import csr_matrix, vstack

    problem = lp_problem(inp)
    if problem is None or inp.phase is None:
        return problem
    c, a_kw, budgets, bounds = problem
    phase = inp.phase
    by_node = {n.node_id: n for n in phase.nodes}
    by_ch = {pc.asset_id: pc for pc in phase.chargers}
    index = {n.node_id: i for i, n in enumerate(inp.nodes)}
    parent = [-1 if n.parent_id is None else index[n.parent_id] for n in inp.nodes]
    columns = [ch for ch in inp.chargers if _lp_column(ch)]
    # uncontrolled kW per node subtree (as lp_problem): recompute the own part
    own = [0.0] * len(inp.nodes)
    for ld in inp.loads:
        if ld.freshness == "FRESH":
            v = ld.power_kw or 0.0
            own[index[ld.node_id]] += -v if ld.kind == "PV" else v
        elif ld.kind != "PV" and ld.fallback_kw is not None:
            own[index[ld.node_id]] += ld.fallback_kw
    unc_a = np.zeros((len(inp.nodes), 3))
    for i, n in enumerate(inp.nodes):
        pn = by_node[n.node_id]
        unc_a[i, : pn.phases] += own[i] * 1000.0 / (pn.voltage_v * pn.phases)
    depth = [0] * len(inp.nodes)
    for i in range(len(inp.nodes)):
        j = i
        while parent[j] >= 0:
            depth[i] += 1
            j = parent[j]
    for i in sorted(range(len(inp.nodes)), key=lambda i: -depth[i]):
        if parent[i] >= 0:
            unc_a[parent[i]] += unc_a[i]
    rows, cols, vals, rhs = [], [], [], []
    upper = bounds[:, 1].copy()
    row = 0
    row_of: dict[tuple, int] = {}
    for i, n in enumerate(inp.nodes):
        pn = by_node[n.node_id]
        if pn.limit_a is not None:
            for p in range(pn.phases):
                row_of[(i, "p", p)] = row
                rhs.append(max(0.0, pn.limit_a - unc_a[i, p]))
                row += 1
        if pn.max_unbalance_a is not None and pn.phases == 3:
            for p in range(3):
                for q in range(3):
                    if p != q:
                        row_of[(i, "u", p, q)] = row
                        rhs.append(pn.max_unbalance_a - (unc_a[i, p] - unc_a[i, q]))
                        row += 1
    single = [False] * len(inp.nodes)
    for i in sorted(range(len(inp.nodes)), key=lambda i: depth[i]):
        single[i] = by_node[inp.nodes[i].node_id].phases == 1 or (
            parent[i] >= 0 and single[parent[i]]
        )
    for col, ch in enumerate(columns):
        pc = by_ch[ch.asset_id]
        ni = index[ch.node_id]
        # a single-phase node on the way leaves one phase: that node's L1
        drawn = (0,) if single[ni] else (pc.drawn or (0, 1, 2))
        v = by_node[ch.node_id].voltage_v
        amps = 1000.0 / (v * len(drawn))
        if pc.max_current_a is not None:
            upper[col] = min(upper[col], pc.max_current_a / amps)
        j = ni
        while j >= 0:
            for p in drawn:
                r = row_of.get((j, "p", p))
                if r is not None:
                    rows.append(r), cols.append(col), vals.append(amps)
            for p in range(3):
                for q in range(3):
                    r = row_of.get((j, "u", p, q))
                    if r is None:
                        continue
                    coef = amps * ((p in drawn) - (q in drawn))
                    if coef:
                        rows.append(r), cols.append(col), vals.append(coef)
            j = parent[j]
    a_phase = csr_matrix((vals, (rows, cols)), shape=(row, len(columns)))
    bounds = np.column_stack((bounds[:, 0], upper))
    return c, vstack([a_kw, a_phase]).tocsr(), np.concatenate([budgets, np.array(rhs)]), bounds
