"""Effective limits per node at an instant (spec 3.2): rating, node caps, TOU, microgrid cap, providers."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from microgrid.limits.selectors import (
    Constraint,
    active_limits_document,
    effective_limits,
)
from microgrid.limits.signals import limit_constraints
from microgrid.topology.access import SYSTEM
from microgrid.topology.selectors import microgrid_get, node_rows

AMS = ZoneInfo("Europe/Amsterdam")
EVENING = {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "17:00", "end": "21:00"}
MONDAY_18 = datetime(2026, 3, 2, 18, 0, tzinfo=AMS)
MONDAY_12 = datetime(2026, 3, 2, 12, 0, tzinfo=AMS)


def summary(limits):
    return {
        n: (x.effective_limit_kw, x.limit_source, x.active_policy_id) for n, x in limits.items()
    }


@pytest.mark.django_db
def test_without_policies_every_node_is_limited_by_its_rating_in_tree_order(microgrid):
    limits = effective_limits(microgrid, MONDAY_12)
    assert list(limits) == ["grid", "sb-1", "grp-a", "grp-b"]
    assert summary(limits) == {
        "grid": (800.0, "PHYSICAL_RATING", None),
        "sb-1": (400.0, "PHYSICAL_RATING", None),
        "grp-a": (250.0, "PHYSICAL_RATING", None),
        "grp-b": (250.0, "PHYSICAL_RATING", None),
    }
    assert limits["sb-1"].constraints == (Constraint("PHYSICAL_RATING", 400.0, None),)


@pytest.mark.django_db
def test_node_caps_and_the_microgrid_cap_apply_where_they_are_smaller(microgrid, create_limit):
    mg = create_limit(scope="MICROGRID", limit_kw=700)
    sb = create_limit(scope="NODE", node_id="sb-1", limit_kw=350)
    create_limit(scope="NODE", node_id="grp-b", limit_kw=250)  # equal to the rating
    limits = effective_limits(microgrid, MONDAY_12)
    assert summary(limits) == {
        "grid": (700.0, "MICROGRID_LIMIT", mg.policy_id),
        "sb-1": (350.0, "NODE_LIMIT", sb.policy_id),
        "grp-a": (250.0, "PHYSICAL_RATING", None),
        "grp-b": (250.0, "NODE_LIMIT", "LP-3"),  # tie: NODE_LIMIT comes before PHYSICAL_RATING
    }
    assert limits["grid"].constraints == (
        Constraint("MICROGRID_LIMIT", 700.0, "LP-1"),
        Constraint("PHYSICAL_RATING", 800.0, None),
    )


@pytest.mark.django_db
def test_an_active_tou_cap_replaces_the_non_scheduled_cap_and_falls_back_outside_its_window(
    microgrid, create_limit
):
    create_limit(scope="NODE", node_id="sb-1", limit_kw=350)
    tou = create_limit(scope="NODE", node_id="sb-1", limit_kw=200, schedule=EVENING)
    evening = effective_limits(microgrid, MONDAY_18)["sb-1"]
    assert (evening.effective_limit_kw, evening.limit_source, evening.active_policy_id) == (
        200.0,
        "TOU_LIMIT",
        tou.policy_id,
    )
    assert evening.active_schedule == EVENING
    noon = effective_limits(microgrid, MONDAY_12)["sb-1"]
    assert (noon.effective_limit_kw, noon.limit_source, noon.active_policy_id) == (
        350.0,
        "NODE_LIMIT",
        "LP-1",
    )
    assert noon.active_schedule is None


@pytest.mark.django_db
def test_a_tou_cap_above_the_non_scheduled_cap_raises_the_limit_while_active(
    microgrid, create_limit
):
    create_limit(scope="NODE", node_id="sb-1", limit_kw=300)
    create_limit(scope="NODE", node_id="sb-1", limit_kw=380, schedule=EVENING)
    assert effective_limits(microgrid, MONDAY_18)["sb-1"].effective_limit_kw == 380.0
    assert [c.source for c in effective_limits(microgrid, MONDAY_18)["sb-1"].constraints] == [
        "TOU_LIMIT",
        "PHYSICAL_RATING",
    ]


@pytest.mark.django_db
def test_the_tou_window_is_judged_in_the_depot_time_zone(microgrid, create_limit):
    create_limit(scope="NODE", node_id="sb-1", limit_kw=200, schedule=EVENING)
    # 16:30 UTC is 17:30 in Amsterdam (CET) but before 17:00 in UTC
    at = datetime(2026, 3, 2, 16, 30, tzinfo=UTC)
    assert effective_limits(microgrid, at)["sb-1"].limit_source == "TOU_LIMIT"
    microgrid.depot.timezone = "UTC"
    microgrid.depot.save()
    assert effective_limits(microgrid, at)["sb-1"].limit_source == "PHYSICAL_RATING"


@pytest.mark.django_db
def test_an_active_scheduled_microgrid_cap_is_a_tou_limit_at_the_root(microgrid, create_limit):
    create_limit(scope="MICROGRID", limit_kw=700)
    tou = create_limit(scope="MICROGRID", limit_kw=500, schedule=EVENING)
    assert summary(effective_limits(microgrid, MONDAY_18))["grid"] == (
        500.0,
        "TOU_LIMIT",
        tou.policy_id,
    )
    assert summary(effective_limits(microgrid, MONDAY_12))["grid"] == (
        700.0,
        "MICROGRID_LIMIT",
        "LP-1",
    )
    # the microgrid cap binds the root only
    assert summary(effective_limits(microgrid, MONDAY_18))["sb-1"] == (
        400.0,
        "PHYSICAL_RATING",
        None,
    )


@pytest.mark.django_db
def test_ties_prefer_the_microgrid_limit_over_a_node_cap_on_the_root(microgrid, create_limit):
    create_limit(scope="NODE", node_id="grid", limit_kw=600)
    mg = create_limit(scope="MICROGRID", limit_kw=600)
    assert summary(effective_limits(microgrid, MONDAY_12))["grid"] == (
        600.0,
        "MICROGRID_LIMIT",
        mg.policy_id,
    )


@pytest.mark.django_db
def test_a_midnight_crossing_schedule_applies_on_the_next_morning(microgrid, create_limit):
    create_limit(
        scope="NODE",
        node_id="grp-a",
        limit_kw=100,
        schedule={"days": ["FRI"], "start": "22:00", "end": "06:00"},
    )
    saturday_5 = datetime(2026, 3, 7, 5, 0, tzinfo=AMS)
    saturday_6 = datetime(2026, 3, 7, 6, 0, tzinfo=AMS)
    assert effective_limits(microgrid, saturday_5)["grp-a"].limit_source == "TOU_LIMIT"
    assert effective_limits(microgrid, saturday_6)["grp-a"].limit_source == "PHYSICAL_RATING"


@pytest.mark.django_db
def test_envelope_constraints_join_through_the_provider_seam_and_win_ties(microgrid, create_limit):
    create_limit(scope="MICROGRID", limit_kw=600)

    def envelopes(sender, *, microgrid, at, nodes, **kwargs):
        assert [n["node_id"] for n in nodes] == ["grid", "sb-1", "grp-a", "grp-b"]
        return [
            ("grid", Constraint("OPERATING_ENVELOPE", 600.0, "ENV-2")),
            ("sb-1", Constraint("OPERATING_ENVELOPE", 390.0, "ENV-1")),
            ("nowhere", Constraint("OPERATING_ENVELOPE", 1.0, "ENV-9")),
        ]

    limit_constraints.connect(envelopes, dispatch_uid="test.envelopes")
    try:
        limits = effective_limits(microgrid, MONDAY_12)
    finally:
        limit_constraints.disconnect(dispatch_uid="test.envelopes")
    assert summary(limits)["grid"] == (600.0, "OPERATING_ENVELOPE", None)
    assert limits["grid"].envelope_ids == ("ENV-2",)
    assert summary(limits)["sb-1"] == (390.0, "OPERATING_ENVELOPE", None)
    assert limits["grp-a"].envelope_ids == ()


@pytest.mark.django_db
def test_effective_limits_read_in_a_constant_number_of_queries(
    microgrid, create_limit, django_assert_num_queries
):
    for node in ("sb-1", "grp-a", "grp-b"):
        create_limit(scope="NODE", node_id=node, limit_kw=100)
        create_limit(scope="NODE", node_id=node, limit_kw=90, schedule=EVENING)
    create_limit(scope="MICROGRID", limit_kw=700)
    microgrid = microgrid_get("MG.NORTH-1", user=SYSTEM)  # as views load it: with its depot
    nodes = node_rows(microgrid)
    # Plus one query per receiver of limit_constraints (the envelopes app answers it).
    providers = len(limit_constraints.receivers)
    assert providers == 1
    with django_assert_num_queries(1 + providers):
        effective_limits(microgrid, MONDAY_18, nodes=nodes)
    with django_assert_num_queries(2 + providers):
        effective_limits(microgrid, MONDAY_18)


@pytest.mark.django_db
def test_the_active_document_gives_the_roots_figures_for_the_microgrid(microgrid, create_limit):
    create_limit(scope="MICROGRID", limit_kw=700)
    tou = create_limit(scope="NODE", node_id="sb-1", limit_kw=200, schedule=EVENING)
    doc = active_limits_document(microgrid, MONDAY_18)
    assert doc["at"] == "2026-03-02T17:00:00+00:00"
    assert doc["microgrid"] == {
        "effective_limit_kw": 700.0,
        "limit_source": "MICROGRID_LIMIT",
        "active_policy_id": "LP-1",
    }
    assert doc["nodes"][1] == {
        "node_id": "sb-1",
        "effective_limit_kw": 200.0,
        "limit_source": "TOU_LIMIT",
        "active_policy_id": tou.policy_id,
        "active_schedule": EVENING,
        "envelope_ids": [],
        "effective_limit_a": None,
        "limit_a_source": None,
        "active_policy_id_a": None,
    }


@pytest.mark.django_db
def test_an_empty_microgrid_has_no_effective_limit(empty_microgrid):
    doc = active_limits_document(empty_microgrid, MONDAY_12)
    assert doc["microgrid"] == {
        "effective_limit_kw": None,
        "limit_source": None,
        "active_policy_id": None,
    }
    assert doc["nodes"] == []
