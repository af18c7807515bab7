"""The limits API: shapes, status codes and error bodies; nothing changes on any error."""

import pytest

from microgrid.limits.models import LimitPolicy

BASE = "/api/microgrids/MG.NORTH-1/limits/"
EVENING = {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "17:00", "end": "21:00"}


def post(client, body):
    return client.post(BASE, body, format="json")


def counts():
    return (LimitPolicy.objects.count(), LimitPolicy.history.count())


def assert_error_body(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body


@pytest.mark.django_db
def test_post_creates_a_policy_and_answers_201_with_it(operator_api, microgrid):
    response = post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "policy_id",
        "scope",
        "node_id",
        "limit_kw",
        "limit_a",
        "schedule",
        "source",
        "updated_at",
    }
    assert body["policy_id"] == "LP-1"
    assert (body["scope"], body["node_id"], body["limit_kw"], body["schedule"], body["source"]) == (
        "NODE",
        "sb-1",
        350.0,
        None,
        "MANUAL",
    )
    assert body["updated_at"].endswith("+00:00")


@pytest.mark.django_db
def test_a_scheduled_microgrid_limit_round_trips(support_api, microgrid):
    response = post(
        support_api,
        {"scope": "MICROGRID", "node_id": None, "limit_kw": 612.345, "schedule": EVENING},
    )
    assert response.status_code == 201
    got = support_api.get(BASE + response.json()["policy_id"] + "/").json()
    assert (got["scope"], got["node_id"], got["limit_kw"], got["schedule"]) == (
        "MICROGRID",
        None,
        612.345,
        EVENING,
    )


@pytest.mark.django_db
def test_the_list_shows_microgrid_limits_first_then_nodes_in_tree_order(operator_api, microgrid):
    post(operator_api, {"scope": "NODE", "node_id": "grp-b", "limit_kw": 100})
    post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 200, "schedule": EVENING})
    post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 300})
    post(operator_api, {"scope": "MICROGRID", "limit_kw": 700})
    body = operator_api.get(BASE).json()
    assert body["microgrid_id"] == "MG.NORTH-1"
    assert body["timezone"] == "Europe/Amsterdam"
    assert [(p["policy_id"], p["node_id"]) for p in body["limits"]] == [
        ("LP-4", None),
        ("LP-3", "sb-1"),
        ("LP-2", "sb-1"),
        ("LP-1", "grp-b"),
    ]


@pytest.mark.django_db
def test_put_replaces_a_policy_and_accepts_what_was_read(operator_api, microgrid):
    created = post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350}).json()
    edited = {**created, "limit_kw": 400}
    response = operator_api.put(BASE + "LP-1/", edited, format="json")
    assert response.status_code == 200
    assert response.json()["limit_kw"] == 400.0
    assert LimitPolicy.objects.get(policy_id="LP-1").limit_kw == 400.0


@pytest.mark.django_db
def test_delete_answers_204_and_the_policy_is_gone(operator_api, microgrid):
    post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    assert operator_api.delete(BASE + "LP-1/").status_code == 204
    assert_error_body(operator_api.get(BASE + "LP-1/"), 404, "LIMIT_NOT_FOUND")
    assert LimitPolicy.history.filter(history_type="-").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_an_unknown_policy_is_404_limit_not_found(operator_api, microgrid, method):
    response = getattr(operator_api, method)(
        BASE + "LP-99/", {"scope": "MICROGRID", "limit_kw": 1}, format="json"
    )
    body = assert_error_body(response, 404, "LIMIT_NOT_FOUND")
    assert body["details"] == {"microgrid_id": "MG.NORTH-1", "policy_id": "LP-99"}


@pytest.mark.django_db
def test_an_unknown_microgrid_is_404(operator_api, db):
    assert_error_body(operator_api.get("/api/microgrids/NOPE/limits/"), 404, "MICROGRID_NOT_FOUND")
    assert_error_body(
        operator_api.get("/api/microgrids/NOPE/limits/active/"), 404, "MICROGRID_NOT_FOUND"
    )


@pytest.mark.django_db
def test_a_cap_above_the_rating_is_422_naming_node_field_value_and_rating(operator_api, microgrid):
    response = post(operator_api, {"scope": "NODE", "node_id": "grp-a", "limit_kw": 250.5})
    body = assert_error_body(response, 422, "LIMIT_EXCEEDS_PHYSICAL_RATING")
    assert body["details"] == {
        "node_id": "grp-a",
        "field": "limit_kw",
        "limit_kw": 250.5,
        "physical_rating_kw": 250.0,
    }
    assert body["errors"][0]["code"] == "LIMIT_EXCEEDS_PHYSICAL_RATING"
    assert body["errors"][0]["node_id"] == "grp-a"
    assert body["errors"][0]["field"] == "limit_kw"
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_a_cap_equal_to_the_rating_is_accepted_and_read_back_exactly(operator_api, microgrid):
    response = post(operator_api, {"scope": "NODE", "node_id": "grp-a", "limit_kw": 250})
    assert response.status_code == 201
    assert operator_api.get(BASE + "LP-1/").json()["limit_kw"] == 250.0


@pytest.mark.django_db
def test_a_second_non_scheduled_cap_is_409_and_changes_nothing(operator_api, microgrid):
    post(operator_api, {"scope": "MICROGRID", "limit_kw": 700})
    before = counts()
    body = assert_error_body(
        post(operator_api, {"scope": "MICROGRID", "limit_kw": 600}), 409, "LIMIT_ALREADY_EXISTS"
    )
    assert body["details"]["policy_id"] == "LP-1"
    assert counts() == before


@pytest.mark.django_db
def test_an_overlapping_schedule_is_422_and_changes_nothing(operator_api, microgrid):
    post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 200, "schedule": EVENING})
    before = counts()
    response = post(
        operator_api,
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": 100,
            "schedule": {"days": ["WED"], "start": "06:00", "end": "17:01"},
        },
    )
    body = assert_error_body(response, 422, "LIMIT_SCHEDULE_OVERLAP")
    assert body["errors"][0]["field"] == "schedule"
    assert counts() == before


@pytest.mark.django_db
def test_an_unknown_node_is_422_node_not_found(operator_api, microgrid):
    body = assert_error_body(
        post(operator_api, {"scope": "NODE", "node_id": "x-1", "limit_kw": 10}),
        422,
        "NODE_NOT_FOUND",
    )
    assert body["errors"][0]["node_id"] == "x-1"
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_field_errors_are_listed_at_once_sorted(operator_api, microgrid):
    response = post(
        operator_api,
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": -1,
            "schedule": {"days": ["XYZ"], "start": "25:00", "end": "10:00"},
        },
    )
    body = assert_error_body(response, 422, "FIELD_INVALID")
    assert [e["field"] for e in body["errors"]] == ["limit_kw", "schedule.days", "schedule.start"]
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_a_failed_put_changes_nothing(operator_api, microgrid):
    post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    before = counts()
    response = operator_api.put(
        BASE + "LP-1/", {"scope": "NODE", "node_id": "sb-1", "limit_kw": 999}, format="json"
    )
    assert_error_body(response, 422, "LIMIT_EXCEEDS_PHYSICAL_RATING")
    response = operator_api.put(
        BASE + "LP-1/",
        {"policy_id": "LP-7", "scope": "NODE", "node_id": "sb-1", "limit_kw": 9},
        format="json",
    )
    body = assert_error_body(response, 422, "FIELD_INVALID")
    assert body["errors"][0]["field"] == "policy_id"
    assert counts() == before
    assert operator_api.get(BASE + "LP-1/").json()["limit_kw"] == 350.0


@pytest.mark.django_db
def test_a_number_too_large_for_a_float_is_field_invalid_not_a_crash(operator_api, microgrid):
    raw = b'{"scope": "NODE", "node_id": "sb-1", "limit_kw": ' + b"9" * 400 + b"}"
    response = operator_api.post(BASE, raw, content_type="application/json")
    body = assert_error_body(response, 422, "FIELD_INVALID")
    assert body["errors"][0]["field"] == "limit_kw"
    assert counts() == (0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"NaN"])
def test_a_malformed_body_is_400(operator_api, microgrid, raw):
    response = operator_api.post(BASE, raw, content_type="application/json")
    assert_error_body(response, 400, "MALFORMED_REQUEST")
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_integration_clients_may_not_read_or_write_limits(integration_api, microgrid):
    assert_error_body(integration_api.get(BASE), 403, "PERMISSION_DENIED")
    assert_error_body(
        post(integration_api, {"scope": "MICROGRID", "limit_kw": 10}), 403, "PERMISSION_DENIED"
    )
    assert_error_body(integration_api.get(BASE + "active/"), 403, "PERMISSION_DENIED")


@pytest.mark.django_db
def test_anonymous_requests_are_401(anon_api, microgrid):
    assert_error_body(anon_api.get(BASE), 401, "NOT_AUTHENTICATED")
    assert_error_body(
        post(anon_api, {"scope": "MICROGRID", "limit_kw": 10}), 401, "NOT_AUTHENTICATED"
    )


# --- GET .../limits/active/ -----------------------------------------------


@pytest.mark.django_db
def test_active_limits_follow_the_schedule_at_the_time_asked(operator_api, microgrid):
    post(operator_api, {"scope": "MICROGRID", "limit_kw": 700})
    post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 200, "schedule": EVENING})
    evening = operator_api.get(BASE + "active/", {"at": "2026-03-02T17:00:00+01:00"}).json()
    assert evening["at"] == "2026-03-02T16:00:00+00:00"
    assert evening["microgrid"] == {
        "effective_limit_kw": 700.0,
        "limit_source": "MICROGRID_LIMIT",
        "active_policy_id": "LP-1",
    }
    assert [n["node_id"] for n in evening["nodes"]] == ["grid", "sb-1", "grp-a", "grp-b"]
    assert evening["nodes"][1] == {
        "node_id": "sb-1",
        "effective_limit_kw": 200.0,
        "limit_source": "TOU_LIMIT",
        "active_policy_id": "LP-3",
        "active_schedule": EVENING,
        "envelope_ids": [],
        "effective_limit_a": None,
        "limit_a_source": None,
        "active_policy_id_a": None,
    }
    before = operator_api.get(BASE + "active/", {"at": "2026-03-02T16:59:59+01:00"}).json()
    assert before["nodes"][1]["limit_source"] == "NODE_LIMIT"
    assert before["nodes"][1]["effective_limit_kw"] == 350.0
    assert before["nodes"][1]["active_policy_id"] == "LP-2"
    after = operator_api.get(BASE + "active/", {"at": "2026-03-02T20:00:00Z"}).json()
    assert after["nodes"][1]["limit_source"] == "NODE_LIMIT"


@pytest.mark.django_db
def test_an_unencoded_plus_in_at_is_read_as_the_offset(operator_api, microgrid):
    response = operator_api.get(BASE + "active/?at=2026-03-02T17:00:00+01:00")
    assert response.status_code == 200
    assert response.json()["at"] == "2026-03-02T16:00:00+00:00"


@pytest.mark.django_db
def test_active_limits_default_to_now(operator_api, microgrid):
    body = operator_api.get(BASE + "active/").json()
    assert body["at"].endswith("+00:00")
    assert body["microgrid"]["limit_source"] == "PHYSICAL_RATING"


@pytest.mark.django_db
@pytest.mark.parametrize("at", ["yesterday", "2026-03-02T17:00:00", "2026-13-02T17:00:00Z", ""])
def test_a_bad_at_is_422_field_invalid_naming_at(operator_api, microgrid, at):
    body = assert_error_body(operator_api.get(BASE + "active/", {"at": at}), 422, "FIELD_INVALID")
    assert body["errors"][0]["field"] == "at"


@pytest.mark.django_db
def test_the_active_endpoint_reads_in_a_constant_number_of_queries(
    operator_api, microgrid, django_assert_max_num_queries
):
    for node in ("sb-1", "grp-a", "grp-b"):
        post(operator_api, {"scope": "NODE", "node_id": node, "limit_kw": 100})
    with django_assert_max_num_queries(6):
        assert operator_api.get(BASE + "active/").status_code == 200


@pytest.mark.django_db
def test_the_microgrid_card_has_a_limits_section(operator_api, microgrid):
    post(operator_api, {"scope": "MICROGRID", "limit_kw": 700})
    post(operator_api, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 300})
    card = operator_api.get("/api/microgrids/MG.NORTH-1/").json()
    assert card["limits"]["effective_limit_kw"] == 700.0
    assert card["limits"]["limit_source"] == "MICROGRID_LIMIT"
    assert card["limits"]["active_policy_id"] == "LP-1"
    assert card["limits"]["policy_count"] == 2
