"""Breach detection (spec 4.4): fresh meters above the effective limit by more than 1 %."""

from __future__ import annotations

from balancing.breaches import (
    BREACH_PRECEDENCE,
    BreachFinding,
    BreachNodeInput,
    MeterReading,
    detect_breaches,
)


def node(node_id, limit_kw, source="NODE_LIMIT", constraints=None):
    if constraints is None:
        constraints = ((source, limit_kw), ("PHYSICAL_RATING", 10_000.0))
    return BreachNodeInput(node_id, limit_kw, source, tuple(constraints))


def meter(node_id, power_kw, freshness="FRESH", asset_id=None):
    return MeterReading(asset_id or f"M-{node_id}", node_id, power_kw, freshness)


def test_exactly_one_percent_over_is_not_a_breach_and_just_above_is():
    nodes = [node("grid", 100.0)]
    assert detect_breaches(nodes, [meter("grid", 101.0)]) == ()
    found = detect_breaches(nodes, [meter("grid", 101.001)])
    assert found == (
        BreachFinding(
            node_id="grid",
            measured_kw=101.001,
            limit_kw=100.0,
            excess_kw=1.001,
            exceeded=("BREACH_NODE_LIMIT",),
            primary_reason_code="BREACH_NODE_LIMIT",
        ),
    )


def test_one_percent_of_a_large_limit_is_float_safe():
    # 1.01 * 700 is 707.0000000000001 in floats; 707 is still exactly at the tolerance.
    assert detect_breaches([node("grid", 700.0)], [meter("grid", 707.0)]) == ()
    assert len(detect_breaches([node("grid", 700.0)], [meter("grid", 707.01)])) == 1


def test_the_tolerance_is_at_least_half_a_kw_on_small_limits():
    nodes = [node("grp", 20.0)]  # 1 % would be 0.2 kW
    assert detect_breaches(nodes, [meter("grp", 20.4)]) == ()
    assert detect_breaches(nodes, [meter("grp", 20.5)]) == ()
    found = detect_breaches(nodes, [meter("grp", 20.6)])
    assert [(f.node_id, f.excess_kw) for f in found] == [("grp", 0.6)]


def test_a_zero_limit_breaches_above_half_a_kw():
    nodes = [node("grp", 0.0, "OPERATING_ENVELOPE")]
    assert detect_breaches(nodes, [meter("grp", 0.5)]) == ()
    assert detect_breaches(nodes, [meter("grp", 0.6)])[0].exceeded == ("BREACH_OPERATING_ENVELOPE",)


def test_every_exceeded_constraint_is_listed_in_breach_precedence():
    nodes = [
        node(
            "grid",
            300.0,
            "OPERATING_ENVELOPE",
            constraints=[
                ("NODE_LIMIT", 395.0),
                ("OPERATING_ENVELOPE", 300.0),
                ("OPERATING_ENVELOPE", 350.0),
                ("TOU_LIMIT", 380.0),
                ("MICROGRID_LIMIT", 500.0),  # not exceeded
                ("PHYSICAL_RATING", 402.0),  # 404 is within its 1 %
            ],
        )
    ]
    (found,) = detect_breaches(nodes, [meter("grid", 404.0)])
    assert found.exceeded == ("BREACH_OPERATING_ENVELOPE", "BREACH_TOU_LIMIT", "BREACH_NODE_LIMIT")
    assert found.primary_reason_code == "BREACH_OPERATING_ENVELOPE"
    assert (found.limit_kw, found.excess_kw) == (300.0, 104.0)


def test_the_physical_rating_comes_first_when_exceeded():
    nodes = [
        node(
            "grp",
            100.0,
            "PHYSICAL_RATING",
            constraints=[("PHYSICAL_RATING", 100.0), ("NODE_LIMIT", 100.0), ("TOU_LIMIT", 120.0)],
        )
    ]
    (found,) = detect_breaches(nodes, [meter("grp", 130.0)])
    assert found.exceeded == ("BREACH_PHYSICAL_RATING", "BREACH_TOU_LIMIT", "BREACH_NODE_LIMIT")
    assert found.primary_reason_code == "BREACH_PHYSICAL_RATING"
    # (BREACH_PHASE_CURRENT, issue 19, is first of all; it is never a kW breach's code)
    assert BREACH_PRECEDENCE[:2] == ("BREACH_PHASE_CURRENT", "BREACH_PHYSICAL_RATING")


def test_the_effective_limit_counts_even_without_a_constraint_list():
    (found,) = detect_breaches([node("grid", 100.0, "MICROGRID_LIMIT", [])], [meter("grid", 200)])
    assert found.exceeded == ("BREACH_MICROGRID_LIMIT",)


def test_stale_and_missing_meters_never_raise_a_breach():
    nodes = [node("a", 10.0), node("b", 10.0)]
    meters = [meter("a", 500.0, "STALE"), meter("b", None, "MISSING")]
    assert detect_breaches(nodes, meters) == ()


def test_the_largest_of_several_fresh_meters_on_a_node_is_used():
    nodes = [node("grid", 100.0)]
    meters = [
        meter("grid", 90.0, asset_id="M-1"),
        meter("grid", 130.0, asset_id="M-2"),
        meter("grid", 500.0, "STALE", asset_id="M-3"),
    ]
    (found,) = detect_breaches(nodes, meters)
    assert found.measured_kw == 130.0
    assert found.excess_kw == 30.0


def test_a_node_without_a_meter_or_within_its_limit_is_not_reported():
    nodes = [node("grid", 100.0), node("sb", 50.0), node("grp", 10.0)]
    assert detect_breaches(nodes, [meter("sb", 40.0)]) == ()


def test_findings_are_sorted_by_node_id_and_serialise():
    nodes = [node("b", 10.0), node("a", 10.0), node("c", 10.0)]
    meters = [meter("c", 20.0), meter("a", 20.0), meter("b", 20.0)]
    found = detect_breaches(nodes, meters)
    assert [f.node_id for f in found] == ["a", "b", "c"]
    assert found[0].to_dict() == {
        "node_id": "a",
        "measured_kw": 20.0,
        "limit_kw": 10.0,
        "excess_kw": 10.0,
        "exceeded": ["BREACH_NODE_LIMIT"],
        "primary_reason_code": "BREACH_NODE_LIMIT",
    }
