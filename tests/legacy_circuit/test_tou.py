"""GET/POST /api/circuit/{circuit_id}/tou_limits: legacy shapes over canonical limit policies."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.legacy_circuit.conftest import assert_body

pytestmark = pytest.mark.django_db

URL = "/api/circuit/{}/tou_limits"
AMS = ZoneInfo("Europe/Amsterdam")
# Monday 2 March 2026, 18:00 in the depot's zone: inside a MON 17:00-21:00 window.
MONDAY_EVENING = datetime(2026, 3, 2, 18, 0, tzinfo=AMS)
EVENING = {"start": "17:00", "end": "21:00", "days": ["MON", "FRI", "TUE"], "limit_kw": 200}
EVENING_SCHEDULE = {"days": ["MON", "TUE", "FRI"], "start": "17:00", "end": "21:00"}
NIGHT = {"start": "22:00", "end": "06:00", "days": ["SAT"], "limit_kw": 150.5}


def write(client, circuit_id, *items, **extra):
    return client.post(URL.format(circuit_id), {"tou_limits": list(items), **extra}, format="json")


def canonical_schedules(client, scope="NODE", node_id="sb-1"):
    """The scheduled policies of one target as the canonical limits endpoint lists them."""
    limits = client.get("/api/microgrids/MG.NORTH-1/limits/").json()["limits"]
    return [
        p
        for p in limits
        if p["scope"] == scope and p["node_id"] == node_id and p["schedule"] is not None
    ]


def as_legacy(policies):
    return [
        {
            "start": p["schedule"]["start"],
            "end": p["schedule"]["end"],
            "days": p["schedule"]["days"],
            "limit_kw": p["limit_kw"],
        }
        for p in policies
    ]


def test_a_circuit_without_scheduled_limits_reads_an_empty_list(integration_api, circuits):
    response = integration_api.get(URL.format("CIR-101"))
    assert response.status_code == 200
    assert_body(response, "tou_empty")


def test_a_write_answers_as_the_read_and_the_read_returns_it(integration_api, circuits):
    written = write(integration_api, "CIR-101", EVENING, NIGHT)

    assert written.status_code == 200
    assert_body(written, "tou_written")
    assert_body(integration_api.get(URL.format("CIR-101")), "tou_written")


def test_a_write_becomes_legacy_tou_policies_on_the_mapped_node(
    integration_api, operator_api, circuits
):
    write(integration_api, "CIR-101", EVENING, NIGHT)

    policies = canonical_schedules(operator_api)
    assert [(p["source"], p["limit_kw"]) for p in policies] == [
        ("LEGACY_TOU", 200.0),
        ("LEGACY_TOU", 150.5),
    ]
    assert policies[0]["schedule"] == {
        "days": ["MON", "TUE", "FRI"],
        "start": "17:00",
        "end": "21:00",
    }


def test_the_active_limit_and_a_cycle_reflect_a_legacy_write(
    integration_api, operator_api, circuits
):
    from balancing.services import cycle_request, trigger_of
    from microgrid.topology.models import Microgrid

    write(integration_api, "CIR-101", EVENING)

    active = operator_api.get(
        "/api/microgrids/MG.NORTH-1/limits/active/", {"at": MONDAY_EVENING.isoformat()}
    ).json()
    sb1 = next(n for n in active["nodes"] if n["node_id"] == "sb-1")
    assert (sb1["effective_limit_kw"], sb1["limit_source"]) == (200.0, "TOU_LIMIT")
    outside = operator_api.get(
        "/api/microgrids/MG.NORTH-1/limits/active/",
        {"at": MONDAY_EVENING.replace(hour=12).isoformat()},
    ).json()
    sb1 = next(n for n in outside["nodes"] if n["node_id"] == "sb-1")
    assert (sb1["effective_limit_kw"], sb1["limit_source"]) == (400.0, "PHYSICAL_RATING")

    cycle = cycle_request(
        microgrid=Microgrid.objects.get(microgrid_id="MG.NORTH-1"),
        trigger=trigger_of("API"),
        now=lambda: MONDAY_EVENING,
    ).cycle
    node = next(n for n in cycle.document["nodes"] if n["node_id"] == "sb-1")
    assert (node["effective_limit_kw"], node["limit_source"]) == (200.0, "TOU_LIMIT")


def test_a_microgrid_circuit_writes_scheduled_microgrid_limits(
    integration_api, operator_api, circuits
):
    response = write(integration_api, "CIR-100", {**EVENING, "limit_kw": 600})

    assert response.status_code == 200
    policies = canonical_schedules(operator_api, scope="MICROGRID", node_id=None)
    assert [(p["source"], p["limit_kw"]) for p in policies] == [("LEGACY_TOU", 600.0)]
    assert as_legacy(policies) == response.json()["tou_limits"]


def test_legacy_and_canonical_reads_agree_after_a_legacy_write(
    integration_api, operator_api, circuits
):
    write(integration_api, "CIR-101", EVENING, NIGHT)

    legacy = integration_api.get(URL.format("CIR-101")).json()["tou_limits"]
    assert legacy == as_legacy(canonical_schedules(operator_api))


def test_legacy_and_canonical_reads_agree_after_canonical_writes(
    integration_api, operator_api, circuits
):
    created = operator_api.post(
        "/api/microgrids/MG.NORTH-1/limits/",
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": 250,
            "schedule": {"days": ["SUN"], "start": "08:00", "end": "12:00"},
        },
        format="json",
    ).json()
    # A non-scheduled cap is not a TOU limit; another node's schedule is another circuit's.
    operator_api.post(
        "/api/microgrids/MG.NORTH-1/limits/",
        {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350},
        format="json",
    )
    operator_api.post(
        "/api/microgrids/MG.NORTH-1/limits/",
        {"scope": "NODE", "node_id": "grp-b", "limit_kw": 100, "schedule": EVENING_SCHEDULE},
        format="json",
    )

    legacy = integration_api.get(URL.format("CIR-101")).json()["tou_limits"]
    assert legacy == [{"start": "08:00", "end": "12:00", "days": ["SUN"], "limit_kw": 250.0}]
    assert legacy == as_legacy(canonical_schedules(operator_api))
    other = integration_api.get(URL.format("CIR.B-2")).json()["tou_limits"]
    assert other == as_legacy(canonical_schedules(operator_api, node_id="grp-b"))

    operator_api.delete(f"/api/microgrids/MG.NORTH-1/limits/{created['policy_id']}/")
    assert integration_api.get(URL.format("CIR-101")).json()["tou_limits"] == []


def test_a_write_replaces_every_scheduled_policy_of_the_target_and_keeps_the_rest(
    integration_api, operator_api, circuits
):
    from microgrid.limits.models import LimitPolicy

    def create(**data):
        return operator_api.post("/api/microgrids/MG.NORTH-1/limits/", data, format="json").json()

    manual = create(
        scope="NODE",
        node_id="sb-1",
        limit_kw=250,
        schedule={"days": ["SUN"], "start": "08:00", "end": "12:00"},
    )
    cap = create(scope="NODE", node_id="sb-1", limit_kw=350)
    other = create(scope="NODE", node_id="grp-b", limit_kw=100, schedule=EVENING_SCHEDULE)

    response = write(integration_api, "CIR-101", NIGHT)

    assert response.json()["tou_limits"] == [
        {"start": "22:00", "end": "06:00", "days": ["SAT"], "limit_kw": 150.5}
    ]
    remaining = set(LimitPolicy.objects.values_list("policy_id", flat=True))
    assert manual["policy_id"] not in remaining
    assert {cap["policy_id"], other["policy_id"]} <= remaining
    # The replaced policy stays in history.
    assert LimitPolicy.history.filter(
        policy_id=manual["policy_id"], history_type="-", source="MANUAL"
    ).exists()


def test_rewriting_a_manual_schedule_makes_it_legacy_tou_and_keeps_its_id(
    integration_api, operator_api, circuits
):
    manual = operator_api.post(
        "/api/microgrids/MG.NORTH-1/limits/",
        {"scope": "NODE", "node_id": "sb-1", "limit_kw": 200, "schedule": EVENING_SCHEDULE},
        format="json",
    ).json()

    write(integration_api, "CIR-101", EVENING)

    [policy] = canonical_schedules(operator_api)
    assert (policy["policy_id"], policy["source"]) == (manual["policy_id"], "LEGACY_TOU")


def test_writing_the_same_limits_twice_changes_nothing(integration_api, circuits, row_counts):
    write(integration_api, "CIR-101", EVENING, NIGHT)
    before = row_counts()

    again = write(integration_api, "CIR-101", NIGHT, EVENING)

    assert again.status_code == 200
    after = row_counts()
    assert after.pop("usage") == before.pop("usage") + 1
    assert after == before


def test_an_empty_list_removes_the_targets_scheduled_limits(integration_api, circuits):
    write(integration_api, "CIR-101", EVENING)
    response = write(integration_api, "CIR-101")
    assert response.json() == {"circuit_id": "CIR-101", "tou_limits": []}


def test_the_circuit_id_that_was_read_may_be_sent_back(integration_api, circuits):
    read = integration_api.get(URL.format("CIR-101")).json()
    read["tou_limits"] = [EVENING]
    assert integration_api.post(URL.format("CIR-101"), read, format="json").status_code == 200

    response = integration_api.post(
        URL.format("CIR-101"), {"circuit_id": "CIR-100", "tou_limits": [EVENING]}, format="json"
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["circuit_id"]


def refused(client, row_counts, method, circuit_id, body=None):
    before = row_counts()
    if method == "GET":
        response = client.get(URL.format(circuit_id))
    else:
        response = client.post(URL.format(circuit_id), body, format="json")
    after = row_counts()
    assert after.pop("usage") == before.pop("usage") + 1, "a refused call is audited"
    assert after == before, "a refused call changes nothing"
    return response


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_asset_mapping_is_422_tou_scope_unsupported(
    integration_api, circuits, row_counts, method
):
    response = refused(integration_api, row_counts, method, "CIR-102", {"tou_limits": [EVENING]})
    assert response.status_code == 422
    assert_body(response, "tou_scope_unsupported")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_more_than_one_active_alias_is_422_tou_mapping_ambiguous(
    integration_api, circuits, row_counts, method
):
    response = refused(integration_api, row_counts, method, "CIR-103", {"tou_limits": [EVENING]})
    assert response.status_code == 422
    assert_body(response, "tou_mapping_ambiguous")


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("circuit_id", "reason"),
    [
        ("NO-SUCH-CIRCUIT", "UNKNOWN_CIRCUIT"),
        ("CIR-104", "NO_ALIAS"),
        ("CIR-106", "NO_ALIAS"),
        ("CIR-105", "TARGET_MISSING"),
    ],
)
def test_no_mapping_is_409_circuit_alias_not_resolvable(
    integration_api, circuits, row_counts, method, circuit_id, reason
):
    response = refused(integration_api, row_counts, method, circuit_id, {"tou_limits": [EVENING]})
    assert response.status_code == 409
    assert response.json()["code"] == "CIRCUIT_ALIAS_NOT_RESOLVABLE"
    assert response.json()["details"] == {"circuit_id": circuit_id, "reason": reason}


def test_guardrail_and_overlap_problems_are_422_together_and_change_nothing(
    integration_api, circuits, row_counts
):
    write(integration_api, "CIR-101", NIGHT)

    response = refused(
        integration_api,
        row_counts,
        "POST",
        "CIR-101",
        {
            "tou_limits": [
                {"start": "17:00", "end": "21:00", "days": ["MON"], "limit_kw": 500},
                {"start": "18:00", "end": "19:00", "days": ["MON"], "limit_kw": 100},
            ]
        },
    )

    assert response.status_code == 422
    assert_body(response, "tou_guardrail_and_overlap")
    assert integration_api.get(URL.format("CIR-101")).json()["tou_limits"] == [
        {"start": "22:00", "end": "06:00", "days": ["SAT"], "limit_kw": 150.5}
    ]


def test_a_microgrid_limit_above_the_roots_rating_is_refused(integration_api, circuits, row_counts):
    response = refused(
        integration_api,
        row_counts,
        "POST",
        "CIR-100",
        {"tou_limits": [{**EVENING, "limit_kw": 801}]},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "LIMIT_EXCEEDS_PHYSICAL_RATING"
    assert response.json()["details"]["node_id"] == "grid"
    assert response.json()["errors"][0]["field"] == "tou_limits[0].limit_kw"


def test_every_field_problem_is_listed_at_once_in_legacy_terms(
    integration_api, circuits, row_counts
):
    response = refused(
        integration_api,
        row_counts,
        "POST",
        "CIR-101",
        {"tou_limits": [{"start": "25:00", "days": "MON", "limit_kw": -1, "zone": "x"}], "x": 1},
    )
    assert response.status_code == 422
    assert_body(response, "tou_field_invalid")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tou_limits": None},
        {"tou_limits": {"start": "17:00"}},
        {"tou_limits": ["17:00-21:00"]},
        {"tou_limits": [{**EVENING, "limit_kw": True}]},
        {"tou_limits": [{**EVENING, "limit_kw": 10**400}]},
        {"tou_limits": [{**EVENING, "days": ["MON", "MON"]}]},
        {"tou_limits": [{**EVENING, "end": "17:00"}]},
        {"tou_limits": [EVENING] * 501},
    ],
)
def test_a_bad_body_is_422_field_invalid_and_changes_nothing(
    integration_api, circuits, row_counts, body
):
    response = refused(integration_api, row_counts, "POST", "CIR-101", body)
    assert response.status_code == 422
    assert response.json()["code"] == "FIELD_INVALID"


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"'])
def test_a_malformed_body_is_400(integration_api, circuits, row_counts, raw):
    before = row_counts()
    response = integration_api.post(
        URL.format("CIR-101"), data=raw, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_REQUEST"
    after = row_counts()
    assert after.pop("usage") == before.pop("usage") + 1
    assert after == before
