"""Per-phase current limits (issue 19): limit_a on policies, the rating_a guardrail, and the
effective current limit with its source beside the kW limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from microgrid.limits.models import LimitPolicy

BASE = "/api/microgrids/MG.NORTH-1/limits/"
ACTIVE = BASE + "active/"
EVENING = {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "17:00", "end": "21:00"}
# A Monday evening and a Monday noon in Amsterdam.
EVENING_AT = "2026-03-02T18:00:00+01:00"
NOON_AT = "2026-03-02T12:00:00+01:00"


def _node(body, node_id):
    return next(n for n in body["nodes"] if n["node_id"] == node_id)


@pytest.mark.django_db
def test_a_policy_carries_a_per_phase_current_cap(operator_api, phase_microgrid):
    response = operator_api.post(
        BASE, {"scope": "NODE", "node_id": "feeder", "limit_kw": 20, "limit_a": 25}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["limit_a"] == 25.0
    policy = LimitPolicy.objects.get()
    assert policy.limit_a == 25.0
    assert policy.history.count() == 1
    listed = operator_api.get(BASE).json()["limits"][0]
    assert listed["limit_a"] == 25.0


@pytest.mark.django_db
def test_a_current_cap_above_the_nodes_rating_a_is_refused_naming_the_field(
    operator_api, phase_microgrid
):
    response = operator_api.post(
        BASE, {"scope": "NODE", "node_id": "feeder", "limit_kw": 20, "limit_a": 40}, format="json"
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "LIMIT_EXCEEDS_PHYSICAL_RATING"
    assert body["details"] == {
        "node_id": "feeder",
        "field": "limit_a",
        "limit_a": 40.0,
        "rating_a": 32.0,
    }
    assert [(e["code"], e["field"], e["node_id"]) for e in body["errors"]] == [
        ("LIMIT_EXCEEDS_PHYSICAL_RATING", "limit_a", "feeder")
    ]
    assert LimitPolicy.objects.count() == 0


@pytest.mark.django_db
def test_a_microgrid_current_cap_is_checked_against_the_roots_rating_a(
    operator_api, phase_microgrid
):
    response = operator_api.post(
        BASE, {"scope": "MICROGRID", "limit_kw": 150, "limit_a": 251}, format="json"
    )
    assert response.status_code == 422
    assert response.json()["details"]["node_id"] == "grid"
    ok = operator_api.post(
        BASE, {"scope": "MICROGRID", "limit_kw": 150, "limit_a": 250}, format="json"
    )
    assert ok.status_code == 201


@pytest.mark.django_db
def test_kw_and_current_excess_are_reported_together(operator_api, phase_microgrid):
    response = operator_api.post(
        BASE, {"scope": "NODE", "node_id": "feeder", "limit_kw": 30, "limit_a": 40}, format="json"
    )
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == ["limit_a", "limit_kw"]


@pytest.mark.django_db
def test_without_a_rating_a_any_current_cap_is_accepted(operator_api, microgrid):
    response = operator_api.post(
        BASE, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 300, "limit_a": 999}, format="json"
    )
    assert response.status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("value", [0, -1, "16", 1e6, True])
def test_a_bad_limit_a_is_field_invalid(operator_api, phase_microgrid, value):
    response = operator_api.post(
        BASE,
        {"scope": "NODE", "node_id": "feeder", "limit_kw": 20, "limit_a": value},
        format="json",
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limit_a"
    assert LimitPolicy.objects.count() == 0


@pytest.mark.django_db
def test_the_active_read_shows_kw_and_current_limits_with_their_sources(
    operator_api, phase_microgrid
):
    operator_api.post(
        BASE, {"scope": "NODE", "node_id": "feeder", "limit_kw": 20, "limit_a": 25}, format="json"
    )
    operator_api.post(
        BASE,
        {"scope": "NODE", "node_id": "feeder", "limit_kw": 15, "schedule": EVENING},
        format="json",
    )
    noon = operator_api.get(ACTIVE, {"at": NOON_AT}).json()
    feeder = _node(noon, "feeder")
    assert (feeder["effective_limit_kw"], feeder["limit_source"]) == (20.0, "NODE_LIMIT")
    assert (feeder["effective_limit_a"], feeder["limit_a_source"]) == (25.0, "NODE_LIMIT")
    assert feeder["active_policy_id_a"] == "LP-1"
    grid = _node(noon, "grid")
    assert (grid["effective_limit_a"], grid["limit_a_source"]) == (250.0, "PHYSICAL_RATING")
    assert grid["active_policy_id_a"] is None
    # The TOU cap replaces the non-scheduled cap, its currents too: only the rating is left.
    evening = _node(operator_api.get(ACTIVE, {"at": EVENING_AT}).json(), "feeder")
    assert (evening["effective_limit_kw"], evening["limit_source"]) == (15.0, "TOU_LIMIT")
    assert (evening["effective_limit_a"], evening["limit_a_source"]) == (32.0, "PHYSICAL_RATING")


@pytest.mark.django_db
def test_a_node_without_any_current_limit_reads_null(operator_api, microgrid):
    body = operator_api.get(ACTIVE).json()
    assert all(
        (n["effective_limit_a"], n["limit_a_source"], n["active_policy_id_a"]) == (None, None, None)
        for n in body["nodes"]
    )


@pytest.mark.django_db
def test_the_limits_page_shows_the_current_limits(client, make_user, phase_microgrid):
    from microgrid.limits.services import limit_policy_create

    limit_policy_create(
        microgrid=phase_microgrid, scope="NODE", node_id="feeder", limit_kw=20, limit_a=25
    )
    client.force_login(make_user("operator"))
    page = client.get("/manage/microgrids/MG.NORTH-1/limits/").content.decode()
    assert "25 A" in page and "32 A per phase" in page
    assert 'data-testid="effective-limit-a"' in page


@pytest.mark.django_db
def test_the_limits_form_refuses_a_current_above_the_rating_beside_the_field(
    client, make_user, phase_microgrid
):
    client.force_login(make_user("operator"))
    response = client.post(
        "/manage/microgrids/MG.NORTH-1/limits/",
        {"scope": "NODE", "node_id": "feeder", "limit_kw": "20", "limit_a": "33"},
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert 'data-field="limit_a"' in page and "LIMIT_EXCEEDS_PHYSICAL_RATING" in page
    assert LimitPolicy.objects.count() == 0


def test_the_effective_current_limit_is_the_smallest_with_the_tie_order():
    from zoneinfo import ZoneInfo

    from microgrid.limits.selectors import evaluate
    from microgrid.limits.validation import PolicySpec

    nodes = [
        {
            "node_id": "g",
            "parent_id": None,
            "kind": "GRID_CONNECTION",
            "physical_rating_kw": 100,
            "rating_a": 63,
        }
    ]
    policies = [
        PolicySpec("MICROGRID", None, 90, None, "MANUAL", limit_a=63, policy_id="LP-1"),
        PolicySpec("NODE", "g", 95, None, "MANUAL", limit_a=70, policy_id="LP-2"),
    ]
    at = datetime(2026, 3, 2, 12, tzinfo=UTC)
    limit = evaluate(nodes, policies, at, ZoneInfo("UTC"))["g"]
    # 63 A from the rating and from the microgrid cap: MICROGRID_LIMIT wins the tie.
    assert (limit.current.limit_a, limit.current.source) == (63.0, "MICROGRID_LIMIT")
    assert limit.current.active_policy_id == "LP-1"
    assert len(limit.current.constraints) == 3
