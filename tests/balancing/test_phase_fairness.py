"""Spec 4.3, "Phases", the decision on the LP property: across phases max-min fairness and the
largest total are different allocations (the example of the spec), and the engine keeps the
fair one."""

from __future__ import annotations

from scipy.optimize import linprog

from balancing.engine import ChargerInput, EngineInput, NodeInput, allocate
from balancing.phase_alloc import PhaseCharger, PhaseInput, PhaseNode


def test_two_evs_on_l1_and_a_three_phase_ev_share_l1_fairly_not_for_the_largest_total():
    nodes = (
        NodeInput("grid", None, 500.0, "PHYSICAL_RATING"),
        NodeInput("feeder", "grid", 22.0, "PHYSICAL_RATING"),
    )
    phase_nodes = (
        PhaseNode("grid", 230.0, 3, None, None),
        PhaseNode("feeder", 230.0, 3, 32.0, "PHYSICAL_RATING"),
    )
    chargers = tuple(
        ChargerInput(name, "feeder", 22.0, 0.0, 0.0, connected=True, requested_kw=22.0)
        for name in ("A", "B", "C")
    )
    wired = (
        PhaseCharger("A", 1, "L1", None, None, (0,)),
        PhaseCharger("B", 1, "L1", None, None, (0,)),
        PhaseCharger("C", 3, "L1L2L3", None, None, (0, 1, 2)),
    )
    result = allocate(EngineInput(nodes, (), chargers, 60, phase=PhaseInput(phase_nodes, wired)))
    got = {c.asset_id: c.allocated_kw for c in result.chargers}
    # L1 full at 32 A x 230 V / (2 + 1/3) = 3.154 kW each, rounded down
    assert got == {"A": 3.1, "B": 3.1, "C": 3.1}
    assert all("PHASE_CURRENT_LIMIT" in c.reason_codes for c in result.chargers)
    # The LP's largest total: the feeder's 22 kW, nearly all to the three-phase EV.
    a_per_kw_1 = 1000.0 / 230.0
    a_per_kw_3 = 1000.0 / (3 * 230.0)
    rows = [
        [a_per_kw_1, a_per_kw_1, a_per_kw_3],  # L1
        [0.0, 0.0, a_per_kw_3],  # L2
        [0.0, 0.0, a_per_kw_3],  # L3
        [1.0, 1.0, 1.0],  # kW
    ]
    lp = linprog([-1.0, -1.0, -1.0], A_ub=rows, b_ub=[32.0, 32.0, 32.0, 22.0], bounds=[(0, 22)] * 3)
    assert lp.success
    assert round(-lp.fun, 6) == 22.0
    # (L1 leaves the single-phase EVs a few hundredths of a kW beside it)
    assert lp.x[2] > 21.9 and lp.x[0] + lp.x[1] < 0.1
    # far above the fair total, by more than any rounding
    assert -lp.fun > sum(got.values()) + 3 * 0.1 * 3
