"""The canonical read surface: list, detail with history, withdraw, the microgrid card."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.envelopes.models import OperatingEnvelope

from .conftest import block, forecast_body

H = timedelta(hours=1)
LIST = "/api/microgrids/MG.NORTH-1/operating-envelopes/"


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def history(bound, receive, now, legacy_record):
    """OE-1 expired, OE-2 superseded by OE-3 (active), OE-4 pending on sb-1, OE-5 withdrawn."""
    from microgrid.envelopes.services import envelope_withdraw

    legacy_record("CIR-100", 700)
    receive(forecast_body(blocks=[block(now - 3 * H, now - 2 * H, 500)]), now=now - 4 * H)
    receive(forecast_body(blocks=[block(now - H, now + H, 400)]), now=now - 2 * H)
    receive(
        forecast_body(blocks=[block(now - H, now + H, 350)]), now=now - 90 * timedelta(seconds=60)
    )
    receive(
        forecast_body(group_id="GRP-A", blocks=[block(now + H, now + 2 * H, 16, unit="A")]),
        now=now - H,
    )
    receive(forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 90)]), now=now - H)
    envelope_withdraw(
        envelope=OperatingEnvelope.objects.get(envelope_id="OE-5"),
        now=now - 30 * timedelta(seconds=60),
    )
    return bound


@pytest.mark.django_db
def test_the_list_shows_every_envelope_with_its_status_latest_window_first(
    history, operator_api, now
):
    body = operator_api.get(LIST).json()
    assert body["microgrid_id"] == "MG.NORTH-1"
    rows = {e["envelope_id"]: e for e in body["envelopes"]}
    assert [e["envelope_id"] for e in body["envelopes"]] == ["OE-4", "OE-5", "OE-3", "OE-2", "OE-1"]
    assert {k: v["status"] for k, v in rows.items()} == {
        "OE-1": "EXPIRED",
        "OE-2": "SUPERSEDED",
        "OE-3": "ACTIVE",
        "OE-4": "PENDING",
        "OE-5": "WITHDRAWN",
    }
    active = rows["OE-3"]
    assert active["scope"] == {"type": "MICROGRID"}
    assert (active["direction"], active["forecast_type"]) == ("IMPORT", "CONSUMPTION")
    assert (active["capacity"], active["unit"], active["capacity_kw"]) == (350.0, "KW", 350.0)
    assert active["enforcement"] == "ENFORCED"
    assert active["valid_from"] == (now - H).isoformat()
    assert active["source"] == {
        "protocol": "OSCP",
        "version": "2.0",
        "message_type": "UPDATE_GROUP_CAPACITY_FORECAST",
        "peer": "dso-north",
        "group_id": "GRP-N",
        "request_id": active["source"]["request_id"],
        "correlation_id": "corr-1",
        "received_at": (now - timedelta(minutes=90)).isoformat(),
        "block_index": 0,
    }
    assert active["legacy_circuit"] == {"circuit_id": "CIR-100", "available_capacity_kw": 350.0}
    pending = rows["OE-4"]
    assert pending["scope"] == {"type": "NODE", "node_id": "sb-1"}
    assert (pending["capacity"], pending["unit"], pending["capacity_kw"]) == (16.0, "A", 11.04)
    assert pending["conversion"] == {"voltage_v": 230.0, "phases": 3}
    assert pending["legacy_circuit"] is None
    assert rows["OE-5"]["withdrawn_at"] is not None
    assert rows["OE-2"]["superseded_by"] == "OE-3"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("ACTIVE", ["OE-3"]),
        ("PENDING", ["OE-4"]),
        ("EXPIRED", ["OE-1"]),
        ("WITHDRAWN", ["OE-5"]),
        ("SUPERSEDED", ["OE-2"]),
        ("ACTIVE,PENDING", ["OE-4", "OE-3"]),
    ],
)
def test_the_list_filters_by_status(history, operator_api, query, ids):
    body = operator_api.get(LIST, {"status": query}).json()
    assert [e["envelope_id"] for e in body["envelopes"]] == ids


@pytest.mark.django_db
def test_the_status_is_judged_at_the_instant_asked_for(history, operator_api, now):
    later = (now + 90 * timedelta(seconds=60)).isoformat()
    body = operator_api.get(LIST, {"status": "ACTIVE", "at": later}).json()
    assert [e["envelope_id"] for e in body["envelopes"]] == ["OE-4"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "LIVE"}, "status"), ({"limit": "0"}, "limit"), ({"at": "yesterday"}, "at")],
)
def test_bad_list_parameters_are_422(history, operator_api, params, field):
    response = operator_api.get(LIST, params)
    assert response.status_code == 422
    assert response.json()["code"] == "FIELD_INVALID"
    assert response.json()["errors"][0]["field"] == field


@pytest.mark.django_db
def test_the_detail_has_the_supersede_links_transitions_and_history(history, operator_api):
    body = operator_api.get(LIST + "OE-3/").json()
    assert body["supersedes"] == ["OE-2"]
    assert body["transitions"] == []
    assert [h["change"] for h in body["history"]] == ["RECEIVED"]
    withdrawn = operator_api.get(LIST + "OE-5/").json()
    assert [(h["change"], h["state"]) for h in withdrawn["history"]] == [
        ("RECEIVED", "RECEIVED"),
        ("WITHDRAWN", "WITHDRAWN"),
    ]


@pytest.mark.django_db
def test_unknown_envelopes_and_microgrids_are_404(history, operator_api):
    missing = operator_api.get(LIST + "OE-99/")
    assert missing.status_code == 404
    assert missing.json()["code"] == "ENVELOPE_NOT_FOUND"
    assert operator_api.get("/api/microgrids/NOPE/operating-envelopes/").json()["code"] == (
        "MICROGRID_NOT_FOUND"
    )


@pytest.mark.django_db
def test_support_staff_withdraw_an_envelope_through_the_api(history, support_api):
    response = support_api.post(LIST + "OE-3/withdraw/", {"reason": "DSO asked"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["withdrawn_by"], body["withdraw_reason"]) == (
        "WITHDRAWN",
        "support-user",
        "DSO asked",
    )
    assert body["history"][-1]["by"] == "support-user"
    assert body["legacy_circuit"]["available_capacity_kw"] == 700.0  # back to configured
    again = support_api.post(LIST + "OE-3/withdraw/")
    assert again.status_code == 409
    assert again.json()["code"] == "ENVELOPE_NOT_WITHDRAWABLE"
    assert again.json()["details"]["status"] == "WITHDRAWN"
    expired = support_api.post(LIST + "OE-1/withdraw/")
    assert expired.json()["details"]["status"] == "EXPIRED"


@pytest.mark.django_db
def test_a_withdrawal_with_unknown_fields_is_refused(history, support_api):
    response = support_api.post(LIST + "OE-3/withdraw/", {"why": "x"}, format="json")
    assert response.status_code == 422
    assert OperatingEnvelope.objects.get(envelope_id="OE-3").state == "RECEIVED"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("client", "status"),
    [("operator_api", 403), ("integration_api", 403), ("anon_api", 401)],
)
def test_only_support_staff_may_withdraw(history, request, client, status):
    response = request.getfixturevalue(client).post(LIST + "OE-3/withdraw/")
    assert response.status_code == status
    assert OperatingEnvelope.objects.get(envelope_id="OE-3").state == "RECEIVED"


@pytest.mark.django_db
def test_integration_clients_cannot_read_envelopes(history, integration_api):
    assert integration_api.get(LIST).status_code == 403


@pytest.mark.django_db
def test_the_microgrid_card_shows_the_active_envelopes(history, operator_api):
    card = operator_api.get("/api/microgrids/MG.NORTH-1/").json()
    assert [
        (e["envelope_id"], e["capacity_kw"], e["enforcement"]) for e in card["active_envelopes"]
    ] == [("OE-3", 350.0, "ENFORCED")]


@pytest.mark.django_db
def test_the_list_reads_in_a_constant_number_of_queries(
    bound, receive, operator_api, now, django_assert_max_num_queries
):
    for i in range(30):
        start = now + i * H
        receive(forecast_body(group_id=("GRP-N", "GRP-A")[i % 2], blocks=[block(start, start + H)]))
    with django_assert_max_num_queries(8):
        body = operator_api.get(LIST).json()
    assert len(body["envelopes"]) == 30
    with django_assert_max_num_queries(10):
        operator_api.get(LIST + "OE-7/")
