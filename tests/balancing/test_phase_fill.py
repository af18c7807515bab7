"""The per-phase fill (spec 4.3, "Phases") against progressive filling one constraint at a time
(tests/balancing/phase_fill_reference.py): the same levels and the same bindings, on every
priority class of random trees with random phase assignments and unbalance limits, and of the
benchmark's depots."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancing import phase_alloc
from balancing.engine import allocate
from benchtools.synthetic import build_engine_input, with_phases

from .phase_fill_reference import reference_fill
from .test_phase_alloc import random_depot


def fills_of(inp) -> list[tuple]:
    """The arguments of every `fill` the engine makes for `inp` (one per priority class)."""
    calls = []
    fill = phase_alloc.fill

    def recording(*args):
        calls.append(args)
        return fill(*args)

    phase_alloc.fill = recording
    try:
        allocate(inp)
    finally:
        phase_alloc.fill = fill
    return calls


def assert_same_as_reference(calls) -> None:
    for args in calls:
        value, bind = phase_alloc.fill(*args)
        ref_value, ref_bind = reference_fill(*args)
        np.testing.assert_allclose(value, ref_value, rtol=0.0, atol=1e-7)
        np.testing.assert_array_equal(bind, ref_bind)


@settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.integers(0, 10**9), st.booleans())
def test_the_fill_is_progressive_filling_one_constraint_at_a_time(seed, unbalance):
    calls = fills_of(random_depot(seed, unbalance=unbalance))
    assert_same_as_reference(calls)


@pytest.mark.parametrize("seed", range(8))
def test_the_fill_of_benchmark_depots_is_progressive_filling(seed):
    inp = with_phases(
        build_engine_input(60 + 20 * seed, 12 + 4 * seed, depth=3 + seed % 3, seed=seed),
        seed=seed,
        unbalance=seed % 2 == 0,
    )
    calls = fills_of(inp)
    assert calls
    assert_same_as_reference(calls)


def test_a_charger_that_lowers_an_unbalance_makes_it_tight_sooner():
    """Two chargers on L1 and L2 under one unbalance limit: the L2 charger stops at 1.38 kW
    (its own phase limit), after which L1 may lead L2 by the limit only: 1.74 kW more."""
    amps = 1000.0 / 230.0
    mins = np.array([1.38, 0.0])
    dem = np.array([7.36, 7.36])
    # constraints: 0 L1 of the node (I1 <= 15.13 A), 1 L2 (I2 <= 6 A),
    # 2 I1 - I2 <= 7.5652 A, 3 I2 - I1 <= 6.2312 A
    e_c = np.array([0, 1, 2, 2, 3, 3])
    e_j = np.array([0, 1, 0, 1, 0, 1])
    e_v = np.array([amps, amps, amps, -amps, -amps, amps])
    cap = np.array([15.1304, 6.0, 7.5652, 6.2312])
    room = cap - np.bincount(e_c, weights=e_v * mins[e_j], minlength=4)
    value, bind = phase_alloc.fill(mins, dem, e_c, e_j, e_v, room, np.array([1, 1, 1, 1]))
    ref_value, ref_bind = reference_fill(mins, dem, e_c, e_j, e_v, room, np.array([1, 1, 1, 1]))
    assert bind.tolist() == ref_bind.tolist() == [2, 1]
    np.testing.assert_allclose(value, ref_value, atol=1e-9)
    np.testing.assert_allclose(value, [6.0 / amps + 7.5652 / amps, 6.0 / amps], atol=1e-9)
