"""Departure-aware allocation and headroom margins in the pure engine (spec 4.3, issue 20)."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from balancing.engine import EngineInput, allocate
from tests.balancing.test_engine import charger, node
from tests.balancing.test_engine_properties import (
    PROPERTY_SETTINGS,
    budgets,
    depots,
    setpoint_sums,
)

NOW = "2026-03-02T18:00:00Z"


def leaves(c, minutes, energy_kwh, delivered=0.0):
    hh, mm = divmod(18 * 60 + minutes, 60)
    dd = 2 + hh // 24
    stamp = f"2026-03-{dd:02d}T{hh % 24:02d}:{mm:02d}:00Z"
    return dataclasses.replace(
        c, departure_at=stamp, energy_needed_kwh=energy_kwh, energy_delivered_kwh=delivered
    )


def run(nodes, chargers, *, guard_s=0.0):
    return allocate(
        EngineInput(tuple(nodes), (), tuple(chargers), 60, now=NOW, departure_guard_s=guard_s)
    )


def by_asset(result):
    return {c.asset_id: c for c in result.chargers}


def test_the_ev_leaving_in_30_minutes_is_served_first_up_to_what_it_needs():
    # 100 kW for two 150 kW EVs: fairly, 50 kW each, and the early one leaves 15 kWh short.
    soon = leaves(charger("CH-A", "grid", 150.0, max_kw=150.0), 30, 40.0)
    late = leaves(charger("CH-B", "grid", 150.0, max_kw=150.0), 8 * 60, 100.0)
    fair = run(
        [node("grid", None, 100)], [dataclasses.replace(c, departure_at=None) for c in (soon, late)]
    )
    assert [c.allocated_kw for c in fair.chargers] == [50.0, 50.0]
    result = run([node("grid", None, 100)], [soon, late])
    got = by_asset(result)
    # 40 kWh in 30 min is 80 kW; the late EV needs 12.5 kW and gets the 20 kW left.
    assert got["CH-A"].allocated_kw == 80.0
    assert got["CH-A"].reason_codes == ("DEPARTURE_PRIORITY",)
    assert got["CH-B"].allocated_kw == 20.0
    assert got["CH-B"].reason_codes == ("NODE_LIMIT", "DEPARTURE_PRIORITY")
    assert got["CH-A"].departure.at_risk is False
    assert got["CH-A"].departure.projected_finish_at == "2026-03-02T18:30:00Z"
    assert got["CH-B"].departure.projected_finish_at == "2026-03-02T23:00:00Z"
    assert "DEPARTURE_PRIORITY" in result.reason_codes
    assert result.outcome == "CONSTRAINED"


def test_an_ev_that_cannot_finish_is_at_risk_and_does_not_starve_the_others():
    # 60 kWh in 15 minutes needs 240 kW from a 150 kW charger: at risk. It is not served first:
    # the three share the 90 kW fairly, 30 kW each, as without departures.
    doomed = leaves(charger("CH-A", "grid", 150.0, max_kw=150.0), 15, 60.0)
    others = [charger(f"CH-{x}", "grid", 150.0, max_kw=150.0) for x in "BC"]
    result = run([node("grid", None, 90)], [doomed, *others])
    got = by_asset(result)
    assert got["CH-A"].departure.at_risk is True
    assert [c.allocated_kw for c in result.chargers] == [30.0, 30.0, 30.0]
    assert got["CH-B"].departure is None


def test_an_at_risk_ev_does_not_push_a_feasible_one_below_its_fair_share_of_what_remains():
    doomed = leaves(charger("CH-A", "grid", 150.0, max_kw=150.0), 15, 60.0)
    soon = leaves(charger("CH-B", "grid", 150.0, max_kw=150.0), 60, 50.0)  # needs 50 kW
    free = charger("CH-C", "grid", 150.0, max_kw=150.0)
    got = by_asset(run([node("grid", None, 120)], [doomed, soon, free]))
    assert got["CH-B"].allocated_kw == 50.0
    # what remains (70 kW) is shared fairly by the at-risk EV and the one without a departure
    assert got["CH-A"].allocated_kw == got["CH-C"].allocated_kw == 35.0


def test_where_not_all_can_finish_the_one_needing_the_most_is_not_served_first():
    # 100 kW, three EVs leaving in an hour needing 60, 50 and 20 kWh: 130 kW to finish all
    # three, 100 kWh to give. Served by slack alone, A (least slack) takes 60 kW, B the 40 kW
    # left and C nothing: only A finishes. Dropping the one that needs the most (A) lets B and
    # C finish; A, not at risk, shares what remains fairly.
    a = leaves(charger("CH-A", "grid", 150.0, max_kw=150.0), 60, 60.0)
    b = leaves(charger("CH-B", "grid", 150.0, max_kw=150.0), 60, 50.0)
    c = leaves(charger("CH-C", "grid", 150.0, max_kw=150.0), 60, 20.0)
    result = run([node("grid", None, 100)], [a, b, c])
    got = by_asset(result)
    assert got["CH-B"].allocated_kw == 50.0
    assert got["CH-C"].allocated_kw == got["CH-A"].allocated_kw == 25.0
    assert got["CH-B"].reason_codes == ("DEPARTURE_PRIORITY",)
    assert got["CH-A"].reason_codes == ("NODE_LIMIT", "DEPARTURE_PRIORITY")
    assert got["CH-A"].departure.at_risk is False
    assert sum(ch.allocated_kw for ch in result.chargers) == 100.0


def _after_a_bus(bus_leaves_in_min):
    # A priority bus holds 60 kW of 100 until it leaves; A (40 kWh) and B (20 kWh) leave in
    # an hour: 60 kW to finish both, 40 kW of room now.
    bus = dataclasses.replace(
        charger("CH-0", "grid", 60.0, max_kw=60.0, priority=1),
        departure_at=leaves(charger("x", "grid", 1.0), bus_leaves_in_min, 1.0).departure_at,
    )
    a = leaves(charger("CH-A", "grid", 150.0, max_kw=150.0), 60, 40.0)
    b = leaves(charger("CH-B", "grid", 150.0, max_kw=150.0), 60, 20.0)
    return by_asset(run([node("grid", None, 100)], [bus, a, b]))


def test_room_given_back_by_a_departure_counts_towards_who_can_finish():
    # The bus leaves in 30 minutes: 40 kW x 1 h + 60 kW x 30 min = 70 kWh for 60 kWh, so both
    # may finish; the one with the least slack (A) is served first.
    got = _after_a_bus(30)
    assert got["CH-0"].allocated_kw == 60.0
    assert got["CH-A"].allocated_kw == 40.0
    assert got["CH-A"].reason_codes == ("DEPARTURE_PRIORITY",)
    # The bus stays longer than they do: 40 kWh for 60, A (40 kWh) is not served first.
    got = _after_a_bus(90)
    assert got["CH-B"].allocated_kw == 20.0
    assert got["CH-B"].reason_codes == ("DEPARTURE_PRIORITY",)
    assert got["CH-A"].allocated_kw == 20.0
    assert got["CH-A"].departure.at_risk is False


def test_without_energy_needs_the_allocation_is_todays():
    chargers = [
        dataclasses.replace(charger(f"CH-{i}", "grid", 40.0 + i, max_kw=50.0), departure_at=NOW)
        for i in range(4)
    ]
    plain = [dataclasses.replace(c, departure_at=None) for c in chargers]
    with_departures = run([node("grid", None, 120)], chargers)
    today = allocate(EngineInput((node("grid", None, 120),), (), tuple(plain), 60))
    assert [(c.allocated_kw, c.reason_codes) for c in with_departures.chargers] == [
        (c.allocated_kw, c.reason_codes) for c in today.chargers
    ]


def test_a_full_vehicle_is_finished_now_and_never_at_risk():
    done = leaves(charger("CH-A", "grid", 5.0, max_kw=50.0), 30, 20.0, delivered=25.0)
    got = by_asset(run([node("grid", None, 100)], [done]))["CH-A"]
    assert got.departure.at_risk is False
    assert got.departure.projected_finish_at == "2026-03-02T18:00:00Z"
    assert got.departure.energy_delivered_kwh == 25.0


def test_the_guard_plans_to_finish_before_the_departure():
    ev = leaves(charger("CH-A", "grid", 150.0, max_kw=150.0), 60, 50.0)
    other = charger("CH-B", "grid", 150.0, max_kw=150.0)
    got = by_asset(run([node("grid", None, 100)], [ev, other], guard_s=600))
    # 50 kWh in 50 minutes: 60 kW
    assert got["CH-A"].allocated_kw == 60.0


def test_a_node_margin_comes_off_the_budget_and_is_shown_with_its_reason():
    basis = {"mode": "STATIC", "static_kw": 10.0}
    root = dataclasses.replace(node("grid", None, 100), margin_kw=10.0, margin_basis=basis)
    result = run([root], [charger("CH-A", "grid", 150.0, max_kw=150.0)])
    assert result.chargers[0].allocated_kw == 90.0
    grid = result.nodes[0]
    assert grid.margin_kw == 10.0 and grid.margin_basis == basis
    assert grid.headroom_kw == 10.0
    assert grid.to_dict()["headroom_margin_kw"] == 10.0
    assert "headroom_margin" not in run([node("grid", None, 100)], []).nodes[0].to_dict()


# ---- properties --------------------------------------------------------------------------------

SESSION = st.tuples(
    st.integers(0, 3),  # none, departure only, energy only, both
    st.integers(-30, 24 * 60),  # minutes to departure
    st.integers(0, 3000),  # energy needed (0.1 kWh)
    st.integers(0, 1000),  # delivered (0.1 kWh)
)


@st.composite
def with_sessions(draw, *, energy=True, margins=True):
    inp = draw(depots(external=False))
    chargers = []
    for c in inp.chargers:
        kind, minutes, needed, delivered = draw(SESSION)
        if not energy:
            kind &= 1
        if kind & 1:
            c = leaves(c, minutes, max(needed, 1) / 10, delivered / 10)
            if not kind & 2:
                c = dataclasses.replace(c, energy_needed_kwh=None, energy_delivered_kwh=0.0)
        elif kind & 2:
            c = dataclasses.replace(c, energy_needed_kwh=max(needed, 1) / 10)
        chargers.append(c)
    nodes = inp.nodes
    if margins:
        cuts = draw(st.lists(st.integers(0, 200), min_size=len(nodes), max_size=len(nodes)))
        nodes = tuple(
            dataclasses.replace(n, margin_kw=m / 10, margin_basis={"mode": "STATIC"}) if m else n
            for n, m in zip(nodes, cuts, strict=True)
        )
    guard = draw(st.sampled_from((0.0, 120.0, 900.0)))
    return EngineInput(nodes, inp.loads, tuple(chargers), 60, now=NOW, departure_guard_s=guard)


def _allocations(result):
    return [(c.asset_id, c.allocated_kw, c.reason_codes, c.binding) for c in result.chargers]


@PROPERTY_SETTINGS
@given(with_sessions(energy=False, margins=False))
def test_with_departures_unknown_the_allocation_is_exactly_todays(inp):
    today = EngineInput(
        inp.nodes,
        inp.loads,
        tuple(
            dataclasses.replace(c, departure_at=None, energy_needed_kwh=None) for c in inp.chargers
        ),
        inp.threshold_s,
    )
    a, b = allocate(inp), allocate(today)
    assert _allocations(a) == _allocations(b)
    assert a.nodes == b.nodes and a.reason_codes == b.reason_codes and a.outcome == b.outcome


@PROPERTY_SETTINGS
@given(with_sessions())
def test_with_departures_and_margins_no_budget_is_exceeded_and_headroom_is_never_negative(inp):
    result = allocate(inp)
    budget = budgets(inp)
    margin = {n.node_id: n.margin_kw for n in inp.nodes}
    for node_id, total in setpoint_sums(inp, result).items():
        assert total <= max(0.0, budget[node_id] - margin[node_id]) + 1e-9, node_id
    for n in result.nodes:
        assert n.headroom_kw >= 0.0
        assert n.margin_kw is None or n.margin_kw >= 0.0
    inputs = {c.asset_id: c for c in inp.chargers}
    for out in result.chargers:
        c = inputs[out.asset_id]
        if out.departure is not None and out.departure.at_risk:
            assert c.departure_at is not None and c.energy_needed_kwh is not None
        if "DEPARTURE_PRIORITY" in out.reason_codes:
            assert any(x.departure_at and x.energy_needed_kwh for x in inp.chargers)


@PROPERTY_SETTINGS
@given(with_sessions(), st.integers(0, 2**32 - 1))
def test_with_departures_the_result_does_not_depend_on_input_order(inp, seed):
    from tests.balancing.test_engine_properties import shuffled

    mixed = shuffled(inp, seed)
    mixed = dataclasses.replace(mixed, now=inp.now, departure_guard_s=inp.departure_guard_s)
    assert allocate(mixed) == allocate(inp)


@PROPERTY_SETTINGS
@given(with_sessions())
def test_the_input_snapshot_replays_to_the_same_result(inp):
    assert allocate(EngineInput.from_dict(inp.to_dict())) == allocate(inp)
