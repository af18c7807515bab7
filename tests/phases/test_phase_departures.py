"""Departures (issue 20) in cycles with per-phase data (issue 19): within each priority class,
after the minimums, least slack first up to what each needs to finish on time, under every
phase, kW and unbalance limit; then max-min fair (spec 4.3, "Phases" and "Departures")."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancing.codes import sort_reasons
from balancing.engine import EngineInput, allocate
from balancing.phase_alloc import PhaseCharger, PhaseInput
from tests.balancing.test_departures import NOW, leaves
from tests.balancing.test_phase_alloc import ev, feeder, phase_currents, random_depot


def run(chargers, wired, *, unbalance=None):
    nodes, phase_nodes = feeder(unbalance=unbalance)
    return allocate(
        EngineInput(
            nodes,
            (),
            tuple(chargers),
            60,
            phase=PhaseInput(phase_nodes, tuple(wired)),
            now=NOW,
            departure_guard_s=0.0,
        )
    )


def on_l1(*names):
    return [PhaseCharger(name, 1, "L1", None, None, (0,)) for name in names]


def by_id(result):
    return {c.asset_id: c for c in result.chargers}


HELD_BY_PHASE = sort_reasons(("PHASE_CURRENT_LIMIT", "DEPARTURE_PRIORITY"))


def test_the_ev_leaving_first_is_served_first_on_a_full_phase():
    chargers = [ev("CH-1"), ev("CH-2"), ev("CH-3")]
    fair = by_id(run(chargers, on_l1("CH-1", "CH-2", "CH-3")))
    assert [fair[n].allocated_kw for n in ("CH-1", "CH-2", "CH-3")] == [2.4, 2.4, 2.4]
    # CH-1 leaves in an hour and needs 4 kWh: 4.0 kW (17.4 A of L1's 32 A) first, the
    # 14.6 A left shared by the other two (1.68 kW each, rounded down).
    chargers[0] = leaves(chargers[0], 60, 4.0)
    result = run(chargers, on_l1("CH-1", "CH-2", "CH-3"))
    got = by_id(result)
    assert got["CH-1"].allocated_kw == 4.0
    assert got["CH-1"].reason_codes == ("DEPARTURE_PRIORITY",)
    assert got["CH-1"].departure.projected_finish_at == "2026-03-02T19:00:00Z"
    for name in ("CH-2", "CH-3"):
        assert got[name].allocated_kw == 1.6
        assert got[name].reason_codes == HELD_BY_PHASE
        assert (got[name].binding.phase, got[name].binding.limit_a) == ("L1", 32.0)
    # every phase within its 32 A
    assert sum(c.limit_a for c in result.chargers) <= 32.0


def test_least_slack_first_when_the_grants_do_not_all_fit():
    # L1 carries 7.36 kW. CH-1 needs 6.0 kW (3 kWh in 30 min, slack 341 s), CH-2 5.4 kW
    # (4 kWh in 45 min, slack 754 s): CH-1 gets its grant, CH-2 what is left of L1.
    chargers = [leaves(ev("CH-1"), 30, 3.0), leaves(ev("CH-2"), 45, 4.0)]
    got = by_id(run(chargers, on_l1("CH-1", "CH-2")))
    assert got["CH-1"].allocated_kw == 6.0
    assert got["CH-2"].allocated_kw == 1.3  # 7.36 - 6.0, rounded down
    assert got["CH-1"].reason_codes == got["CH-2"].reason_codes == ("DEPARTURE_PRIORITY",)
    # the other way round when CH-2 has less slack
    chargers = [leaves(ev("CH-1"), 60, 3.0), leaves(ev("CH-2"), 45, 4.0)]
    got = by_id(run(chargers, on_l1("CH-1", "CH-2")))
    assert got["CH-2"].allocated_kw == 5.4
    assert got["CH-1"].allocated_kw == 1.9  # 7.36 - 5.4 = 1.96


def test_a_grant_on_one_phase_leaves_the_other_phases_alone():
    # CH-1 on L1 is served first; CH-2 on L2 is not limited by L1 at all.
    chargers = [leaves(ev("CH-1"), 60, 4.0), ev("CH-2"), ev("CH-3")]
    wired = [*on_l1("CH-1", "CH-3"), PhaseCharger("CH-2", 1, "L2", None, None, (1,))]
    got = by_id(run(chargers, wired))
    assert got["CH-1"].allocated_kw == 4.0
    assert got["CH-2"].allocated_kw == 7.3  # 7.36 kW of L2 alone, rounded down
    assert got["CH-2"].reason_codes == ("PHASE_CURRENT_LIMIT",)
    assert got["CH-3"].allocated_kw == 3.3  # 7.36 - 4.0 = 3.36 on L1
    assert got["CH-3"].reason_codes == HELD_BY_PHASE


def test_an_ev_that_cannot_finish_is_not_served_first():
    # 5 kWh in 10 minutes needs 30 kW: at risk, it shares fairly.
    chargers = [leaves(ev("CH-1"), 10, 5.0), ev("CH-2"), ev("CH-3")]
    got = by_id(run(chargers, on_l1("CH-1", "CH-2", "CH-3")))
    assert [got[n].allocated_kw for n in ("CH-1", "CH-2", "CH-3")] == [2.4, 2.4, 2.4]
    assert got["CH-1"].departure.at_risk is True
    assert "DEPARTURE_PRIORITY" not in got["CH-1"].reason_codes


@settings(
    derandomize=True,
    database=None,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.integers(0, 10**9))
def test_grants_keep_every_phase_and_unbalance_within_its_limit(seed):
    inp = random_depot(seed, unbalance=True)
    rng = random.Random(seed)
    chargers = tuple(
        leaves(c, rng.randrange(5, 600), rng.choice((1.0, 5.0, 20.0))) if rng.random() < 0.6 else c
        for c in inp.chargers
    )
    inp = dataclasses.replace(inp, chargers=chargers, now=NOW, departure_guard_s=0.0)
    result = allocate(inp)
    charger_a, unc_a = phase_currents(inp, result)
    for i, pn in enumerate(inp.phase.nodes):
        if pn.limit_a is not None:
            room = np.maximum(pn.limit_a - unc_a[i], 0.0)
            assert np.all(charger_a[i] <= room + 1e-6), (pn.node_id, charger_a[i], room)
        if pn.max_unbalance_a is not None and pn.phases == 3:
            for p in range(3):
                for q in range(3):
                    left = pn.max_unbalance_a - (unc_a[i, p] - unc_a[i, q])
                    assert charger_a[i, p] - charger_a[i, q] <= max(left, 0.0) + 1e-6
    for node in result.nodes:
        assert node.allocated_kw + node.uncontrolled_load_kw <= node.effective_limit_kw + 1e-6 or (
            node.allocated_kw == 0.0
        )
    # served first: at least its grant's worth, or held at it
    for c in result.chargers:
        if c.reason_codes == ("DEPARTURE_PRIORITY",):
            assert c.allocated_kw is not None and c.allocated_kw > 0.0
