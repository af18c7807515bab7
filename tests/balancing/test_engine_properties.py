"""Properties of the balancing engine on random depots (hypothesis, deterministic)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancing.engine import (
    REASON_PRECEDENCE,
    ChargerInput,
    EngineInput,
    EngineResult,
    LoadInput,
    NodeInput,
    allocate,
)
from benchtools.synthetic import fair_lp_allocation, solve_lp

PROPERTY_SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NAMES = [f"{p}{i}" for p, i in zip("kdfbmhacjglein", range(14), strict=True)] + ["root"]
SOURCES = ("PHYSICAL_RATING", "NODE_LIMIT", "TOU_LIMIT", "MICROGRID_LIMIT", "OPERATING_ENVELOPE")
STAMPS = (
    None,
    "2025-01-06T07:00:00+00:00",
    "2025-01-06T07:05:00+00:00",
    "2025-01-06T08:00:00+00:00",
)
LIMIT_CODES = frozenset(
    ("OPERATING_ENVELOPE_LIMIT", "MICROGRID_LIMIT", "TOU_LIMIT", "NODE_LIMIT", "PHYSICAL_RATING")
)


def kw(low: int, high: int, scale: int = 10):
    return st.integers(low, high).map(lambda x: x / scale)


# Strategies are built once: building them inside the composite costs more than the engine.
PICK = st.integers(0, 2**16)  # an index, taken modulo the number of choices
LIMITS = st.one_of(st.just(0.0), kw(0, 200_000, 1000), kw(0, 600))
SOURCE = st.sampled_from(SOURCES)
CHARGER_FIELDS = st.tuples(
    st.sampled_from((3.7, 7.4, 11.0, 22.0, 50.0)),  # max
    st.sampled_from((0.0, 1.4, 4.14, 6.0)),  # min
    st.integers(0, 2),  # failsafe: min, 0 or 3 kW
    st.integers(0, 2),  # priority
    st.sampled_from(("FRESH",) * 8 + ("STALE", "MISSING")),
    st.integers(0, 7),  # connected unless 0
    st.one_of(st.just(0.0), kw(0, 700), kw(0, 70_000, 1000)),  # requested
    st.sampled_from(STAMPS),
    PICK,  # node
)
LOAD_FIELDS = st.tuples(
    st.sampled_from(("SITE_LOAD", "BATTERY", "PV")),
    st.sampled_from(("FRESH", "FRESH", "STALE", "MISSING")),
    kw(-300, 500),  # power (made >= 0 but for batteries)
    kw(0, 500),  # fallback
    st.integers(0, 4),  # no fallback when 0
    PICK,  # node
)


@st.composite
def depots(draw, *, minimums=True, degraded=True, external=True) -> EngineInput:
    """A random tree of at most 15 nodes with at most 30 chargers and a few loads."""
    n_nodes = draw(st.integers(1, 15))
    ids = draw(st.permutations(NAMES))[:n_nodes]
    shape = draw(
        st.lists(
            st.tuples(PICK, LIMITS, SOURCE, st.integers(0, 9)), min_size=n_nodes, max_size=n_nodes
        )
    )
    nodes = [
        NodeInput(
            node_id=node_id,
            parent_id=None if i == 0 else ids[pick % i],
            limit_kw=limit,
            limit_source=source,
            external_control=external and ext == 0,
        )
        for i, (node_id, (pick, limit, source, ext)) in enumerate(zip(ids, shape, strict=True))
    ]
    chargers = []
    for i, fields in enumerate(draw(st.lists(CHARGER_FIELDS, max_size=30))):
        max_kw, min_kw, failsafe, priority, freshness, connected, requested, stamp, pick = fields
        min_kw = min(min_kw, max_kw) if minimums else 0.0
        chargers.append(
            ChargerInput(
                asset_id=f"CH-{i:02d}",
                node_id=ids[pick % n_nodes],
                max_power_kw=max_kw,
                min_power_kw=min_kw,
                failsafe_power_kw=(min_kw, 0.0, 3.0)[failsafe],
                priority=priority,
                freshness=freshness if degraded else "FRESH",
                connected=connected > 0,
                requested_kw=requested,
                plugged_in_at=stamp,
                last_observed_at=STAMPS[1],
            )
        )
    loads = []
    for i, fields in enumerate(draw(st.lists(LOAD_FIELDS, max_size=4))):
        kind, freshness, power, fallback, no_fallback, pick = fields
        if not degraded:
            freshness = "FRESH"
        if kind != "BATTERY":
            power = abs(power)
        if degraded and kind != "PV" and no_fallback == 0:
            fallback = None
        loads.append(
            LoadInput(
                asset_id=f"LD-{i}",
                node_id=ids[pick % n_nodes],
                kind=kind,
                freshness=freshness,
                power_kw=None if freshness == "MISSING" else power,
                last_observed_at=None if freshness == "MISSING" else STAMPS[1],
                fallback_kw=fallback,
            )
        )
    return EngineInput(tuple(nodes), tuple(loads), tuple(chargers), threshold_s=60)


def subtree_members(inp: EngineInput) -> dict[str, set[str]]:
    """node_id -> every node_id in its subtree (itself included)."""
    parent = {n.node_id: n.parent_id for n in inp.nodes}
    members: dict[str, set[str]] = {n.node_id: set() for n in inp.nodes}
    for node_id in parent:
        current: str | None = node_id
        while current is not None:
            members[current].add(node_id)
            current = parent[current]
    return members


def budgets(inp: EngineInput) -> dict[str, float]:
    """limit - uncontrolled load per node, computed independently of the engine (spec 4.2)."""
    members = subtree_members(inp)
    own: dict[str, float] = {n.node_id: 0.0 for n in inp.nodes}
    for ld in inp.loads:
        if ld.freshness == "FRESH":
            own[ld.node_id] += -(ld.power_kw or 0.0) if ld.kind == "PV" else (ld.power_kw or 0.0)
        elif ld.kind != "PV" and ld.fallback_kw is not None:
            own[ld.node_id] += ld.fallback_kw
    for c in inp.chargers:
        if c.freshness != "FRESH":
            own[c.node_id] += c.failsafe_power_kw
    return {n.node_id: n.limit_kw - sum(own[m] for m in members[n.node_id]) for n in inp.nodes}


def demand(c: ChargerInput) -> float:
    return max(c.min_power_kw, min(c.requested_kw, c.max_power_kw))


def shuffled(inp: EngineInput, seed: int) -> EngineInput:
    rng = random.Random(seed)
    nodes, loads, chargers = list(inp.nodes), list(inp.loads), list(inp.chargers)
    rng.shuffle(nodes)
    rng.shuffle(loads)
    rng.shuffle(chargers)
    return EngineInput(tuple(nodes), tuple(loads), tuple(chargers), inp.threshold_s)


def setpoint_sums(inp: EngineInput, result: EngineResult) -> dict[str, float]:
    """Sum of the setpoints the product gives under each node (fixed loads excluded)."""
    members = subtree_members(inp)
    fresh = {c.asset_id for c in inp.chargers if c.freshness == "FRESH"}
    sums = {}
    for node_id, below in members.items():
        sums[node_id] = sum(
            c.allocated_kw
            for c in result.chargers
            if c.node_id in below and c.asset_id in fresh and c.allocated_kw is not None
        )
    return sums


@PROPERTY_SETTINGS
@given(depots(external=False))
def test_no_node_budget_is_ever_exceeded(inp):
    result = allocate(inp)
    budget = budgets(inp)
    for node_id, total in setpoint_sums(inp, result).items():
        assert total <= max(0.0, budget[node_id]) + 1e-9, node_id
    for n in result.nodes:
        assert n.headroom_kw >= 0.0


@PROPERTY_SETTINGS
@given(depots())
def test_every_admitted_charger_gets_at_least_its_minimum_and_at_most_its_demand(inp):
    result = allocate(inp)
    inputs = {c.asset_id: c for c in inp.chargers}
    for out in result.chargers:
        c = inputs[out.asset_id]
        codes = set(out.reason_codes)
        assert list(out.reason_codes) == sorted(codes, key=REASON_PRECEDENCE.index)
        if c.freshness != "FRESH" or not c.connected or c.requested_kw <= 0.0:
            continue
        if codes & {"FAILSAFE_TELEMETRY_UNAVAILABLE", "EXTERNAL_CONTROL"}:
            continue
        if codes == {"MIN_POWER_UNSERVED"}:
            assert out.allocated_kw == 0.0
            continue
        assert c.min_power_kw - 1e-9 <= out.allocated_kw <= demand(c) + 1e-9
        # stopped by a full node: that node is named, and it is on the charger's path
        if codes & LIMIT_CODES:
            assert out.binding is not None
            assert c.node_id in subtree_members(inp)[out.binding.node_id]
        else:
            assert out.binding is None
            assert codes in ({"DEMAND_MET"}, {"ASSET_MAX_POWER"})


@PROPERTY_SETTINGS
@given(depots(), st.integers(0, 2**32 - 1))
def test_the_result_does_not_depend_on_input_order(inp, seed):
    assert allocate(shuffled(inp, seed)) == allocate(inp)


@PROPERTY_SETTINGS
@given(depots(minimums=False, degraded=False, external=False))
def test_without_minimums_the_allocation_is_maximal_and_matches_the_lp_optimum(inp):
    result = allocate(inp)
    members = subtree_members(inp)
    inputs = {c.asset_id: c for c in inp.chargers}
    budget = budgets(inp)
    sums = setpoint_sums(inp, result)
    steered = [
        c
        for c in result.chargers
        if inputs[c.asset_id].connected and inputs[c.asset_id].requested_kw > 0
    ]
    for out in steered:
        c = inputs[out.asset_id]
        if out.allocated_kw >= int(demand(c) * 10 + 1e-9) / 10 - 1e-9:
            continue  # at its demand, up to the rounding to 0.1 kW
        # Below its demand: some node on its path is full, up to the rounding of the
        # setpoints under it (less than 0.1 kW each).
        slack = []
        for node_id, below in members.items():
            if c.node_id in below:
                count = sum(1 for o in steered if o.node_id in below)
                slack.append(max(0.0, budget[node_id]) - sums[node_id] - 0.1 * count)
        assert min(slack) <= 1e-6, out
    optimum = solve_lp(inp)
    total = sum(out.allocated_kw for out in steered)
    assert total <= optimum + 1e-6
    assert total >= optimum - 0.1 * len(steered) - 1e-6


@PROPERTY_SETTINGS
@given(depots(minimums=False, degraded=False, external=False))
def test_the_allocation_is_the_fair_one_an_lp_solver_finds(inp):
    """Against an independent reference: HiGHS, one solve per fill level (no minimums)."""
    expected, solves = fair_lp_allocation(inp)
    steered = [c for c in inp.chargers if c.connected and c.requested_kw > 0]
    assert solves <= 2 * len(steered) + 1
    for out in allocate(inp).chargers:
        if out.asset_id in expected:
            want = expected[out.asset_id]
            assert want - 0.1 - 1e-6 <= out.allocated_kw <= want + 1e-6, (out, want)


def progressive_filling(inp: EngineInput) -> dict[str, float]:
    """Spec 4.3 written the slow, obvious way: minimums in order, then per priority class raise
    one common level event by event, freezing chargers at their demand or under a full node.
    Fresh, measured depots only (no fallback, no fail safe)."""
    members = subtree_members(inp)
    budget = {n: max(0.0, b) for n, b in budgets(inp).items()}
    active = [c for c in inp.chargers if c.connected and c.requested_kw > 0.0]
    alloc = {c.asset_id: 0.0 for c in active}

    def under(c: ChargerInput, node_id: str) -> bool:
        return c.node_id in members[node_id]

    def used(node_id: str) -> float:
        return sum(alloc[c.asset_id] for c in active if under(c, node_id))

    def value(c: ChargerInput, level: float) -> float:
        return min(max(level, c.min_power_kw), demand(c))

    def load_at(node_id: str, moving: list[ChargerInput], level: float) -> float:
        mine = [c for c in moving if under(c, node_id)]
        fixed = used(node_id) - sum(alloc[c.asset_id] for c in mine)
        return fixed + sum(value(c, level) for c in mine)

    admitted = []
    order = sorted(
        active,
        key=lambda c: (-c.priority, c.plugged_in_at is None, c.plugged_in_at or "", c.asset_id),
    )
    for c in order:
        if all(used(n) + c.min_power_kw <= budget[n] + 1e-9 for n in members if under(c, n)):
            alloc[c.asset_id] = c.min_power_kw
            admitted.append(c)
    for priority in sorted({c.priority for c in admitted}, reverse=True):
        moving = [c for c in admitted if c.priority == priority]
        level = 0.0
        while moving:
            top = max(demand(c) for c in moving)
            events = [demand(c) for c in moving]
            full_at = {}
            for node_id in members:
                if load_at(node_id, moving, top) <= budget[node_id] + 1e-9:
                    continue
                lo, hi = level, top
                for _ in range(200):
                    mid = (lo + hi) / 2
                    if load_at(node_id, moving, mid) >= budget[node_id]:
                        hi = mid
                    else:
                        lo = mid
                full_at[node_id] = hi
                events.append(hi)
            level = min(events)
            for c in moving:
                alloc[c.asset_id] = value(c, level)
            full = [n for n, at in full_at.items() if at <= level + 1e-9]
            moving = [
                c
                for c in moving
                if demand(c) > level + 1e-12 and not any(under(c, n) for n in full)
            ]
    return alloc


@PROPERTY_SETTINGS
@given(depots(degraded=False, external=False))
def test_the_allocation_is_that_of_a_straightforward_progressive_filling(inp):
    expected = progressive_filling(inp)
    for out in allocate(inp).chargers:
        if out.asset_id in expected:
            want = expected[out.asset_id]
            # the engine rounds down to 0.1 kW (never below the minimum)
            assert want - 0.1 - 1e-6 <= out.allocated_kw <= want + 1e-6, (out, want)
