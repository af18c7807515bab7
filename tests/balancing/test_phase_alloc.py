"""The per-phase allocation (issue 19): examples and properties on random trees with random
phase assignments (hypothesis, deterministic)."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancing.engine import ChargerInput, EngineInput, LoadInput, NodeInput, allocate
from balancing.phase_alloc import PhaseCharger, PhaseInput, PhaseNode
from benchtools.synthetic import build_engine_input, phase_lp_problem, with_phases

SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
V = 230.0


def feeder(limit_kw=22.0, limit_a=32.0, unbalance=None):
    nodes = (
        NodeInput("grid", None, 500.0, "PHYSICAL_RATING"),
        NodeInput("feeder", "grid", limit_kw, "PHYSICAL_RATING"),
    )
    phase_nodes = (
        PhaseNode("grid", V, 3, None, None),
        PhaseNode("feeder", V, 3, limit_a, "PHYSICAL_RATING", unbalance),
    )
    return nodes, phase_nodes


def ev(asset_id, max_kw=7.4, min_kw=0.0, requested=None):
    return ChargerInput(
        asset_id,
        "feeder",
        max_kw,
        min_kw,
        0.0,
        connected=True,
        requested_kw=max_kw if requested is None else requested,
    )


def run(nodes, phase_nodes, chargers, phase_chargers, loads=()):
    return allocate(
        EngineInput(
            nodes,
            tuple(loads),
            tuple(chargers),
            60,
            phase=PhaseInput(phase_nodes, tuple(phase_chargers)),
        )
    )


def by_id(result):
    return {c.asset_id: c for c in result.chargers}


# -- examples ------------------------------------------------------------------------------------


def test_three_single_phase_evs_on_l1_share_the_32_a_of_l1():
    nodes, phase_nodes = feeder()
    chargers = [ev(f"CH-{i}") for i in (1, 2, 3)]
    wired = [PhaseCharger(f"CH-{i}", 1, "L1", None, None, (0,)) for i in (1, 2, 3)]
    # Without per-phase data the kW model gives each 7.3 kW: 96 A on a 32 A fuse.
    kw_only = allocate(EngineInput(nodes, (), tuple(chargers), 60))
    assert [c.allocated_kw for c in kw_only.chargers] == [7.3, 7.3, 7.3]
    result = run(nodes, phase_nodes, chargers, wired)
    for c in result.chargers:
        assert c.allocated_kw == 2.4  # 32 A / 3 = 10.67 A = 2.45 kW, rounded down
        assert (c.limit_kw, c.limit_a, c.phases) == (2.4, 10.4, 1)
        assert c.reason_codes == ("PHASE_CURRENT_LIMIT",)
        assert c.binding.to_dict() == {
            "node_id": "feeder",
            "limit_source": "PHYSICAL_RATING",
            "limit_kw": 22.0,
            "phase": "L1",
            "limit_a": 32.0,
        }
    assert sum(c.limit_a for c in result.chargers) <= 32.0
    assert result.nodes[1].reason_codes == ("PHASE_CURRENT_LIMIT",)
    assert result.outcome == "CONSTRAINED"
    assert result.reason_codes == ("PHASE_CURRENT_LIMIT",)


def test_phase_rotation_spreads_single_phase_chargers_over_the_phases():
    nodes, phase_nodes = feeder()
    chargers = [ev(f"CH-{i}") for i in (1, 2, 3)]
    rotated = [PhaseCharger(f"CH-{i}", 1, f"L{i}", None, None, (i - 1,)) for i in (1, 2, 3)]
    result = run(nodes, phase_nodes, chargers, rotated)
    # One EV per phase: only the 22 kW of the feeder binds, as without per-phase data.
    assert [c.allocated_kw for c in result.chargers] == [7.3, 7.3, 7.3]
    assert {c.reason_codes for c in result.chargers} == {("PHYSICAL_RATING",)}
    assert [c.limit_a for c in result.chargers] == [31.7, 31.7, 31.7]


def test_a_single_phase_ev_on_a_three_phase_charger_gets_one_phase_worth():
    nodes, phase_nodes = feeder(limit_a=16.0)
    chargers = [ev("CH-3P", max_kw=11.0), ev("CH-1EV", max_kw=11.0)]
    phases = [
        PhaseCharger("CH-3P", 3, "L1L2L3", None, 16.0, (0, 1, 2)),
        # a three-phase charger whose EV draws on its L1 only: the node's L2 (rotation)
        PhaseCharger("CH-1EV", 3, "L2L3L1", None, 16.0, (1,)),
    ]
    result = by_id(run(nodes, phase_nodes, chargers, phases))
    one = result["CH-1EV"]
    assert one.phases == 1
    # L2 carries both: the three-phase EV's and the single-phase EV's current, fairly in kW.
    assert one.reason_codes == ("PHASE_CURRENT_LIMIT",)
    assert one.binding.phase == "L2"
    three = result["CH-3P"]
    assert three.phases == 3
    amps_l2 = one.limit_a + three.limit_a
    assert amps_l2 <= 16.0
    assert one.allocated_kw == three.allocated_kw  # max-min fair in kW


def test_max_current_applies_on_the_phases_the_ev_draws_on():
    nodes, phase_nodes = feeder(limit_kw=50.0, limit_a=63.0)
    chargers = [ev("CH", max_kw=22.0)]
    result = by_id(
        run(nodes, phase_nodes, chargers, [PhaseCharger("CH", 3, "L1L2L3", 6.0, 16.0, (0,))])
    )
    # 16 A on one phase: 3.68 kW, its own maximum (a third of the three-phase 11 kW).
    assert result["CH"].allocated_kw == 3.6
    assert result["CH"].reason_codes == ("ASSET_MAX_POWER",)


def test_unbalance_is_kept_and_said():
    nodes, phase_nodes = feeder(limit_kw=50.0, limit_a=63.0, unbalance=16.0)
    chargers = [ev("CH-1"), ev("CH-3", max_kw=22.0)]
    phases = [
        PhaseCharger("CH-1", 1, "L1", None, None, (0,)),
        PhaseCharger("CH-3", 3, "L1L2L3", None, None, (0, 1, 2)),
    ]
    result = by_id(run(nodes, phase_nodes, chargers, phases))
    single = result["CH-1"]
    # 16 A more on L1 than on L2 and L3: 3.68 kW, whatever the three-phase EV draws.
    assert single.allocated_kw == 3.6
    assert single.reason_codes == ("PHASE_UNBALANCE_LIMIT",)
    assert single.binding.phase in ("L1-L2", "L1-L3")
    assert single.binding.limit_a == 16.0
    assert result["CH-3"].allocated_kw == 22.0
    assert single.limit_a <= 16.0


def test_minimums_are_served_first_and_refused_when_a_phase_is_full():
    nodes, phase_nodes = feeder(limit_a=16.0)
    chargers = [ev(f"CH-{i}", min_kw=1.38) for i in (1, 2, 3)]
    chargers = [
        replace(c, plugged_in_at=f"2025-01-06T07:0{i}:00+00:00") for i, c in enumerate(chargers)
    ]
    wired = [PhaseCharger(c.asset_id, 1, "L1", 6.0, None, (0,)) for c in chargers]
    result = by_id(run(nodes, phase_nodes, chargers, wired))
    # 6 A each: two fit in 16 A, the last plugged in gets nothing.
    assert result["CH-3"].allocated_kw == 0.0
    assert result["CH-3"].reason_codes == ("MIN_POWER_UNSERVED",)
    assert result["CH-1"].allocated_kw >= 1.38 and result["CH-2"].allocated_kw >= 1.38
    assert result["CH-1"].limit_a + result["CH-2"].limit_a <= 16.0


def test_without_current_limits_the_allocation_is_the_kw_one():
    inp = build_engine_input(300, 60, depth=4, seed=5)
    nodes = tuple(PhaseNode(n.node_id, V, 3, None, None) for n in inp.nodes)
    chargers = tuple(
        PhaseCharger(c.asset_id, 3, "L1L2L3", None, None, (0, 1, 2)) for c in inp.chargers
    )
    with_model = allocate(replace(inp, phase=PhaseInput(nodes, chargers)))
    plain = allocate(inp)
    assert [c.allocated_kw for c in with_model.chargers] == [c.allocated_kw for c in plain.chargers]
    assert [c.reason_codes for c in with_model.chargers] == [c.reason_codes for c in plain.chargers]
    assert "phase" not in inp.to_dict()
    assert all("limit_a" not in c.to_dict() for c in plain.chargers)


def test_the_input_snapshot_round_trips_with_phases():
    inp = with_phases(build_engine_input(50, 10, depth=3, seed=2), seed=2)
    again = EngineInput.from_dict(inp.to_dict())
    assert again == inp
    assert allocate(again).to_dict() == allocate(inp).to_dict()


# -- properties ----------------------------------------------------------------------------------


def random_depot(seed: int, *, unbalance: bool) -> EngineInput:
    rng = random.Random(seed)
    n_nodes = rng.randint(2, 7)
    names = [f"n{i}" for i in range(n_nodes)]
    nodes, phase_nodes = [], []
    for i, name in enumerate(names):
        parent = None if i == 0 else names[rng.randrange(i)]
        limit_kw = rng.choice((0.0, 5.0, 11.0, 22.0, 40.0, 80.0, 500.0))
        nodes.append(
            NodeInput(name, parent, limit_kw, rng.choice(("PHYSICAL_RATING", "NODE_LIMIT")))
        )
        phases = 3 if rng.random() < 0.85 else 1
        limit_a = rng.choice((None, 0.0, 6.0, 16.0, 25.0, 32.0, 63.0, 250.0))
        phase_nodes.append(
            PhaseNode(
                name,
                rng.choice((230.0, 220.0)),
                phases,
                limit_a,
                None if limit_a is None else "PHYSICAL_RATING",
                rng.choice((None, None, 0.0, 8.0, 16.0)) if unbalance else None,
            )
        )
    chargers, phase_chargers, loads = [], [], []
    for j in range(rng.randint(1, 12)):
        node = rng.choice(names)
        max_kw = rng.choice((3.7, 7.4, 11.0, 22.0))
        chargers.append(
            ChargerInput(
                f"C{j:02d}",
                node,
                max_kw,
                rng.choice((0.0, 0.0, 1.4, 4.14)),
                0.0,
                priority=rng.choice((0, 0, 1)),
                connected=rng.random() < 0.9,
                requested_kw=rng.choice((0.0, max_kw, max_kw / 2, 30.0)),
                plugged_in_at=f"2025-01-06T07:{rng.randrange(60):02d}:00+00:00",
            )
        )
        if rng.random() < 0.5:
            p = rng.randrange(3)
            pc = PhaseCharger(f"C{j:02d}", 1, f"L{p + 1}", None, rng.choice((None, 16.0)), (p,))
        else:
            drawn = rng.choice(((0, 1, 2), (0,), (1,), (2,), (0, 1)))
            pc = PhaseCharger(
                f"C{j:02d}", 3, "L1L2L3", rng.choice((None, 6.0)), rng.choice((None, 32.0)), drawn
            )
        phase_chargers.append(pc)
    for k in range(rng.randint(0, 2)):
        loads.append(
            LoadInput(
                f"S{k}", rng.choice(names), "SITE_LOAD", "FRESH", rng.choice((1.0, 5.0)), None
            )
        )
    return EngineInput(
        tuple(nodes),
        tuple(loads),
        tuple(chargers),
        60,
        phase=PhaseInput(tuple(phase_nodes), tuple(phase_chargers)),
    )


def phase_currents(inp: EngineInput, result) -> tuple[np.ndarray, np.ndarray]:
    """Per node and phase: the chargers' currents (from their limit_a) and the uncontrolled
    current spread evenly (recomputed here, apart from the engine)."""
    index = {n.node_id: i for i, n in enumerate(inp.nodes)}
    parent = {n.node_id: n.parent_id for n in inp.nodes}
    pn = {n.node_id: n for n in inp.phase.nodes}
    pc = {c.asset_id: c for c in inp.phase.chargers}
    charger_a = np.zeros((len(inp.nodes), 3))
    unc_a = np.zeros((len(inp.nodes), 3))

    def single_on_path(node_id):
        while node_id is not None:
            if pn[node_id].phases == 1:
                return True
            node_id = parent[node_id]
        return False

    for c in result.chargers:
        if not c.allocated_kw:
            continue
        drawn = (0,) if single_on_path(c.node_id) else (pc[c.asset_id].drawn or (0, 1, 2))
        amps = c.allocated_kw * 1000.0 / (pn[c.node_id].voltage_v * len(drawn))
        node = c.node_id
        while node is not None:
            for p in drawn:
                charger_a[index[node], p] += amps
            node = parent[node]
    for ld in inp.loads:
        node = ld.node_id
        share = ld.power_kw * 1000.0 / (pn[node].voltage_v * pn[node].phases)
        own = [share if p < pn[node].phases else 0.0 for p in range(3)]
        while node is not None:
            unc_a[index[node]] += own
            node = parent[node]
    return charger_a, unc_a


@SETTINGS
@given(st.integers(0, 10**9))
def test_no_phase_of_any_node_is_above_its_limit(seed):
    inp = random_depot(seed, unbalance=True)
    result = allocate(inp)
    charger_a, unc_a = phase_currents(inp, result)
    for i, pn in enumerate(inp.phase.nodes):
        if pn.limit_a is not None:
            room = np.maximum(pn.limit_a - unc_a[i], 0.0)
            assert np.all(charger_a[i] <= room + 1e-6), (pn.node_id, charger_a[i], room)
        if pn.max_unbalance_a is not None and pn.phases == 3:
            # The chargers never push a pair of phases further apart than the limit leaves
            # them (an uncontrolled load on a single-phase node below may unbalance it alone).
            for p in range(3):
                for q in range(3):
                    left = pn.max_unbalance_a - (unc_a[i, p] - unc_a[i, q])
                    assert charger_a[i, p] - charger_a[i, q] <= max(left, 0.0) + 1e-6
    # and every kW budget still holds
    for node in result.nodes:
        assert node.allocated_kw + node.uncontrolled_load_kw <= node.effective_limit_kw + 1e-6 or (
            node.allocated_kw == 0.0
        )


@SETTINGS
@given(st.integers(0, 10**9), st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_input_order(seed, shuffler):
    inp = random_depot(seed, unbalance=True)
    nodes, chargers, loads = list(inp.nodes), list(inp.chargers), list(inp.loads)
    pnodes, pchargers = list(inp.phase.nodes), list(inp.phase.chargers)
    for seq in (nodes, chargers, loads, pnodes, pchargers):
        shuffler.shuffle(seq)
    shuffled = replace(
        inp,
        nodes=tuple(nodes),
        chargers=tuple(chargers),
        loads=tuple(loads),
        phase=PhaseInput(tuple(pnodes), tuple(pchargers)),
    )
    assert allocate(shuffled).to_dict() == allocate(inp).to_dict()


def _pareto_lp_total(inp: EngineInput, result) -> float | None:
    """The largest total an LP with the per-phase constraints finds when every charger gets
    at least what the engine gave it (no allocation gives anyone more without someone less)."""
    from scipy.optimize import linprog

    problem = phase_lp_problem(inp)
    if problem is None:
        return None
    c, a_ub, b_ub, bounds = problem
    given_kw = {ch.asset_id: ch.allocated_kw for ch in result.chargers}
    columns = [ch for ch in inp.chargers if ch.connected and ch.requested_kw > 0.0]
    lower = np.array([given_kw[ch.asset_id] for ch in columns])
    bounds = np.column_stack((np.minimum(lower, bounds[:, 1]), bounds[:, 1]))
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert res.success, res.message
    return float(-res.fun)


@SETTINGS
@given(st.integers(0, 10**9))
def test_an_lp_with_per_phase_constraints_finds_no_larger_total_within_the_rounding(seed):
    inp = random_depot(seed, unbalance=False)
    # minimums as 0 (as the LP has them); the LP's uncontrolled load is the engine's
    inp = replace(
        inp,
        chargers=tuple(replace(c, min_power_kw=0.0) for c in inp.chargers),
        phase=replace(
            inp.phase,
            chargers=tuple(replace(pc, min_current_a=None) for pc in inp.phase.chargers),
        ),
    )
    result = allocate(inp)
    best = _pareto_lp_total(inp, result)
    if best is None:
        return
    total = sum(c.allocated_kw or 0.0 for c in result.chargers)
    moving = sum(1 for c in result.chargers if c.allocated_kw and c.allocated_kw > 0.0)
    assert best <= total + ROUNDING_KW * max(moving, 1) + 1e-6


# What rounding down can leave unused, per charger: 0.1 kW, whose current a three-phase charger
# can use three times over (it draws a third of it per phase), at the ratio of the voltages.
ROUNDING_KW = 0.1 * 3 * 230.0 / 220.0


def test_the_benchmark_depot_with_phases_keeps_every_phase_and_is_pareto_optimal():
    inp = with_phases(build_engine_input(400, 80, depth=5, seed=4), seed=4, unbalance=False)
    inp = replace(
        inp,
        chargers=tuple(replace(c, min_power_kw=0.0) for c in inp.chargers),
        phase=replace(
            inp.phase,
            chargers=tuple(replace(pc, min_current_a=None) for pc in inp.phase.chargers),
        ),
    )
    result = allocate(inp)
    c, a_ub, b_ub, _ = phase_lp_problem(inp)
    x = np.array([ch.allocated_kw for ch in result.chargers if ch.requested_kw > 0.0])
    assert np.all(a_ub @ x <= b_ub + 1e-6)
    total = float(x.sum())
    best = _pareto_lp_total(inp, result)
    assert best <= total + ROUNDING_KW * len(x) + 1e-6
