"""Status events: only the active source reports, repeats are idempotent, the latest never flips."""

from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.capabilities.models import CapabilityStatusEvent
from microgrid.capabilities.selectors import capabilities_document
from tests.capabilities.conftest import MICROGRID, NOW, at, node

EVENTS = "/api/microgrids/MG.NORTH-1/capabilities/events/"


def event_body(source="plc-a", scope=None, state="AVAILABLE", event_ref="ev-1", observed_at=None):
    return {
        "capability_type": "LOAD_MANAGEMENT",
        "scope": scope or node("grp-a"),
        "source_device_id": source,
        "event_ref": event_ref,
        "state": state,
        "observed_at": (observed_at or timezone.now() - timedelta(seconds=2)).isoformat(),
        "detail": {"firmware": "4.2"},
    }


def latest(microgrid, binding_id="CB-1"):
    doc = capabilities_document(microgrid)
    return next(b for b in doc["bindings"] if b["binding_id"] == binding_id)["latest_status"]


@pytest.mark.django_db
def test_the_active_source_reports_its_status_and_gets_201_with_the_latest(
    integration_api, microgrid, bind
):
    bind("plc-a", node("grp-a"))
    body = event_body()
    response = integration_api.post(EVENTS, body, format="json")
    assert response.status_code == 201, response.json()
    answer = response.json()
    assert answer["event"]["event_ref"] == "ev-1"
    assert answer["event"]["state"] == "AVAILABLE"
    assert answer["event"]["binding_id"] == "CB-1"
    assert answer["event"]["scope"] == node("grp-a")
    assert answer["event"]["detail"] == {"firmware": "4.2"}
    assert answer["event"]["received_at"]
    assert answer["binding"]["binding_id"] == "CB-1"
    assert answer["binding"]["latest_status"] == {
        "state": "AVAILABLE",
        "observed_at": answer["event"]["observed_at"],
        "event_ref": "ev-1",
    }


@pytest.mark.django_db
def test_repeating_an_event_ref_stores_no_second_row_and_answers_the_same(
    integration_api, microgrid, bind
):
    bind("plc-a", node("grp-a"))
    body = event_body()
    first = integration_api.post(EVENTS, body, format="json")
    again = integration_api.post(EVENTS, body, format="json")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert CapabilityStatusEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_repeat_never_flips_the_latest_status(microgrid, bind, report):
    bind("plc-a", node("grp-a"))
    report("plc-a", node("grp-a"), "AVAILABLE", event_ref="ev-1", observed_at=at(0))
    report("plc-a", node("grp-a"), "UNAVAILABLE", event_ref="ev-2", observed_at=at(10))
    assert latest(microgrid)["state"] == "UNAVAILABLE"
    # ev-1 again, even claiming a newer time and another state: the stored ev-1 is the answer.
    outcome = report(
        "plc-a", node("grp-a"), "AVAILABLE", event_ref="ev-1", observed_at=at(20), now=at(20)
    )
    assert outcome.created is False
    assert (outcome.event.state, outcome.event.observed_at) == ("AVAILABLE", at(0))
    assert latest(microgrid) == {
        "state": "UNAVAILABLE",
        "observed_at": at(10).isoformat(),
        "event_ref": "ev-2",
    }
    assert CapabilityStatusEvent.objects.count() == 2


@pytest.mark.django_db
def test_the_latest_status_is_the_greatest_observed_at_then_event_ref(microgrid, bind, report):
    bind("plc-a", node("grp-a"))
    report("plc-a", node("grp-a"), "DEGRADED", event_ref="ev-5", observed_at=at(30))
    # Arrives later but was observed earlier: history, not the latest.
    report("plc-a", node("grp-a"), "AVAILABLE", event_ref="ev-9", observed_at=at(10), now=at(40))
    assert latest(microgrid)["event_ref"] == "ev-5"
    # The same instant: the greater event_ref wins, whatever the arrival order.
    report("plc-a", node("grp-a"), "UNAVAILABLE", event_ref="ev-7", observed_at=at(30), now=at(41))
    report("plc-a", node("grp-a"), "AVAILABLE", event_ref="ev-6", observed_at=at(30), now=at(42))
    assert latest(microgrid) == {
        "state": "UNAVAILABLE",
        "observed_at": at(30).isoformat(),
        "event_ref": "ev-7",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("source", "scope", "active_binding"),
    [
        ("plc-b", node("grp-a"), "CB-1"),  # another device for the bound scope
        ("plc-a", node("grp-b"), None),  # the bound device for a scope it does not hold
        ("plc-a", MICROGRID, None),
    ],
    ids=["other-device", "other-scope", "whole-microgrid"],
)
def test_an_event_from_a_device_that_is_not_the_active_source_is_refused(
    integration_api, microgrid, bind, row_counts, source, scope, active_binding
):
    bind("plc-a", node("grp-a"))
    before = row_counts()
    response = integration_api.post(EVENTS, event_body(source, scope), format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "CAPABILITY_SOURCE_NOT_ACTIVE"
    assert body["details"]["source_device_id"] == source
    assert body["details"]["scope"] == scope
    assert body["details"]["microgrid_id"] == "MG.NORTH-1"
    assert (body["details"]["active_binding"] or {}).get("binding_id") == active_binding
    assert row_counts() == before


@pytest.mark.django_db
def test_after_a_transfer_only_the_new_source_may_report(
    support_api, integration_api, microgrid, bind
):
    bind("plc-a", node("grp-a"))
    support_api.post(
        "/api/microgrids/MG.NORTH-1/capabilities/bindings/transfer/",
        {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": node("grp-a"),
            "expected_source_device_id": "plc-a",
            "new_source_device_id": "plc-b",
        },
        format="json",
    )
    old = integration_api.post(EVENTS, event_body("plc-a", event_ref="ev-a"), format="json")
    assert old.status_code == 409
    assert old.json()["details"]["active_binding"]["source_device_id"] == "plc-b"
    new = integration_api.post(EVENTS, event_body("plc-b", event_ref="ev-b"), format="json")
    assert new.status_code == 201
    assert new.json()["binding"]["binding_id"] == "CB-2"


@pytest.mark.django_db
def test_different_scopes_of_one_microgrid_keep_their_own_status(microgrid, bind, report):
    bind("plc-a", node("grp-a"))
    bind("plc-b", node("grp-b"))
    report("plc-a", node("grp-a"), "AVAILABLE", event_ref="a-1")
    report("plc-b", node("grp-b"), "UNAVAILABLE", event_ref="b-1")
    doc = capabilities_document(microgrid)
    assert [(b["scope"], b["latest_status"]["state"]) for b in doc["bindings"]] == [
        (node("grp-a"), "AVAILABLE"),
        (node("grp-b"), "UNAVAILABLE"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "ON"}, "state"),
        ({"observed_at": "yesterday"}, "observed_at"),
        ({"observed_at": "2026-03-02T15:00:00"}, "observed_at"),
        ({"event_ref": ""}, "event_ref"),
        ({"event_ref": "x" * 129}, "event_ref"),
        ({"detail": 5}, "detail"),
        ({"detail": "x" * 5000}, "detail"),
        ({"extra": 1}, "extra"),
        ({"source_device_id": None}, "source_device_id"),
    ],
)
def test_a_bad_event_names_its_field_and_stores_nothing(
    integration_api, microgrid, bind, row_counts, change, field
):
    bind("plc-a", node("grp-a"))
    before = row_counts()
    response = integration_api.post(EVENTS, {**event_body(), **change}, format="json")
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert row_counts() == before


@pytest.mark.django_db
def test_a_status_observed_far_ahead_of_the_clock_is_refused(microgrid, bind, report, row_counts):
    from microgrid.common.errors import DomainError

    bind("plc-a", node("grp-a"))
    before = row_counts()
    with pytest.raises(DomainError) as caught:
        report("plc-a", node("grp-a"), observed_at=at(600), now=NOW)
    assert caught.value.errors[0].field == "observed_at"
    assert row_counts() == before
    # A device clock a little ahead is fine.
    assert report("plc-a", node("grp-a"), observed_at=at(30), now=NOW).created


@pytest.mark.django_db
def test_integration_and_support_report_operators_do_not(
    integration_api, support_api, operator_api, anon_api, microgrid, bind
):
    bind("plc-a", node("grp-a"))
    assert operator_api.post(EVENTS, event_body(event_ref="o"), format="json").status_code == 403
    assert anon_api.post(EVENTS, event_body(event_ref="n"), format="json").status_code == 401
    assert integration_api.post(EVENTS, event_body(event_ref="i"), format="json").status_code == 201
    assert support_api.post(EVENTS, event_body(event_ref="s"), format="json").status_code == 201
