"""The OSCP 2.0 endpoints over HTTP: each message, each refusal, replays, authentication."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.envelopes.models import OperatingEnvelope, OscpMessage, OscpPeer, PeerModeChange

from .conftest import (
    FORECAST,
    HANDSHAKE,
    HEARTBEAT,
    OTHER_TOKEN,
    T0,
    TOKEN,
    block,
    forecast_body,
)


def stored():
    """Everything a refused message must leave as it was."""
    return (
        list(OperatingEnvelope.objects.order_by("pk").values()),
        list(OscpMessage.objects.order_by("pk").values()),
        list(OscpPeer.objects.order_by("pk").values()),
        list(PeerModeChange.objects.order_by("pk").values()),
    )


@pytest.mark.django_db
def test_a_forecast_is_accepted_with_204_and_stored_with_its_source(bound, oscp_client):
    body = forecast_body(
        blocks=[
            block(T0, T0 + timedelta(minutes=15), capacity=300),
            block(T0 + timedelta(minutes=15), T0 + timedelta(minutes=30), capacity=250.5),
        ]
    )
    response = oscp_client(FORECAST, body, request_id="req-abc", correlation_id="corr-xyz")
    assert response.status_code == 204
    assert response.content == b""
    envelopes = list(OperatingEnvelope.objects.order_by("number"))
    assert [(e.envelope_id, e.capacity_kw, e.block_index) for e in envelopes] == [
        ("OE-1", 300.0, 0),
        ("OE-2", 250.5, 1),
    ]
    first = envelopes[0]
    assert (first.scope_type, first.node_id, first.direction) == ("MICROGRID", "", "IMPORT")
    assert (first.forecast_type, first.unit, first.phase) == ("CONSUMPTION", "KW", "ALL")
    assert first.valid_from == T0
    assert first.peer.name == "dso-north"
    assert first.group_id == "GRP-N"
    message = OscpMessage.objects.get()
    assert (message.request_id, message.correlation_id) == ("req-abc", "corr-xyz")
    assert message.message_type == "UPDATE_GROUP_CAPACITY_FORECAST"
    assert json.loads(message.body) == body
    assert {e.message_id for e in envelopes} == {message.pk}


@pytest.mark.django_db
def test_a_heartbeat_records_offline_mode_at(peer, oscp_client):
    at = timezone.now() + timedelta(minutes=2)
    response = oscp_client(HEARTBEAT, {"offline_mode_at": at.isoformat()})
    assert response.status_code == 204
    peer.refresh_from_db()
    assert peer.offline_mode_at == at
    assert peer.last_heartbeat_at is not None
    assert OscpMessage.objects.get().message_type == "HEARTBEAT"


@pytest.mark.django_db
def test_a_handshake_stores_the_required_behaviour_and_keeps_the_peer_online(peer, oscp_client):
    body = {"required_behaviour": {"heartbeat_interval": 30, "measurement_configuration": []}}
    before = timezone.now()
    response = oscp_client(HANDSHAKE, body)
    assert response.status_code == 204
    peer.refresh_from_db()
    assert peer.required_behaviour == body["required_behaviour"]
    # online for one of its heartbeat intervals, until its first heartbeat
    assert peer.offline_mode_at >= before + timedelta(seconds=60)
    assert not peer.offline_at(timezone.now())


@pytest.mark.django_db
def test_the_endpoints_accept_a_trailing_slash_too(bound, oscp_client):
    assert oscp_client(FORECAST + "/", forecast_body()).status_code == 204


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers",
    [
        {"token": None},
        {"token": "not-the-token-of-anyone"},
    ],
    ids=["no token", "unknown token"],
)
def test_a_bad_token_is_401_and_changes_nothing(bound, oscp_client, headers):
    before = stored()
    response = oscp_client(FORECAST, forecast_body(), **headers)
    assert response.status_code == 401
    assert response.json()["code"] == "NOT_AUTHENTICATED"
    assert set(response.json()) >= {"code", "message", "details"}
    assert stored() == before


@pytest.mark.django_db
def test_an_inactive_peer_is_refused(bound, peer, oscp_client):
    OscpPeer.objects.filter(pk=peer.pk).update(active=False)
    assert oscp_client(FORECAST, forecast_body()).status_code == 401
    assert not OperatingEnvelope.objects.exists()


@pytest.mark.django_db
def test_an_api_user_token_does_not_work_on_oscp(bound, api_client_for, oscp_client):
    support = api_client_for("support")
    key = support._credentials["HTTP_AUTHORIZATION"].split()[1]
    response = oscp_client(FORECAST, forecast_body(), token=key)
    assert response.status_code == 401
    assert not OperatingEnvelope.objects.exists()


@pytest.mark.django_db
def test_a_peer_token_does_not_work_on_the_api(bound, anon_api):
    anon_api.credentials(HTTP_AUTHORIZATION=f"Token {TOKEN}")
    response = anon_api.get("/api/microgrids/MG.NORTH-1/operating-envelopes/")
    assert response.status_code == 401
    assert response.json()["code"] == "NOT_AUTHENTICATED"


@pytest.mark.django_db
def test_an_unknown_group_is_404_and_changes_nothing(bound, oscp_client):
    before = stored()
    response = oscp_client(FORECAST, forecast_body(group_id="GRP-UNKNOWN"))
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "OSCP_GROUP_NOT_FOUND"
    assert body["details"]["group_id"] == "GRP-UNKNOWN"
    assert stored() == before


@pytest.mark.django_db
def test_a_group_of_another_peer_is_unknown_to_this_one(bound, other_peer, oscp_client):
    response = oscp_client(FORECAST, forecast_body(group_id="GRP-N"), token=OTHER_TOKEN)
    assert response.status_code == 404
    assert response.json()["code"] == "OSCP_GROUP_NOT_FOUND"


GOOD = block(T0, T0 + timedelta(hours=1))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("raw", "code", "fields"),
    [
        ("{not json", "MALFORMED_REQUEST", []),
        ("[1, 2]", "MALFORMED_REQUEST", []),
        (b"\xff\xfe{}", "MALFORMED_REQUEST", []),
        ("[" * 100000 + "]" * 100000, "MALFORMED_REQUEST", []),
        (
            {"group_id": "GRP-N", "forecasted_blocks": [GOOD]},
            "OSCP_MESSAGE_INVALID",
            ["type"],
        ),
        (
            {"group_id": "GRP-N", "type": "MAXIMUM", "forecasted_blocks": [GOOD]},
            "OSCP_MESSAGE_INVALID",
            ["type"],
        ),
        (
            {**forecast_body(), "forecasted_blocks": {"capacity": 1}},
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks"],
        ),
        (
            forecast_body(blocks=[{**GOOD, "unit": "MW"}]),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[0].unit"],
        ),
        (
            forecast_body(blocks=[{**GOOD, "phase": "FOUR"}]),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[0].phase"],
        ),
        (
            forecast_body(blocks=[{**GOOD, "capacity": -1}]),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[0].capacity"],
        ),
        (
            forecast_body(blocks=[{**GOOD, "capacity": "300"}]),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[0].capacity"],
        ),
        (
            forecast_body(blocks=[{**GOOD, "capacity": 10**400}]),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[0].capacity"],
        ),
        (
            forecast_body(blocks=[{**GOOD, "end_time": GOOD["start_time"]}]),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[0].end_time"],
        ),
        (
            forecast_body(blocks=[{**GOOD, "start_time": "2026-03-02T12:00:00"}]),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[0].start_time"],
        ),
        (
            forecast_body(
                blocks=[GOOD, block(T0 + timedelta(minutes=30), T0 + timedelta(hours=2))]
            ),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[1].start_time"],
        ),
        (
            forecast_body(blocks=[{**GOOD, "capacity": 2e10}]),
            "OSCP_MESSAGE_INVALID",
            ["forecasted_blocks[0].capacity"],
        ),
    ],
    ids=[
        "not json",
        "not an object",
        "not utf-8",
        "nested too deep",
        "type missing",
        "unknown type",
        "blocks not a list",
        "unknown unit",
        "unknown phase",
        "negative capacity",
        "capacity as text",
        "capacity beyond floats",
        "empty window",
        "time without offset",
        "overlapping blocks",
        "more than any grid",
    ],
)
def test_an_invalid_forecast_is_400_with_the_error_body_and_changes_nothing(
    bound, oscp_client, raw, code, fields
):
    before = stored()
    data = raw if isinstance(raw, str | bytes) else json.dumps(raw)
    response = oscp_client(FORECAST, None, raw=data)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert set(body) >= {"code", "message", "details"}
    assert [e["field"] for e in body.get("errors", [])] == fields
    assert all(e["code"] == "FIELD_INVALID" for e in body.get("errors", []))
    assert stored() == before


@pytest.mark.django_db
def test_every_problem_of_a_forecast_is_reported_at_once(bound, oscp_client):
    body = forecast_body(
        type="NOPE", blocks=[{**GOOD, "unit": "MW"}, {**GOOD, "capacity": -5, "phase": "X"}]
    )
    response = oscp_client(FORECAST, body)
    assert response.status_code == 400
    assert sorted(e["field"] for e in response.json()["errors"]) == [
        "forecasted_blocks[0].unit",
        "forecasted_blocks[1].capacity",
        "forecasted_blocks[1].phase",
        "type",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (HEARTBEAT, {}, "offline_mode_at"),
        (HEARTBEAT, {"offline_mode_at": "soon"}, "offline_mode_at"),
        (HANDSHAKE, {"required_behaviour": []}, "required_behaviour"),
        (
            HANDSHAKE,
            {"required_behaviour": {"measurement_configuration": ["SOMETIMES"]}},
            "required_behaviour.measurement_configuration",
        ),
        (
            HANDSHAKE,
            {"required_behaviour": {"heartbeat_interval": -1, "measurement_configuration": []}},
            "required_behaviour.heartbeat_interval",
        ),
    ],
)
def test_invalid_heartbeats_and_handshakes_are_400_and_change_nothing(
    peer, oscp_client, path, body, field
):
    before = stored()
    response = oscp_client(path, body)
    assert response.status_code == 400
    assert response.json()["code"] == "OSCP_MESSAGE_INVALID"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert stored() == before


@pytest.mark.django_db
def test_a_message_without_x_request_id_is_400(bound, oscp_client):
    response = oscp_client(FORECAST, forecast_body(), request_id=None)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "X-Request-ID"
    assert not OperatingEnvelope.objects.exists()


@pytest.mark.django_db
def test_a_repeated_request_id_changes_nothing_and_answers_as_the_first(bound, oscp_client):
    first = oscp_client(FORECAST, forecast_body(), request_id="req-1")
    before = stored()
    again = oscp_client(FORECAST, forecast_body(), request_id="req-1")
    assert first.status_code == again.status_code == 204
    assert again.content == first.content
    assert stored() == before


@pytest.mark.django_db
def test_a_request_id_reused_for_another_body_is_refused_and_changes_nothing(bound, oscp_client):
    oscp_client(FORECAST, forecast_body(), request_id="req-1")
    before = stored()
    changed = oscp_client(
        FORECAST, forecast_body(blocks=[block(T0, T0 + timedelta(hours=3), 5)]), request_id="req-1"
    )
    assert changed.status_code == 400
    assert changed.json()["code"] == "OSCP_REQUEST_ID_REUSED"
    assert changed.json()["details"]["request_id"] == "req-1"
    assert stored() == before
    # The same body re-serialised (other key order, other spacing) is the same message.
    body = forecast_body()
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    assert oscp_client(FORECAST, None, request_id="req-1", raw=reordered).status_code == 204
    assert stored() == before


@pytest.mark.django_db
def test_the_replay_key_includes_the_message_type(bound, oscp_client):
    assert oscp_client(FORECAST, forecast_body(), request_id="same-1").status_code == 204
    soon = (timezone.now() + timedelta(minutes=1)).isoformat()
    beat = oscp_client(HEARTBEAT, {"offline_mode_at": soon}, request_id="same-1")
    assert beat.status_code == 204
    assert OscpMessage.objects.filter(request_id="same-1").count() == 2


@pytest.mark.django_db
def test_a_repeated_heartbeat_does_not_move_offline_mode_at(peer, oscp_client):
    soon = timezone.now() + timedelta(minutes=1)
    body = {"offline_mode_at": soon.isoformat()}
    oscp_client(HEARTBEAT, body, request_id="hb-1")
    response = oscp_client(HEARTBEAT, body, request_id="hb-1")
    assert response.status_code == 204
    peer.refresh_from_db()
    assert peer.offline_mode_at == soon
    assert OscpMessage.objects.filter(message_type="HEARTBEAT").count() == 1


@pytest.mark.django_db
def test_the_same_request_id_from_another_peer_is_another_message(bound, other_peer, oscp_client):
    from microgrid.envelopes.services import oscp_group_binding_save

    oscp_group_binding_save(
        peer=other_peer, group_id="SOUTH", microgrid=bound, scope={"type": "MICROGRID"}
    )
    assert oscp_client(FORECAST, forecast_body(), request_id="req-1").status_code == 204
    response = oscp_client(
        FORECAST, forecast_body(group_id="SOUTH"), request_id="req-1", token=OTHER_TOKEN
    )
    assert response.status_code == 204
    assert OscpMessage.objects.count() == 2
    assert OperatingEnvelope.objects.count() == 2


@pytest.mark.django_db
def test_a_refused_message_is_judged_again_when_sent_again(bound, peer, oscp_client):
    from microgrid.envelopes.services import oscp_group_binding_save

    refused = oscp_client(FORECAST, forecast_body(group_id="GRP-LATE"), request_id="req-7")
    assert refused.status_code == 404
    oscp_group_binding_save(
        peer=peer,
        group_id="GRP-LATE",
        microgrid=bound,
        scope={"type": "MICROGRID"},
    )
    accepted = oscp_client(FORECAST, forecast_body(group_id="GRP-LATE"), request_id="req-7")
    assert accepted.status_code == 204
    assert OperatingEnvelope.objects.count() == 1


@pytest.mark.django_db
def test_unknown_paths_under_oscp_answer_json_404(peer, oscp_client):
    for path in ("/oscp/", "/oscp/fp/2.0/adjust_group_capacity_forecast", "/oscp/fp/1.0/heartbeat"):
        response = oscp_client(path, {})
        assert response.status_code == 404, path
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["code"] == "NOT_FOUND"
    get = oscp_client.client.get(FORECAST)
    assert get.status_code == 405
    assert get.json()["code"] == "METHOD_NOT_ALLOWED"
