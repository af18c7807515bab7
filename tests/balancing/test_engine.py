"""Example tests of the pure balancing engine (spec 4.1 to 4.5, 3.4 external control)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from balancing.engine import (
    LIMIT_SOURCE_TO_REASON,
    REASON_PRECEDENCE,
    ChargerInput,
    ChargerResult,
    EngineInput,
    EngineResult,
    LoadInput,
    NodeInput,
    NodeResult,
    allocate,
    sort_reasons,
)
from benchtools.synthetic import build_engine_input, solve_lp

STAMP = "2025-01-06T08:00:00+00:00"


def node(node_id, parent_id, limit_kw, source="NODE_LIMIT", external=False):
    return NodeInput(node_id, parent_id, float(limit_kw), source, external)


def charger(
    asset_id,
    node_id,
    requested_kw,
    *,
    max_kw=22.0,
    min_kw=0.0,
    priority=0,
    failsafe_kw=None,
    freshness="FRESH",
    connected=True,
    plugged_in_at=None,
):
    return ChargerInput(
        asset_id=asset_id,
        node_id=node_id,
        max_power_kw=max_kw,
        min_power_kw=min_kw,
        failsafe_power_kw=min_kw if failsafe_kw is None else failsafe_kw,
        priority=priority,
        freshness=freshness,
        connected=connected,
        requested_kw=requested_kw,
        plugged_in_at=plugged_in_at,
        last_observed_at=STAMP,
    )


def load(asset_id, node_id, kind, power_kw, *, freshness="FRESH", fallback_kw=None):
    return LoadInput(asset_id, node_id, kind, freshness, power_kw, STAMP, fallback_kw)


def run(nodes, chargers=(), loads=(), threshold_s=60) -> EngineResult:
    return allocate(EngineInput(tuple(nodes), tuple(loads), tuple(chargers), threshold_s))


def by_asset(result: EngineResult) -> dict[str, ChargerResult]:
    return {c.asset_id: c for c in result.chargers}


def by_node(result: EngineResult) -> dict[str, NodeResult]:
    return {n.node_id: n for n in result.nodes}


def setpoints(result: EngineResult) -> dict[str, float | None]:
    return {c.asset_id: c.allocated_kw for c in result.chargers}


# ---- fair share -------------------------------------------------------------------------------


def test_chargers_under_a_node_cap_share_it_equally():
    result = run(
        [node("grid", None, 30, "MICROGRID_LIMIT")],
        [charger(f"CH-{i}", "grid", 22.0) for i in range(3)],
    )
    assert setpoints(result) == {"CH-0": 10.0, "CH-1": 10.0, "CH-2": 10.0}
    for c in result.chargers:
        assert c.reason_codes == ("MICROGRID_LIMIT",)
        assert c.binding is not None
        assert c.binding.to_dict() == {
            "node_id": "grid",
            "limit_source": "MICROGRID_LIMIT",
            "limit_kw": 30.0,
        }


def test_a_charger_asking_less_than_its_share_leaves_the_rest_to_the_others():
    result = run(
        [node("grid", None, 30)],
        [
            charger("CH-1", "grid", 4.0),
            charger("CH-2", "grid", 22.0),
            charger("CH-3", "grid", 22.0),
        ],
    )
    assert setpoints(result) == {"CH-1": 4.0, "CH-2": 13.0, "CH-3": 13.0}
    assert by_asset(result)["CH-1"].reason_codes == ("DEMAND_MET",)
    assert by_asset(result)["CH-1"].binding is None


def test_nested_caps_each_bind_the_chargers_below_them():
    # grp-a holds its two chargers to 10 kW; the 40 kW board gives the rest to grp-b's charger.
    result = run(
        [
            node("grid", None, 100, "MICROGRID_LIMIT"),
            node("sb-1", "grid", 40, "NODE_LIMIT"),
            node("grp-a", "sb-1", 10, "PHYSICAL_RATING"),
            node("grp-b", "sb-1", 50, "PHYSICAL_RATING"),
        ],
        [
            charger("CH-1", "grp-a", 22.0),
            charger("CH-2", "grp-a", 22.0),
            charger("CH-3", "grp-b", 50.0, max_kw=50.0),
        ],
    )
    chargers = by_asset(result)
    assert setpoints(result) == {"CH-1": 5.0, "CH-2": 5.0, "CH-3": 30.0}
    assert chargers["CH-1"].reason_codes == ("PHYSICAL_RATING",)
    assert chargers["CH-1"].binding.node_id == "grp-a"
    assert chargers["CH-3"].reason_codes == ("NODE_LIMIT",)
    assert chargers["CH-3"].binding.node_id == "sb-1"
    nodes = by_node(result)
    assert nodes["grp-a"].reason_codes == ("PHYSICAL_RATING",)
    assert nodes["sb-1"].reason_codes == ("NODE_LIMIT",)
    assert nodes["grid"].reason_codes == ()
    assert nodes["grid"].allocated_kw == 40.0
    assert nodes["grid"].headroom_kw == 60.0


def test_binding_names_the_deepest_full_node_when_several_fill_at_the_same_level():
    # grp fills at 10 kW per charger, and so does the grid (10 + 10 + 10): the chargers of grp
    # are bound by grp, the deeper of the two; the grid binds only its own charger.
    result = run(
        [node("grid", None, 30, "MICROGRID_LIMIT"), node("grp", "grid", 20, "PHYSICAL_RATING")],
        [charger("CH-1", "grp", 22.0), charger("CH-2", "grp", 22.0), charger("CH-3", "grid", 22.0)],
    )
    chargers = by_asset(result)
    assert setpoints(result) == {"CH-1": 10.0, "CH-2": 10.0, "CH-3": 10.0}
    assert chargers["CH-1"].binding.node_id == "grp"
    assert chargers["CH-2"].reason_codes == ("PHYSICAL_RATING",)
    assert chargers["CH-3"].binding.node_id == "grid"
    assert chargers["CH-3"].reason_codes == ("MICROGRID_LIMIT",)


def test_higher_priority_class_is_served_first():
    result = run(
        [node("grid", None, 30)],
        [
            charger("LOW", "grid", 22.0, priority=0),
            charger("HIGH", "grid", 22.0, priority=2),
        ],
    )
    assert setpoints(result) == {"HIGH": 22.0, "LOW": 8.0}
    assert by_asset(result)["HIGH"].reason_codes == ("DEMAND_MET",)
    assert by_asset(result)["LOW"].reason_codes == ("NODE_LIMIT",)


def test_lower_priority_minimums_are_reserved_before_higher_classes_fill():
    result = run(
        [node("grid", None, 30)],
        [
            charger("LOW", "grid", 22.0, min_kw=6.0, priority=0),
            charger("HIGH", "grid", 30.0, max_kw=30.0, priority=1),
        ],
    )
    assert setpoints(result) == {"HIGH": 24.0, "LOW": 6.0}
    assert by_asset(result)["LOW"].reason_codes == ("NODE_LIMIT",)


def test_water_filling_is_on_the_total_setpoint_including_minimums():
    # With 20 kW for a charger holding a 6 kW minimum and one without, both end at 10 kW.
    result = run(
        [node("grid", None, 20)],
        [charger("CH-1", "grid", 22.0, min_kw=6.0), charger("CH-2", "grid", 22.0)],
    )
    assert setpoints(result) == {"CH-1": 10.0, "CH-2": 10.0}


def test_a_charger_whose_minimum_exceeds_the_fair_level_stays_at_its_minimum():
    result = run(
        [node("grid", None, 20)],
        [
            charger("CH-1", "grid", 22.0, min_kw=8.0),
            charger("CH-2", "grid", 22.0),
            charger("CH-3", "grid", 22.0),
        ],
    )
    assert setpoints(result) == {"CH-1": 8.0, "CH-2": 6.0, "CH-3": 6.0}
    assert by_asset(result)["CH-1"].reason_codes == ("NODE_LIMIT",)


# ---- minimums ---------------------------------------------------------------------------------


def test_minimums_are_served_by_priority_then_plug_in_time_then_asset_id():
    # Room for two 6 kW minimums out of four candidates.
    result = run(
        [node("grid", None, 12)],
        [
            charger("A-LATE", "grid", 22.0, min_kw=6.0, plugged_in_at="2025-01-06T07:30:00+00:00"),
            charger("B-EARLY", "grid", 22.0, min_kw=6.0, plugged_in_at="2025-01-06T07:00:00+00:00"),
            charger("C-VIP", "grid", 22.0, min_kw=6.0, priority=1, plugged_in_at=None),
            charger("D-UNKNOWN", "grid", 22.0, min_kw=6.0, plugged_in_at=None),
        ],
    )
    chargers = by_asset(result)
    assert setpoints(result) == {"A-LATE": 0.0, "B-EARLY": 6.0, "C-VIP": 6.0, "D-UNKNOWN": 0.0}
    assert chargers["A-LATE"].reason_codes == ("MIN_POWER_UNSERVED",)
    assert chargers["D-UNKNOWN"].reason_codes == ("MIN_POWER_UNSERVED",)
    assert chargers["A-LATE"].binding is None
    assert result.outcome == "CONSTRAINED"


def test_plug_in_time_none_sorts_after_every_known_time():
    result = run(
        [node("grid", None, 6)],
        [
            charger("A", "grid", 22.0, min_kw=6.0, plugged_in_at=None),
            charger("B", "grid", 22.0, min_kw=6.0, plugged_in_at="2025-01-06T23:59:59+00:00"),
        ],
    )
    assert setpoints(result) == {"A": 0.0, "B": 6.0}


def test_an_unserved_minimum_takes_no_further_part_and_leaves_room_to_others():
    # 10 kW: the first 6 kW minimum fits, the second does not; the third charger has no minimum
    # and shares the rest with the first.
    result = run(
        [node("grid", None, 10)],
        [
            charger("A", "grid", 22.0, min_kw=6.0, plugged_in_at="2025-01-06T07:00:00+00:00"),
            charger("B", "grid", 22.0, min_kw=6.0, plugged_in_at="2025-01-06T07:10:00+00:00"),
            charger("C", "grid", 22.0),
        ],
    )
    assert setpoints(result) == {"A": 6.0, "B": 0.0, "C": 4.0}


def test_a_minimum_must_fit_under_every_ancestor():
    result = run(
        [node("grid", None, 8), node("grp-a", "grid", 50), node("grp-b", "grid", 50)],
        [
            charger("A", "grp-a", 22.0, min_kw=6.0, plugged_in_at="2025-01-06T07:00:00+00:00"),
            charger("B", "grp-b", 22.0, min_kw=6.0, plugged_in_at="2025-01-06T07:10:00+00:00"),
        ],
    )
    assert setpoints(result) == {"A": 8.0, "B": 0.0}
    assert by_asset(result)["B"].reason_codes == ("MIN_POWER_UNSERVED",)


def test_a_charger_asking_less_than_its_minimum_runs_at_its_minimum():
    result = run([node("grid", None, 100)], [charger("CH-1", "grid", 2.0, min_kw=4.1)])
    assert setpoints(result) == {"CH-1": 4.1}
    assert by_asset(result)["CH-1"].reason_codes == ("DEMAND_MET",)
    assert by_asset(result)["CH-1"].requested_kw == 2.0


# ---- demand -----------------------------------------------------------------------------------


def test_asset_max_power_when_the_ev_asks_more_than_the_charger_can_give():
    result = run(
        [node("grid", None, 500)],
        [charger("BIG", "grid", 80.0, max_kw=50.0), charger("SMALL", "grid", 7.0)],
    )
    chargers = by_asset(result)
    assert setpoints(result) == {"BIG": 50.0, "SMALL": 7.0}
    assert chargers["BIG"].reason_codes == ("ASSET_MAX_POWER",)
    assert chargers["BIG"].requested_kw == 80.0
    assert chargers["SMALL"].reason_codes == ("DEMAND_MET",)
    assert result.outcome == "OK"


def test_a_connected_charger_asking_for_nothing_gets_zero_with_demand_met():
    result = run([node("grid", None, 100)], [charger("CH-1", "grid", 0.0, min_kw=4.1)])
    only = result.chargers[0]
    assert (only.requested_kw, only.allocated_kw, only.reason_codes) == (0.0, 0.0, ("DEMAND_MET",))


def test_chargers_that_are_not_connected_get_zero_and_no_reason_codes():
    result = run(
        [node("grid", None, 100)],
        [charger("CH-1", "grid", 11.0, min_kw=4.1, connected=False)],
    )
    only = result.chargers[0]
    assert (only.requested_kw, only.allocated_kw, only.reason_codes, only.binding) == (
        0.0,
        0.0,
        (),
        None,
    )
    assert result.outcome == "OK"
    assert result.reason_codes == ()


# ---- rounding ---------------------------------------------------------------------------------


def test_setpoints_are_rounded_down_to_a_tenth_of_a_kw():
    result = run([node("grid", None, 10)], [charger(f"CH-{i}", "grid", 22.0) for i in range(3)])
    assert setpoints(result) == {"CH-0": 3.3, "CH-1": 3.3, "CH-2": 3.3}
    assert by_node(result)["grid"].allocated_kw == 9.9
    assert by_node(result)["grid"].headroom_kw == 0.1


def test_a_demand_with_hundredths_is_rounded_down_too():
    result = run([node("grid", None, 100)], [charger("CH-1", "grid", 7.25)])
    assert setpoints(result) == {"CH-1": 7.2}
    assert result.chargers[0].requested_kw == 7.25


def test_rounding_never_takes_a_charger_below_its_minimum():
    result = run(
        [node("grid", None, 8.28)],
        [charger("CH-1", "grid", 22.0, min_kw=4.14), charger("CH-2", "grid", 22.0, min_kw=4.14)],
    )
    assert setpoints(result) == {"CH-1": 4.14, "CH-2": 4.14}


def test_rounding_absorbs_float_noise():
    # 0.7 / 7 * 10 is 0.9999999999999999 in floats; the setpoint must still be 0.1.
    result = run([node("grid", None, 0.7)], [charger(f"CH-{i}", "grid", 22.0) for i in range(7)])
    assert set(setpoints(result).values()) == {0.1}


# ---- telemetry fallback -----------------------------------------------------------------------


TREE = [
    node("grid", None, 200, "MICROGRID_LIMIT"),
    node("sb-1", "grid", 150),
    node("grp-a", "sb-1", 100, "PHYSICAL_RATING"),
    node("sb-2", "grid", 150),
]


def test_stale_site_load_uses_its_fallback_on_every_node_of_its_path():
    result = run(
        TREE,
        [charger("CH-1", "grp-a", 22.0)],
        [load("SITE", "grp-a", "SITE_LOAD", 10.0, freshness="STALE", fallback_kw=30.0)],
    )
    nodes = by_node(result)
    for node_id in ("grid", "sb-1", "grp-a"):
        assert nodes[node_id].source_mode == "FALLBACK_DERIVED"
        assert nodes[node_id].reason_codes == ("TELEMETRY_FALLBACK",)
        assert nodes[node_id].uncontrolled_load_kw == 30.0
        assert [f.to_dict() for f in nodes[node_id].fallback] == [
            {
                "asset_id": "SITE",
                "why": "STALE",
                "last_observed_at": STAMP,
                "value_kw": 30.0,
                "threshold_s": 60,
            }
        ]
    assert nodes["sb-2"].source_mode == "MEASURED"
    assert nodes["sb-2"].fallback == ()
    assert result.source_mode == "FALLBACK_DERIVED"
    assert result.reason_codes == ("TELEMETRY_FALLBACK", "DEMAND_MET")
    # the charger itself measured fine, so it is not marked
    assert result.chargers[0].reason_codes == ("DEMAND_MET",)


def test_fresh_site_load_and_battery_count_and_fresh_pv_gives_headroom():
    result = run(
        [node("grid", None, 50)],
        [charger("CH-1", "grid", 50.0, max_kw=50.0)],
        [
            load("SITE", "grid", "SITE_LOAD", 30.0),
            load("BAT", "grid", "BATTERY", -5.0),  # discharging
            load("PV", "grid", "PV", 10.0),
        ],
    )
    assert by_node(result)["grid"].uncontrolled_load_kw == 15.0
    assert setpoints(result) == {"CH-1": 35.0}
    assert result.source_mode == "MEASURED"


def test_missing_pv_counts_as_zero_generation():
    result = run(
        [node("grid", None, 50)],
        [charger("CH-1", "grid", 50.0, max_kw=50.0)],
        [
            load("SITE", "grid", "SITE_LOAD", 30.0),
            load("PV", "grid", "PV", None, freshness="MISSING"),
        ],
    )
    grid = by_node(result)["grid"]
    assert grid.uncontrolled_load_kw == 30.0
    assert setpoints(result) == {"CH-1": 20.0}
    assert grid.fallback[0].why == "MISSING"
    assert grid.fallback[0].value_kw == 0.0
    assert grid.source_mode == "FALLBACK_DERIVED"


def test_a_stale_charger_is_fixed_load_at_its_failsafe_power():
    result = run(
        [node("grid", None, 30)],
        [
            charger("CH-1", "grid", 22.0, min_kw=6.0, freshness="STALE"),
            charger("CH-2", "grid", 22.0),
        ],
    )
    stale = by_asset(result)["CH-1"]
    assert (stale.requested_kw, stale.allocated_kw, stale.reason_codes, stale.binding) == (
        0.0,
        6.0,
        ("TELEMETRY_FALLBACK",),
        None,
    )
    grid = by_node(result)["grid"]
    assert grid.uncontrolled_load_kw == 6.0
    assert grid.allocated_kw == 22.0  # the stale charger counts as uncontrolled, not allocated
    assert grid.headroom_kw == 2.0
    assert grid.fallback[0].value_kw == 6.0
    assert setpoints(result)["CH-2"] == 22.0


def test_fallback_entries_are_listed_by_asset_id():
    result = run(
        [node("grid", None, 300)],
        [charger("A-CH", "grid", 0.0, freshness="MISSING", failsafe_kw=4.0)],
        [
            load("Z-SITE", "grid", "SITE_LOAD", None, freshness="MISSING", fallback_kw=10.0),
            load("M-PV", "grid", "PV", 5.0, freshness="STALE"),
        ],
    )
    assert [f.asset_id for f in result.nodes[0].fallback] == ["A-CH", "M-PV", "Z-SITE"]


# ---- fail safe --------------------------------------------------------------------------------


def test_missing_site_load_without_fallback_puts_the_cycle_in_failsafe():
    result = run(
        [node("grid", None, 100), node("grp", "grid", 100)],
        [
            charger("CH-1", "grp", 22.0, min_kw=4.1),
            charger("CH-2", "grp", 22.0, min_kw=4.1, connected=False),
        ],
        [load("SITE", "grp", "SITE_LOAD", None, freshness="MISSING", fallback_kw=None)],
    )
    assert result.outcome == "FAILSAFE"
    assert result.source_mode == "FAILSAFE"
    for n in result.nodes:
        assert n.source_mode == "FAILSAFE"
        assert n.reason_codes == ("FAILSAFE_TELEMETRY_UNAVAILABLE",)
        assert [f.to_dict() for f in n.fallback] == [
            {
                "asset_id": "SITE",
                "why": "MISSING",
                "last_observed_at": STAMP,
                "value_kw": None,
                "threshold_s": 60,
            }
        ]
    chargers = by_asset(result)
    assert chargers["CH-1"].allocated_kw == 4.1
    assert chargers["CH-1"].reason_codes == ("FAILSAFE_TELEMETRY_UNAVAILABLE",)
    assert chargers["CH-1"].requested_kw == 22.0
    # not connected: 0 and no reasons, in every mode
    assert (chargers["CH-2"].allocated_kw, chargers["CH-2"].reason_codes) == (0.0, ())
    assert result.reason_codes == ("FAILSAFE_TELEMETRY_UNAVAILABLE",)


def test_failsafe_setpoints_follow_asset_id_order_within_the_known_budgets():
    # Known budgets: grid 20 - 5 (fresh site load) = 15; grp-b 8. Failsafe power 6 kW each.
    result = run(
        [node("grid", None, 20), node("grp-a", "grid", 50), node("grp-b", "grid", 8)],
        [
            charger("CH-1", "grp-a", 22.0, min_kw=6.0),
            charger("CH-2", "grp-b", 22.0, min_kw=6.0),
            charger("CH-3", "grp-b", 22.0, min_kw=6.0),  # grp-b is full after CH-2
            charger("CH-4", "grp-a", 0.0, min_kw=6.0),  # asks 0, still failsafe; 3 kW left: no
            charger("CH-5", "grp-a", 22.0, min_kw=2.0, failsafe_kw=2.0),
        ],
        [
            load("SITE", "grid", "SITE_LOAD", 5.0),
            load("BAT", "grp-a", "BATTERY", None, freshness="STALE", fallback_kw=None),
        ],
    )
    assert setpoints(result) == {"CH-1": 6.0, "CH-2": 6.0, "CH-3": 0.0, "CH-4": 0.0, "CH-5": 2.0}
    assert {c.reason_codes for c in result.chargers} == {("FAILSAFE_TELEMETRY_UNAVAILABLE",)}
    nodes = by_node(result)
    assert nodes["grid"].source_mode == "FAILSAFE"
    assert nodes["grp-a"].source_mode == "FAILSAFE"
    # grp-b is not on the missing input's path
    assert nodes["grp-b"].source_mode == "MEASURED"
    assert nodes["grid"].allocated_kw == 14.0


def test_a_stale_charger_in_failsafe_still_counts_as_fixed_load():
    result = run(
        [node("grid", None, 10)],
        [
            charger("CH-1", "grid", 22.0, min_kw=6.0, freshness="STALE"),
            charger("CH-2", "grid", 22.0, min_kw=6.0),
        ],
        [load("SITE", "grid", "SITE_LOAD", None, freshness="MISSING")],
    )
    assert setpoints(result) == {"CH-1": 6.0, "CH-2": 0.0}
    assert by_asset(result)["CH-1"].reason_codes == ("TELEMETRY_FALLBACK",)
    assert result.nodes[0].reason_codes == (
        "FAILSAFE_TELEMETRY_UNAVAILABLE",
        "TELEMETRY_FALLBACK",
    )


# ---- zero and negative budgets ----------------------------------------------------------------


def test_a_zero_envelope_pauses_every_charger_below_it():
    result = run(
        [node("grid", None, 300), node("grp", "grid", 0, "OPERATING_ENVELOPE")],
        [charger("CH-1", "grp", 22.0), charger("CH-2", "grp", 22.0, min_kw=4.1)],
    )
    chargers = by_asset(result)
    assert setpoints(result) == {"CH-1": 0.0, "CH-2": 0.0}
    assert chargers["CH-1"].reason_codes == ("OPERATING_ENVELOPE_LIMIT",)
    assert chargers["CH-1"].binding.limit_kw == 0.0
    assert chargers["CH-2"].reason_codes == ("MIN_POWER_UNSERVED",)
    assert result.outcome == "CONSTRAINED"
    assert by_node(result)["grp"].reason_codes == ("OPERATING_ENVELOPE_LIMIT",)


def test_uncontrolled_load_above_the_limit_allocates_nothing_and_shows_no_negative_headroom():
    result = run(
        [node("grid", None, 50)],
        [charger("CH-1", "grid", 22.0)],
        [load("SITE", "grid", "SITE_LOAD", 70.0)],
    )
    assert setpoints(result) == {"CH-1": 0.0}
    assert result.nodes[0].headroom_kw == 0.0
    assert result.nodes[0].uncontrolled_load_kw == 70.0


# ---- external control -------------------------------------------------------------------------


def test_external_control_hides_setpoints_and_gives_the_node_a_budget():
    result = run(
        [
            node("grid", None, 100, "MICROGRID_LIMIT"),
            node("ext", "grid", 80, external=True),
            node("own", "grid", 80),
        ],
        [
            charger("EXT-1", "ext", 60.0, max_kw=60.0),
            charger("EXT-2", "ext", 60.0, max_kw=60.0, connected=False),
            charger("OWN-1", "own", 60.0, max_kw=60.0),
        ],
    )
    chargers = by_asset(result)
    assert (chargers["EXT-1"].allocated_kw, chargers["EXT-1"].reason_codes) == (
        None,
        ("EXTERNAL_CONTROL",),
    )
    assert chargers["EXT-1"].binding is None
    assert chargers["EXT-1"].requested_kw == 60.0
    assert (chargers["EXT-2"].allocated_kw, chargers["EXT-2"].reason_codes) == (0.0, ())
    # the scope got its fair share of the grid's 100 kW, as if its chargers were ours
    assert chargers["OWN-1"].allocated_kw == 50.0
    nodes = by_node(result)
    assert nodes["ext"].reason_codes == ("EXTERNAL_CONTROL",)
    assert nodes["ext"].budget_kw == 50.0
    assert nodes["own"].budget_kw is None
    assert "budget_kw" not in nodes["own"].to_dict()
    assert nodes["ext"].to_dict()["budget_kw"] == 50.0
    assert nodes["grid"].allocated_kw == 100.0
    # the grid binds the hidden EXT-1 and the visible OWN-1
    assert nodes["grid"].reason_codes == ("MICROGRID_LIMIT",)
    assert "EXTERNAL_CONTROL" in result.reason_codes


def test_external_budget_adds_the_smallest_headroom_on_the_path_to_the_root():
    result = run(
        [
            node("grid", None, 100, "MICROGRID_LIMIT"),
            node("sb", "grid", 60),
            node("ext", "sb", 80, external=True),
        ],
        [charger("EXT-1", "ext", 10.0), charger("OWN", "grid", 10.0)],
    )
    # hidden 10 kW + min(headroom ext 70, sb 50, grid 80) = 60 kW: what sb still allows
    assert by_node(result)["ext"].budget_kw == 60.0
    assert result.outcome == "OK"


def test_limits_binding_only_hidden_chargers_are_not_shown_as_binding():
    result = run(
        [node("grid", None, 500), node("ext", "grid", 20, external=True)],
        [charger("EXT-1", "ext", 22.0), charger("EXT-2", "ext", 22.0)],
    )
    assert by_node(result)["ext"].reason_codes == ("EXTERNAL_CONTROL",)
    assert by_node(result)["ext"].budget_kw == 20.0
    assert result.outcome == "OK"
    assert result.reason_codes == ("EXTERNAL_CONTROL",)


# ---- reason codes and outcome -----------------------------------------------------------------


def test_reason_precedence_lists_the_fourteen_codes_of_spec_4_5():
    assert REASON_PRECEDENCE == (
        "FAILSAFE_TELEMETRY_UNAVAILABLE",
        "TELEMETRY_FALLBACK",
        "EXTERNAL_CONTROL",
        "PHASE_CURRENT_LIMIT",
        "PHASE_UNBALANCE_LIMIT",
        "OPERATING_ENVELOPE_LIMIT",
        "MICROGRID_LIMIT",
        "TOU_LIMIT",
        "NODE_LIMIT",
        "PHYSICAL_RATING",
        "DEPARTURE_PRIORITY",
        "MIN_POWER_UNSERVED",
        "ASSET_MAX_POWER",
        "DEMAND_MET",
    )
    assert LIMIT_SOURCE_TO_REASON["OPERATING_ENVELOPE"] == "OPERATING_ENVELOPE_LIMIT"
    for source in ("MICROGRID_LIMIT", "TOU_LIMIT", "NODE_LIMIT", "PHYSICAL_RATING"):
        assert LIMIT_SOURCE_TO_REASON[source] == source


def test_sort_reasons_dedupes_and_orders_by_precedence():
    assert sort_reasons(["DEMAND_MET", "NODE_LIMIT", "TELEMETRY_FALLBACK", "NODE_LIMIT"]) == (
        "TELEMETRY_FALLBACK",
        "NODE_LIMIT",
        "DEMAND_MET",
    )


def test_cycle_reason_codes_are_the_union_in_precedence_order():
    result = run(
        [
            node("grid", None, 100, "MICROGRID_LIMIT"),
            node("env", "grid", 10, "OPERATING_ENVELOPE"),
            node("tou", "grid", 10, "TOU_LIMIT"),
        ],
        [
            charger("A", "env", 22.0),
            charger("B", "tou", 22.0),
            charger("C", "grid", 80.0, max_kw=50.0),
            charger("D", "grid", 5.0),
        ],
        [load("SITE", "grid", "SITE_LOAD", 1.0, freshness="STALE", fallback_kw=1.0)],
    )
    assert result.reason_codes == (
        "TELEMETRY_FALLBACK",
        "OPERATING_ENVELOPE_LIMIT",
        "TOU_LIMIT",
        "ASSET_MAX_POWER",
        "DEMAND_MET",
    )
    for item in (*result.nodes, *result.chargers):
        assert list(item.reason_codes) == sorted(
            set(item.reason_codes), key=REASON_PRECEDENCE.index
        )


def test_a_node_limit_code_appears_only_when_it_binds_a_charger():
    result = run(
        [node("grid", None, 1000), node("sb", "grid", 100)],
        [charger("CH-1", "sb", 22.0)],
    )
    assert [n.reason_codes for n in result.nodes] == [(), ()]
    assert result.outcome == "OK"


def test_outcome_is_constrained_when_a_limit_stops_a_charger_and_ok_at_asset_max():
    constrained = run([node("grid", None, 10)], [charger("CH-1", "grid", 22.0)])
    at_max = run([node("grid", None, 100)], [charger("CH-1", "grid", 30.0)])
    assert constrained.outcome == "CONSTRAINED"
    assert at_max.outcome == "OK"
    assert at_max.chargers[0].reason_codes == ("ASSET_MAX_POWER",)


def test_an_empty_depot_is_ok():
    result = run([node("grid", None, 100)])
    assert result.outcome == "OK"
    assert result.chargers == ()
    assert result.nodes[0].headroom_kw == 100.0


# ---- order and shape --------------------------------------------------------------------------


def test_nodes_come_in_tree_order_and_chargers_by_asset_id():
    result = run(
        [
            node("b", "root", 10),
            node("a2", "a", 10),
            node("a", "root", 10),
            node("root", None, 100),
            node("a1", "a", 10),
        ],
        [charger("Z", "a1", 1.0), charger("M", "b", 1.0), charger("A", "a2", 1.0)],
    )
    assert [n.node_id for n in result.nodes] == ["root", "a", "a1", "a2", "b"]
    assert [c.asset_id for c in result.chargers] == ["A", "M", "Z"]


def test_the_spec_4_1_example_comes_out_as_documented():
    result = run(
        [
            node("grid", None, 700, "MICROGRID_LIMIT"),
            node("sb-1", "grid", 350, "NODE_LIMIT"),
            node("grp-a", "sb-1", 300, "PHYSICAL_RATING"),
            node("grp-b", "sb-1", 300, "PHYSICAL_RATING"),
        ],
        [
            charger("CH-01", "grp-a", 150.0, max_kw=150.0, min_kw=4.1),
            charger("CH-02", "grp-a", 150.0, max_kw=150.0, min_kw=4.1),
            charger("CH-03", "grp-b", 80.0, max_kw=150.0, min_kw=4.1),
        ],
        [load("SITE", "grid", "SITE_LOAD", 50.0, freshness="STALE", fallback_kw=80.0)],
    )
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["outcome"] == "CONSTRAINED"
    assert doc["source_mode"] == "FALLBACK_DERIVED"
    assert doc["reason_codes"] == ["TELEMETRY_FALLBACK", "NODE_LIMIT", "DEMAND_MET"]
    assert doc["nodes"][0] == {
        "node_id": "grid",
        "effective_limit_kw": 700.0,
        "limit_source": "MICROGRID_LIMIT",
        "uncontrolled_load_kw": 80.0,
        "allocated_kw": 350.0,
        "headroom_kw": 270.0,
        "source_mode": "FALLBACK_DERIVED",
        "fallback": [
            {
                "asset_id": "SITE",
                "why": "STALE",
                "last_observed_at": STAMP,
                "value_kw": 80.0,
                "threshold_s": 60,
            }
        ],
        "reason_codes": ["TELEMETRY_FALLBACK"],
    }
    assert doc["nodes"][1] == {
        "node_id": "sb-1",
        "effective_limit_kw": 350.0,
        "limit_source": "NODE_LIMIT",
        "uncontrolled_load_kw": 0.0,
        "allocated_kw": 350.0,
        "headroom_kw": 0.0,
        "source_mode": "MEASURED",
        "fallback": [],
        "reason_codes": ["NODE_LIMIT"],
    }
    assert doc["chargers"][0] == {
        "asset_id": "CH-01",
        "node_id": "grp-a",
        "requested_kw": 150.0,
        "allocated_kw": 135.0,
        "reason_codes": ["NODE_LIMIT"],
        "binding": {"node_id": "sb-1", "limit_source": "NODE_LIMIT", "limit_kw": 350.0},
    }
    assert doc["chargers"][2]["reason_codes"] == ["DEMAND_MET"]


def test_every_kw_in_the_output_has_at_most_three_decimals():
    result = run(
        [node("grid", None, 100.12345)],
        [charger("CH-1", "grid", 7.77777), charger("CH-2", "grid", 0.0, freshness="STALE")],
        [load("SITE", "grid", "SITE_LOAD", 1.23456)],
    )
    doc = result.to_dict()
    values = [doc["nodes"][0][k] for k in ("effective_limit_kw", "uncontrolled_load_kw")]
    values += [c[k] for c in doc["chargers"] for k in ("requested_kw", "allocated_kw")]
    assert values == [100.123, 1.235, 7.778, 7.7, 0.0, 0.0]


def test_input_round_trips_through_json_exactly():
    inp = EngineInput(
        nodes=(
            node("grid", None, 123.456, "MICROGRID_LIMIT"),
            node("ext", "grid", 10.1, external=True),
        ),
        loads=(load("SITE", "grid", "SITE_LOAD", None, freshness="MISSING", fallback_kw=1.5),),
        chargers=(
            charger("CH-1", "ext", 7.3, min_kw=4.14, priority=2, plugged_in_at=STAMP),
            charger("CH-2", "grid", 0.1, freshness="STALE", connected=False),
        ),
        threshold_s=90,
    )
    rebuilt = EngineInput.from_dict(json.loads(json.dumps(inp.to_dict())))
    assert rebuilt == inp
    assert allocate(rebuilt) == allocate(inp)


def test_results_are_frozen_dataclasses():
    result = run([node("grid", None, 10)], [charger("CH-1", "grid", 5.0)])
    assert type(result.chargers[0]) is ChargerResult
    assert type(result.nodes[0]) is NodeResult
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.chargers[0].allocated_kw = 99.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.nodes[0].allocated_kw = 99.0  # type: ignore[misc]
    fields = {
        f.name: getattr(result.chargers[0], f.name) for f in dataclasses.fields(ChargerResult)
    }
    rebuilt = ChargerResult(**fields)
    assert rebuilt == result.chargers[0]
    assert hash(rebuilt) == hash(result.chargers[0])


def test_an_input_that_is_not_one_tree_is_refused():
    with pytest.raises(ValueError):
        run([node("a", None, 10), node("b", None, 10)])
    with pytest.raises(ValueError):
        run([node("a", None, 10), node("b", "nowhere", 10)])
    with pytest.raises(ValueError):
        run([node("a", None, 10), node("a", None, 10)])
    with pytest.raises(ValueError):
        run([node("a", None, 10)], [charger("CH-1", "nowhere", 1.0)])


def test_a_large_depot_respects_every_budget_and_without_minimums_reaches_the_lp_optimum():
    # Big enough for the engine's paths for large trees and large nodes.
    inp = build_engine_input(chargers=600, nodes=120, depth=5, seed=7)
    parent = {n.node_id: n.parent_id for n in inp.nodes}
    limit = {n.node_id: n.limit_kw for n in inp.nodes}

    def path(node_id):
        while node_id is not None:
            yield node_id
            node_id = parent[node_id]

    uncontrolled = dict.fromkeys(parent, 0.0)
    for ld in inp.loads:
        for n in path(ld.node_id):
            uncontrolled[n] += -ld.power_kw if ld.kind == "PV" else ld.power_kw
    for inp_case in (inp, without_minimums(inp)):
        result = allocate(inp_case)
        used = dict.fromkeys(parent, 0.0)
        for c, out in zip(inp_case.chargers, result.chargers, strict=True):
            assert out.asset_id == c.asset_id
            if "MIN_POWER_UNSERVED" not in out.reason_codes:
                assert c.min_power_kw <= out.allocated_kw
            assert out.allocated_kw <= max(c.min_power_kw, min(c.requested_kw, c.max_power_kw))
            for n in path(c.node_id):
                used[n] += out.allocated_kw
        for n in parent:
            assert used[n] <= max(0.0, limit[n] - uncontrolled[n]) + 1e-6
        assert {c.reason_codes for c in result.chargers} > {("NODE_LIMIT",), ("DEMAND_MET",)}
    result = allocate(without_minimums(inp))
    total = sum(c.allocated_kw for c in result.chargers)
    optimum = solve_lp(without_minimums(inp))
    assert optimum - 0.1 * len(inp.chargers) <= total <= optimum + 1e-6


def without_minimums(inp: EngineInput) -> EngineInput:
    chargers = tuple(
        dataclasses.replace(c, min_power_kw=0.0, failsafe_power_kw=0.0) for c in inp.chargers
    )
    return dataclasses.replace(inp, chargers=chargers)
