"""Policy writes through the services: validation, the guardrail, duplicates, overlaps, history."""

import pytest
from django.db import transaction

from microgrid.common.errors import DomainError
from microgrid.limits import signals
from microgrid.limits.api.serializers import policy_input
from microgrid.limits.models import LimitPolicy
from microgrid.limits.services import (
    limit_policy_create,
    limit_policy_delete,
    limit_policy_update,
)
from microgrid.topology.selectors import topology_document
from microgrid.topology.services import topology_replace

EVENING = {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "17:00", "end": "21:00"}


def refused(fn, data=None, **kwargs) -> DomainError:
    """The refusal of `fn`; `data` is a client's body, read by the policy serializer first."""
    with pytest.raises(DomainError) as info:
        if data is not None:
            policy = kwargs.get("policy")
            kwargs.update(policy_input(data, policy_id=policy.policy_id if policy else None))
        fn(**kwargs)
    return info.value


@pytest.mark.django_db
def test_a_node_limit_below_the_rating_is_stored_exactly(create_limit):
    policy = create_limit(scope="NODE", node_id="sb-1", limit_kw=349.999)
    policy.refresh_from_db()
    assert (policy.policy_id, policy.scope, policy.node.node_id) == ("LP-1", "NODE", "sb-1")
    assert policy.limit_kw == 349.999
    assert policy.source == "MANUAL"
    assert policy.schedule is None


@pytest.mark.django_db
def test_a_node_limit_equal_to_the_rating_is_accepted_and_stored_exactly(create_limit):
    policy = create_limit(scope="NODE", node_id="sb-1", limit_kw=400)
    policy.refresh_from_db()
    assert policy.limit_kw == 400.0


@pytest.mark.django_db
def test_a_node_limit_above_the_rating_is_refused_naming_node_field_value_and_rating(
    microgrid, row_counts
):
    before = row_counts()
    error = refused(
        limit_policy_create,
        microgrid=microgrid,
        data={"scope": "NODE", "node_id": "sb-1", "limit_kw": 400.001},
    )
    assert error.status == 422
    assert error.code == "LIMIT_EXCEEDS_PHYSICAL_RATING"
    assert error.details == {
        "node_id": "sb-1",
        "field": "limit_kw",
        "limit_kw": 400.001,
        "physical_rating_kw": 400.0,
    }
    assert [(e.code, e.node_id, e.field) for e in error.errors] == [
        ("LIMIT_EXCEEDS_PHYSICAL_RATING", "sb-1", "limit_kw")
    ]
    assert row_counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("limit, ok", [(799.5, True), (800, True), (800.5, False)])
def test_the_microgrid_limit_is_guarded_by_the_roots_rating(microgrid, limit, ok, row_counts):
    data = {"scope": "MICROGRID", "limit_kw": limit}
    if ok:
        policy = limit_policy_create(microgrid=microgrid, **policy_input(data))
        assert LimitPolicy.objects.get(pk=policy.pk).limit_kw == float(limit)
    else:
        error = refused(limit_policy_create, microgrid=microgrid, data=data)
        assert error.code == "LIMIT_EXCEEDS_PHYSICAL_RATING"
        assert error.details["node_id"] == "grid"
        assert error.details["physical_rating_kw"] == 800.0
        assert row_counts() == (0, 0)


@pytest.mark.django_db
def test_a_scheduled_cap_is_guarded_too(microgrid):
    error = refused(
        limit_policy_create,
        microgrid=microgrid,
        data={"scope": "NODE", "node_id": "grp-a", "limit_kw": 251, "schedule": EVENING},
    )
    assert error.code == "LIMIT_EXCEEDS_PHYSICAL_RATING"
    assert error.details["node_id"] == "grp-a"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data, fields",
    [
        ({}, ["limit_kw", "scope"]),
        ({"scope": "SITE", "limit_kw": 10}, ["scope"]),
        ({"scope": "NODE", "limit_kw": 10}, ["node_id"]),
        ({"scope": "NODE", "node_id": "bad id!", "limit_kw": 10}, ["node_id"]),
        ({"scope": "MICROGRID", "node_id": "grid", "limit_kw": 10}, ["node_id"]),
        ({"scope": "NODE", "node_id": "sb-1", "limit_kw": 0}, ["limit_kw"]),
        ({"scope": "NODE", "node_id": "sb-1", "limit_kw": -5}, ["limit_kw"]),
        ({"scope": "NODE", "node_id": "sb-1", "limit_kw": "300"}, ["limit_kw"]),
        ({"scope": "NODE", "node_id": "sb-1", "limit_kw": True}, ["limit_kw"]),
        ({"scope": "NODE", "node_id": "sb-1", "limit_kw": float("inf")}, ["limit_kw"]),
        ({"scope": "NODE", "node_id": "sb-1", "limit_kw": float("nan")}, ["limit_kw"]),
        ({"scope": "NODE", "node_id": "sb-1", "limit_kw": 10, "source": "ME"}, ["source"]),
        ({"scope": "NODE", "node_id": "sb-1", "limit_kw": 10, "colour": "red"}, ["colour"]),
        (
            {
                "scope": "NODE",
                "node_id": "sb-1",
                "limit_kw": 10,
                "schedule": {"days": ["MON"], "start": "10:00", "end": "10:00"},
            },
            ["schedule.end"],
        ),
        (
            {"scope": "NODE", "node_id": "sb-1", "limit_kw": 10, "schedule": "evenings"},
            ["schedule"],
        ),
    ],
)
def test_bad_fields_are_field_invalid_and_change_nothing(microgrid, data, fields, row_counts):
    error = refused(limit_policy_create, microgrid=microgrid, data=data)
    assert error.status == 422
    assert error.code == "FIELD_INVALID"
    assert sorted(e.field for e in error.errors) == fields
    assert row_counts() == (0, 0)


@pytest.mark.django_db
def test_an_unknown_node_is_node_not_found(microgrid, row_counts):
    error = refused(
        limit_policy_create,
        microgrid=microgrid,
        data={"scope": "NODE", "node_id": "sb-9", "limit_kw": 10},
    )
    assert (error.status, error.code, error.details["node_id"]) == (422, "NODE_NOT_FOUND", "sb-9")
    assert row_counts() == (0, 0)


@pytest.mark.django_db
def test_a_microgrid_limit_on_an_empty_microgrid_is_node_not_found(empty_microgrid):
    error = refused(
        limit_policy_create, microgrid=empty_microgrid, data={"scope": "MICROGRID", "limit_kw": 10}
    )
    assert error.code == "NODE_NOT_FOUND"


@pytest.mark.django_db
def test_a_second_non_scheduled_cap_on_one_target_is_a_conflict(
    create_limit, microgrid, row_counts
):
    first = create_limit(scope="NODE", node_id="sb-1", limit_kw=300)
    before = row_counts()
    error = refused(
        limit_policy_create,
        microgrid=microgrid,
        data={"scope": "NODE", "node_id": "sb-1", "limit_kw": 200},
    )
    assert (error.status, error.code) == (409, "LIMIT_ALREADY_EXISTS")
    assert error.details == {"scope": "NODE", "node_id": "sb-1", "policy_id": first.policy_id}
    assert row_counts() == before


@pytest.mark.django_db
def test_a_second_microgrid_limit_is_a_conflict(create_limit, microgrid):
    create_limit(scope="MICROGRID", limit_kw=700)
    error = refused(
        limit_policy_create, microgrid=microgrid, data={"scope": "MICROGRID", "limit_kw": 600}
    )
    assert error.code == "LIMIT_ALREADY_EXISTS"


@pytest.mark.django_db
def test_a_non_scheduled_cap_and_schedules_coexist_on_one_target(create_limit):
    create_limit(scope="NODE", node_id="sb-1", limit_kw=350)
    create_limit(scope="NODE", node_id="sb-1", limit_kw=200, schedule=EVENING)
    create_limit(
        scope="NODE",
        node_id="sb-1",
        limit_kw=150,
        schedule={"days": ["MON"], "start": "21:00", "end": "06:00"},
    )
    assert LimitPolicy.objects.count() == 3


@pytest.mark.django_db
def test_overlapping_schedules_on_one_target_are_refused(create_limit, microgrid, row_counts):
    first = create_limit(scope="NODE", node_id="sb-1", limit_kw=200, schedule=EVENING)
    before = row_counts()
    error = refused(
        limit_policy_create,
        microgrid=microgrid,
        data={
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": 150,
            "schedule": {"days": ["FRI"], "start": "20:30", "end": "23:00"},
        },
    )
    assert (error.status, error.code) == (422, "LIMIT_SCHEDULE_OVERLAP")
    assert error.details["policy_id"] == first.policy_id
    assert error.errors[0].field == "schedule"
    assert row_counts() == before


@pytest.mark.django_db
def test_a_sunday_night_schedule_overlapping_monday_morning_is_refused(create_limit, microgrid):
    create_limit(
        scope="MICROGRID",
        limit_kw=500,
        schedule={"days": ["SUN"], "start": "22:00", "end": "02:00"},
    )
    error = refused(
        limit_policy_create,
        microgrid=microgrid,
        data={
            "scope": "MICROGRID",
            "limit_kw": 400,
            "schedule": {"days": ["MON"], "start": "01:00", "end": "05:00"},
        },
    )
    assert error.code == "LIMIT_SCHEDULE_OVERLAP"


@pytest.mark.django_db
def test_the_same_schedule_on_different_targets_is_fine(create_limit):
    create_limit(scope="NODE", node_id="grp-a", limit_kw=200, schedule=EVENING)
    create_limit(scope="NODE", node_id="grp-b", limit_kw=200, schedule=EVENING)
    create_limit(scope="MICROGRID", limit_kw=600, schedule=EVENING)
    assert LimitPolicy.objects.count() == 3


@pytest.mark.django_db
def test_guardrail_and_overlap_problems_are_reported_together(create_limit, microgrid):
    create_limit(scope="NODE", node_id="sb-1", limit_kw=200, schedule=EVENING)
    error = refused(
        limit_policy_create,
        microgrid=microgrid,
        data={"scope": "NODE", "node_id": "sb-1", "limit_kw": 450, "schedule": EVENING},
    )
    assert [e.code for e in error.errors] == [
        "LIMIT_EXCEEDS_PHYSICAL_RATING",
        "LIMIT_SCHEDULE_OVERLAP",
    ]


@pytest.mark.django_db
def test_an_update_is_checked_against_the_other_policies_but_not_itself(create_limit):
    scheduled = create_limit(scope="NODE", node_id="sb-1", limit_kw=200, schedule=EVENING)
    create_limit(scope="NODE", node_id="sb-1", limit_kw=300)
    updated = limit_policy_update(
        policy=scheduled,
        **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 180, "schedule": EVENING}),
    )
    assert LimitPolicy.objects.get(pk=updated.pk).limit_kw == 180
    error = refused(
        limit_policy_update,
        policy=scheduled,
        data={"scope": "NODE", "node_id": "sb-1", "limit_kw": 180},
    )
    assert error.code == "LIMIT_ALREADY_EXISTS"


@pytest.mark.django_db
def test_an_update_keeps_the_id_and_can_move_the_policy(create_limit, row_counts):
    policy = create_limit(scope="NODE", node_id="sb-1", limit_kw=300)
    limit_policy_update(policy=policy, **policy_input({"scope": "MICROGRID", "limit_kw": 750}))
    policy.refresh_from_db()
    assert (policy.policy_id, policy.scope, policy.node, policy.limit_kw) == (
        "LP-1",
        "MICROGRID",
        None,
        750,
    )
    assert row_counts() == (1, 2)


@pytest.mark.django_db
def test_an_update_above_the_rating_changes_nothing(create_limit, row_counts):
    policy = create_limit(scope="NODE", node_id="sb-1", limit_kw=300)
    before = row_counts()
    error = refused(
        limit_policy_update,
        policy=policy,
        data={"scope": "NODE", "node_id": "sb-1", "limit_kw": 401},
    )
    assert error.code == "LIMIT_EXCEEDS_PHYSICAL_RATING"
    policy.refresh_from_db()
    assert policy.limit_kw == 300
    assert row_counts() == before


@pytest.mark.django_db
def test_an_update_with_the_same_values_writes_no_history(create_limit, row_counts):
    policy = create_limit(scope="NODE", node_id="sb-1", limit_kw=300)
    limit_policy_update(
        policy=policy, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 300})
    )
    assert row_counts() == (1, 1)


@pytest.mark.django_db
def test_policy_ids_are_numbered_per_microgrid_and_never_reused(create_limit):
    first = create_limit(scope="NODE", node_id="sb-1", limit_kw=300)
    limit_policy_delete(policy=first)
    second = create_limit(scope="NODE", node_id="sb-1", limit_kw=300)
    assert (first.policy_id, second.policy_id) == ("LP-1", "LP-2")


@pytest.mark.django_db
def test_create_update_and_delete_are_recorded_in_history_with_the_user(
    create_limit, microgrid, make_user
):
    user = make_user("operator")
    policy = limit_policy_create(
        microgrid=microgrid,
        **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 300}),
        user=user,
    )
    limit_policy_update(
        policy=policy,
        **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 250}),
        user=user,
    )
    limit_policy_delete(policy=policy, user=user)
    history = LimitPolicy.history.filter(policy_id="LP-1").order_by("history_id")
    assert [(h.history_type, h.limit_kw, h.history_user) for h in history] == [
        ("+", 300, user),
        ("~", 250, user),
        ("-", 250, user),
    ]


@pytest.mark.django_db
def test_removing_a_node_that_a_policy_names_is_node_in_use(
    create_limit, microgrid, small_topology
):
    create_limit(scope="NODE", node_id="grp-b", limit_kw=200)
    nodes = [n for n in small_topology["nodes"] if n["node_id"] != "grp-b"]
    assets = [a for a in small_topology["assets"] if a["node_id"] != "grp-b"]
    error = refused(
        topology_replace, microgrid=microgrid, base_version=1, nodes=nodes, assets=assets
    )
    assert error.code == "NODE_IN_USE"
    assert [(e.code, e.node_id) for e in error.errors] == [("NODE_IN_USE", "grp-b")]
    assert error.errors[0].details == {"references": [{"type": "LIMIT_POLICY", "id": "LP-1"}]}
    assert [n["node_id"] for n in topology_document(microgrid)["nodes"]] == [
        "grid",
        "sb-1",
        "grp-a",
        "grp-b",
    ]


@pytest.mark.django_db
def test_a_node_is_free_to_remove_once_its_policy_is_deleted(
    create_limit, microgrid, small_topology
):
    policy = create_limit(scope="NODE", node_id="grp-b", limit_kw=200)
    limit_policy_delete(policy=policy)
    nodes = [n for n in small_topology["nodes"] if n["node_id"] != "grp-b"]
    assets = [a for a in small_topology["assets"] if a["node_id"] != "grp-b"]
    topology_replace(microgrid=microgrid, base_version=1, nodes=nodes, assets=assets)
    assert [n["node_id"] for n in topology_document(microgrid)["nodes"]] == [
        "grid",
        "sb-1",
        "grp-a",
    ]


@pytest.mark.django_db(transaction=True)
def test_hooks_hear_of_changes_after_the_commit_only(microgrid):
    heard = []
    signals.on_limits_changed(heard.append)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            limit_policy_create(
                microgrid=microgrid,
                **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 300}),
            )
            raise RuntimeError("rolled back")
        assert heard == []
        limit_policy_create(
            microgrid=microgrid,
            **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 300}),
        )
        assert heard == ["MG.NORTH-1"]
    finally:
        signals.unregister(heard.append)
