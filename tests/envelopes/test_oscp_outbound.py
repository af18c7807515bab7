"""The outbox and what this product sends on its own, against a real CP on 127.0.0.1:
retries with backoff, expiry by type, refusals not retried, an unreachable CP holding up
nothing else, compliance errors after real cycles; and the inbound rules that need no
live server (register, handshake tolerance, segments)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.envelopes.models import (
    OperatingEnvelope,
    OscpMessage,
    OscpOutbound,
    OscpPeer,
    OscpSegment,
)
from microgrid.envelopes.outbox import outbound_deliver
from microgrid.envelopes.services import oscp_message_receive, oscp_peer_save

from .conftest import TOKEN, block, forecast_body

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)
H = timedelta(hours=1)


def closed_port_url() -> str:
    """A URL nothing listens on (a port the OS gave and took back)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/oscp/cp/2.0"


@pytest.fixture
def connected(peer, cp):
    """The peer knows the CP's URL and token (set by support) and has hand-shaken."""
    oscp_peer_save(name=peer.name, cp_base_url=cp.base_url, cp_token=cp.token)
    OscpPeer.objects.filter(pk=peer.pk).update(
        required_behaviour={"heartbeat_interval": 30, "measurement_configuration": []},
        handshake_heartbeat_interval_s=30,
    )
    peer.refresh_from_db()
    return peer


def send(peer, message_type, body, *, request_id, now=None, **headers):
    return oscp_message_receive(
        peer=peer,
        message_type=message_type,
        request_id=request_id,
        body=json.dumps(body) if not isinstance(body, str) else body,
        now=now or timezone.now(),
        fp_base_url="http://fp.test/oscp/fp/2.0",
        **headers,
    )


def test_a_handshake_is_acknowledged_through_the_outbox_with_an_audit(
    connected, cp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        send(connected, "HANDSHAKE", {"required_behaviour": {}}, request_id="hs-1")
    ack = cp.wait_for("/handshake_acknowledgement")[0]
    # an empty behaviour: the admin's interval (60 s) and CONTINUOUS
    assert ack.body == {
        "required_behaviour": {
            "heartbeat_interval": 60,
            "measurement_configuration": ["CONTINUOUS"],
        }
    }
    row = OscpOutbound.objects.get()
    assert (row.state, row.attempts, row.last_status_code, row.correlation_id) == (
        "SENT",
        1,
        204,
        "hs-1",
    )
    assert row.sent_at is not None and ack.headers["x-request-id"] == row.request_id


def test_a_handshake_without_measurement_configuration_or_behaviour_is_accepted(peer):
    send(peer, "HANDSHAKE", {}, request_id="hs-a")
    send(peer, "HANDSHAKE", {"required_behaviour": {"heartbeat_interval": 7}}, request_id="hs-b")
    peer.refresh_from_db()
    assert peer.interval_s == 7
    assert peer.required_behaviour == {"heartbeat_interval": 7, "measurement_configuration": []}


@pytest.mark.parametrize("interval", [0, 1.5, "30", -3, 10**8])
def test_a_handshake_interval_must_be_a_whole_number_of_seconds_from_1(peer, interval):
    from microgrid.common.errors import DomainError

    with pytest.raises(DomainError) as caught:
        send(
            peer,
            "HANDSHAKE",
            {"required_behaviour": {"heartbeat_interval": interval}},
            request_id="x",
        )
    assert caught.value.errors[0].field == "required_behaviour.heartbeat_interval"
    assert not OscpMessage.objects.exists()


def test_an_unreachable_cp_is_retried_with_backoff_and_holds_up_no_other_peer(
    connected, cp, other_peer
):
    from microgrid.envelopes.outbound import heartbeat_send

    oscp_peer_save(name=other_peer.name, cp_base_url=closed_port_url(), cp_token="x" * 20)
    OscpPeer.objects.filter(pk=other_peer.pk).update(
        handshake_heartbeat_interval_s=600, required_behaviour={}, next_heartbeat_at=timezone.now()
    )
    OscpPeer.objects.filter(pk=connected.pk).update(next_heartbeat_at=timezone.now())
    now = timezone.now()
    for peer in OscpPeer.objects.order_by("-pk"):  # the unreachable one first
        heartbeat_send(peer=peer, now=now)
    dead = OscpOutbound.objects.get(peer=other_peer)
    alive = OscpOutbound.objects.get(peer=connected)
    assert outbound_deliver(pk=dead.pk, now=now) == "PENDING"
    assert outbound_deliver(pk=alive.pk, now=now) == "SENT"
    cp.wait_for("/heartbeat")
    dead.refresh_from_db()
    assert dead.attempts == 1 and dead.last_status_code is None
    assert "Connection" in dead.last_error or "refused" in dead.last_error.lower()
    assert dead.next_attempt_at == now + timedelta(seconds=5)
    # not due before its backoff; then 10 s after the second failure
    assert outbound_deliver(pk=dead.pk, now=now + timedelta(seconds=4)) is None
    assert outbound_deliver(pk=dead.pk, now=now + timedelta(seconds=5)) == "PENDING"
    dead.refresh_from_db()
    assert (dead.attempts, dead.next_attempt_at) == (2, now + timedelta(seconds=15))


def test_a_heartbeat_expires_after_its_interval_and_measurements_live_a_day(connected):
    from microgrid.envelopes.outbox import outbound_due, outbound_enqueue

    OscpPeer.objects.filter(pk=connected.pk).update(cp_base_url=closed_port_url())
    connected.refresh_from_db()
    now = timezone.now()
    beat = outbound_enqueue(
        peer=connected,
        message_type="HEARTBEAT",
        body={"offline_mode_at": "x"},
        expires_in=timedelta(seconds=30),
        now=now,
    )
    data = outbound_enqueue(
        peer=connected,
        message_type="UPDATE_GROUP_MEASUREMENTS",
        body={"group_id": "GRP-N", "measurements": []},
        now=now,
    )
    assert data.expires_at == now + timedelta(days=1)
    outbound_due(now=now + timedelta(seconds=31))
    beat.refresh_from_db()
    data.refresh_from_db()
    assert (beat.state, data.state) == ("EXPIRED", "PENDING")


def test_a_refusal_by_the_cp_is_recorded_and_not_retried(connected, cp):
    from microgrid.envelopes.outbox import outbound_enqueue

    cp.status_by_path["/update_group_measurements"] = 422
    row = outbound_enqueue(
        peer=connected,
        message_type="UPDATE_GROUP_MEASUREMENTS",
        body={"group_id": "GRP-N", "measurements": []},
        now=timezone.now(),
    )
    assert outbound_deliver(pk=row.pk) == "FAILED"
    row.refresh_from_db()
    assert (row.last_status_code, row.attempts) == (422, 1)
    assert outbound_deliver(pk=row.pk) is None  # nothing more is tried
    # a wrong token is the CP's 401: also not retried
    OscpPeer.objects.filter(pk=connected.pk).update(cp_token="wrong-token-0000000")
    connected.refresh_from_db()
    row = outbound_enqueue(peer=connected, message_type="HEARTBEAT", body={}, now=timezone.now())
    assert outbound_deliver(pk=row.pk) == "FAILED"
    assert cp.got("/heartbeat")[0].status == 401


def test_a_peer_without_a_cp_connection_gets_nothing_queued(peer):
    from microgrid.envelopes.outbox import outbound_enqueue

    assert (
        outbound_enqueue(peer=peer, message_type="HEARTBEAT", body={}, now=timezone.now()) is None
    )
    send(peer, "HANDSHAKE", {"required_behaviour": {}}, request_id="hs-1")
    assert not OscpOutbound.objects.exists()


# -- compliance errors after real cycles ---------------------------------------------------


def readings(now, site_kw, grid_kw):
    at = now.isoformat()
    out = [
        {"asset_id": c, "power_kw": 0, "observed_at": at, "connected": True, "requested_kw": 50}
        for c in ("CH-01", "CH-02", "CH-03")
    ]
    out += [
        {"asset_id": "SITE", "power_kw": site_kw, "observed_at": at},
        {"asset_id": "PV-1", "power_kw": 0, "observed_at": at},
        {"asset_id": "M-GRID", "power_kw": grid_kw, "observed_at": at},
    ]
    return out


def run_cycle(microgrid, now, site_kw, grid_kw, capture):
    from balancing.services import cycle_request, trigger_of
    from microgrid.telemetry.services import telemetry_ingest

    telemetry_ingest(microgrid=microgrid, readings=readings(now, site_kw, grid_kw), now=now)
    with capture(execute=True):
        return cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle


def test_uncontrolled_load_alone_above_an_envelope_sends_one_compliance_error(
    bound, connected, cp, django_capture_on_commit_callbacks
):
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        send(
            connected,
            "UPDATE_GROUP_CAPACITY_FORECAST",
            forecast_body(blocks=[block(now - M, now + H, 40)]),
            request_id="fc-1",
            now=now,
        )
    run_cycle(bound, now, site_kw=70, grid_kw=70, capture=django_capture_on_commit_callbacks)
    error = cp.wait_for("/group_capacity_compliance_error")[0]
    assert error.headers["x-correlation-id"] == "fc-1"  # the forecast it refers to
    assert error.body["message"].startswith("Group GRP-N: Cannot comply")
    assert "uncontrolled load" in error.body["message"]
    (sent_block,) = error.body["forecasted_blocks"]
    assert (sent_block["capacity"], sent_block["unit"], sent_block["phase"]) == (40.0, "KW", "ALL")
    row = OscpOutbound.objects.get(message_type="GROUP_CAPACITY_COMPLIANCE_ERROR")
    assert (row.group_id, row.state) == ("GRP-N", "SENT")
    # the next cycle finds the same: not sent twice (the breach now open for a second cycle
    # is another cause, sent once of its own)
    run_cycle(bound, now + M, site_kw=70, grid_kw=70, capture=django_capture_on_commit_callbacks)
    keys = OscpOutbound.objects.filter(message_type="GROUP_CAPACITY_COMPLIANCE_ERROR")
    assert sorted(k.split(":")[3] for k in keys.values_list("dedupe_key", flat=True)) == [
        "breach",
        "uncontrolled",
    ]


def test_an_envelope_breach_open_for_more_than_one_cycle_sends_a_compliance_error(
    bound, connected, cp, django_capture_on_commit_callbacks
):
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        send(
            connected,
            "UPDATE_GROUP_CAPACITY_FORECAST",
            forecast_body(blocks=[block(now - M, now + H, 100)]),
            request_id="fc-2",
            now=now,
        )
    # the site needs 20 kW, the meter shows 180 kW: a breach of the 100 kW envelope
    run_cycle(bound, now, site_kw=20, grid_kw=180, capture=django_capture_on_commit_callbacks)
    assert not OscpOutbound.objects.filter(message_type="GROUP_CAPACITY_COMPLIANCE_ERROR")
    run_cycle(bound, now + M, site_kw=20, grid_kw=180, capture=django_capture_on_commit_callbacks)
    error = cp.wait_for("/group_capacity_compliance_error")[0]
    assert "more than one cycle" in error.body["message"]
    assert error.body["forecasted_blocks"][0]["capacity"] == 100.0


def test_a_cycle_without_enforced_envelopes_sends_nothing_and_asks_nothing(
    bound, connected, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    from microgrid.envelopes.signals import cycle_completed

    heard = []
    cycle_completed.connect(lambda sender, **kw: heard.append(kw), weak=False, dispatch_uid="t")
    try:
        run_cycle(
            bound,
            timezone.now(),
            site_kw=70,
            grid_kw=70,
            capture=django_capture_on_commit_callbacks,
        )
    finally:
        cycle_completed.disconnect(dispatch_uid="t")
    assert heard == []
    assert not OscpOutbound.objects.exists()


# -- register and segments through the service -------------------------------------------------


def register_body(
    token="cp-token-abcdefghijkl", versions=(("2.0", "https://cp.test/oscp/cp/2.0"),)
):
    return {"token": token, "version_url": [{"version": v, "base_url": u} for v, u in versions]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (register_body(versions=(("2.1", "https://cp.test"),)), "version_url"),
        (register_body(versions=(("2.0", "ftp://cp.test"),)), "version_url[0].base_url"),
        (register_body(versions=(("2.0", "http://["),)), "version_url[0].base_url"),
        (register_body(versions=(("2.0", "http://cp.test:99999"),)), "version_url[0].base_url"),
        (register_body(token="short"), "token"),
        ({"token": "cp-token-abcdefghijkl"}, "version_url"),
    ],
)
def test_a_register_the_product_cannot_use_is_400_and_changes_nothing(peer, body, field):
    from microgrid.common.errors import DomainError

    with pytest.raises(DomainError) as caught:
        send(peer, "REGISTER", body, request_id="r-1")
    assert (caught.value.code, caught.value.errors[0].field) == ("OSCP_MESSAGE_INVALID", field)
    peer.refresh_from_db()
    assert (peer.cp_base_url, peer.cp_token, peer.next_token_hash) == ("", "", "")


def test_a_register_is_stored_with_its_token_masked_and_put_updates_the_connection(peer):
    send(peer, "REGISTER", register_body(), request_id="r-1")
    stored = json.loads(OscpMessage.objects.get(message_type="REGISTER").body)
    assert stored["token"] == "cp-t..."
    peer.refresh_from_db()
    assert peer.cp_token == "cp-token-abcdefghijkl" and peer.next_token_hash
    new = register_body(token="cp-token-zzzzzzzzzzzz", versions=(("2.0", "https://cp2.test/2.0"),))
    send(peer, "REGISTER_UPDATE", new, request_id="r-2")
    peer.refresh_from_db()
    assert (peer.cp_token, peer.cp_base_url) == ("cp-token-zzzzzzzzzzzz", "https://cp2.test/2.0")
    # the old token still works until the new one is first used
    from microgrid.envelopes.services import oscp_peer_authenticate

    assert oscp_peer_authenticate(f"Token {TOKEN}") == peer


def test_segments_must_agree_and_a_changed_segment_is_refused(bound, peer):
    from microgrid.common.errors import DomainError

    now = timezone.now()
    first = forecast_body(blocks=[block(now + H, now + 2 * H, 100)])
    send(peer, "UPDATE_GROUP_CAPACITY_FORECAST", first, request_id="s-1",
         correlation_id="c-1", segment_index="1", segment_count="3", now=now)  # fmt: skip
    cases = [
        ({"segment_index": "2", "segment_count": "4"}, first, "X-Segment-Count"),
        ({"segment_index": "2", "segment_count": "3"}, forecast_body(group_id="GRP-A"), "group_id"),
        (
            {"segment_index": "1", "segment_count": "3"},
            forecast_body(blocks=[block(now + H, now + 2 * H, 5)]),
            None,  # OSCP_REQUEST_ID_REUSED
        ),
        (
            {"segment_index": "3", "segment_count": "3"},
            forecast_body(blocks=[block(now + H, now + 2 * H, 9)]),
            None,
        ),  # fmt: skip
    ]
    for headers, body, field in cases[:3]:
        with pytest.raises(DomainError) as caught:
            send(peer, "UPDATE_GROUP_CAPACITY_FORECAST", body, request_id="s-x",
                 correlation_id="c-1", now=now, **headers)  # fmt: skip
        if field is None:
            assert caught.value.code == "OSCP_REQUEST_ID_REUSED"
        else:
            assert caught.value.errors[0].field == field
    # segment 3 overlaps segment 1 (same phase): refused when the set would be assembled...
    send(peer, "UPDATE_GROUP_CAPACITY_FORECAST", cases[3][1], request_id="s-3",
         correlation_id="c-1", now=now, **cases[3][0])  # fmt: skip
    with pytest.raises(DomainError) as caught:
        send(peer, "UPDATE_GROUP_CAPACITY_FORECAST", forecast_body(blocks=[]), request_id="s-2",
             correlation_id="c-1", segment_index="2", segment_count="3", now=now)  # fmt: skip
    assert "overlaps" in caught.value.errors[0].message
    # ... and nothing was applied; the two kept segments wait (and will be dropped)
    assert not OperatingEnvelope.objects.exists()
    assert OscpSegment.objects.filter(state="PENDING").count() == 2


def test_segment_headers_belong_to_forecasts_only(peer):
    from microgrid.common.errors import DomainError

    with pytest.raises(DomainError) as caught:
        send(peer, "HEARTBEAT", {"offline_mode_at": timezone.now().isoformat()}, request_id="h",
             correlation_id="c", segment_index="1", segment_count="2")  # fmt: skip
    assert caught.value.errors[0].field == "X-Segment-Index"
    # a count of 1 is an unsegmented message
    send(peer, "HEARTBEAT", {"offline_mode_at": timezone.now().isoformat()}, request_id="h",
         correlation_id="c", segment_index="1", segment_count="1")  # fmt: skip
    assert OscpMessage.objects.filter(message_type="HEARTBEAT", segments=0).count() == 1


def test_an_empty_forecast_ends_live_envelopes_with_the_peer_in_their_history(
    bound, peer, support_api
):
    now = timezone.now()
    send(peer, "UPDATE_GROUP_CAPACITY_FORECAST",
         forecast_body(blocks=[block(now - H, now + H, 100), block(now + H, now + 2 * H, 90)]),
         request_id="f-1", now=now)  # fmt: skip
    send(peer, "UPDATE_GROUP_CAPACITY_FORECAST",
         forecast_body(type="FALLBACK_CONSUMPTION", blocks=[block(now - H, now + H, 50)]),
         request_id="f-2", now=now)  # fmt: skip
    receipt = send(peer, "UPDATE_GROUP_CAPACITY_FORECAST", forecast_body(blocks=[]),
                   request_id="f-3", now=now + M)  # fmt: skip
    assert receipt.withdrawn == ["OE-1", "OE-2"]
    doc = support_api.get("/api/microgrids/MG.NORTH-1/operating-envelopes/OE-1/").json()
    assert doc["status"] == "WITHDRAWN" and doc["withdrawn_by_peer"] is True
    assert doc["withdrawn_by"] is None
    assert "empty forecasted_blocks" in doc["history"][-1]["reason"]
    # the fallback of the same group is another type: untouched
    assert OperatingEnvelope.objects.get(envelope_id="OE-3").state == "RECEIVED"


def test_admin_and_the_envelopes_page_show_every_message_sent(
    bound, connected, cp, support_client, django_assert_max_num_queries
):
    from microgrid.envelopes.outbox import outbound_enqueue

    for _ in range(3):
        row = outbound_enqueue(
            peer=connected,
            message_type="UPDATE_GROUP_MEASUREMENTS",
            body={"group_id": "GRP-N", "measurements": []},
            group_id="GRP-N",
            now=timezone.now(),
        )
        outbound_deliver(pk=row.pk)
    cp.status_by_path["/heartbeat"] = 500
    row = outbound_enqueue(peer=connected, message_type="HEARTBEAT", body={}, now=timezone.now())
    outbound_deliver(pk=row.pk)
    admin = support_client.get("/admin/envelopes/oscpoutbound/")
    assert admin.status_code == 200 and b"UPDATE_GROUP_MEASUREMENTS" in admin.content
    detail = support_client.get(f"/admin/envelopes/oscpoutbound/{row.pk}/change/")
    assert detail.status_code == 200 and b"HTTP 500" in detail.content
    with django_assert_max_num_queries(40):
        page = support_client.get("/manage/microgrids/MG.NORTH-1/envelopes/")
    html = page.content.decode()
    assert 'data-testid="oscp-outbound"' in html
    assert html.count('data-message-type="UPDATE_GROUP_MEASUREMENTS" data-state="SENT"') == 3
    assert 'data-message-type="HEARTBEAT" data-state="PENDING"' in html
    assert "update_group_measurements" in html


def test_support_sets_the_cp_connection_and_starts_a_registration_in_admin(
    peer, cp, support_client, django_capture_on_commit_callbacks
):
    url = f"/admin/envelopes/oscppeer/{peer.pk}/change/"
    form = {
        "heartbeat_interval_s": 60,
        "active": "on",
        "cp_base_url": cp.base_url,
        "measurement_interval_s": 900,
        "new_cp_token": cp.token,
        "new_token": "",
        "groups-TOTAL_FORMS": 0,  # the (read-only) group bindings inline
        "groups-INITIAL_FORMS": 0,
    }
    response = support_client.post(url, form)
    assert response.status_code == 302, response.content[:2000]
    peer.refresh_from_db()
    assert (peer.cp_base_url, peer.cp_token) == (cp.base_url, cp.token)
    assert peer.history.first().cp_base_url == cp.base_url  # with history; the token is not kept
    bad = support_client.post(url, {**form, "cp_base_url": "ftp://x", "new_cp_token": "short"})
    assert bad.status_code == 200 and b"FIELD_INVALID" in bad.content
    with django_capture_on_commit_callbacks(execute=True):
        support_client.post(
            "/admin/envelopes/oscppeer/",
            {"action": "register", "_selected_action": [peer.pk]},
        )
    register = cp.wait_for("/register")[0]
    assert register.body["version_url"][0]["version"] == "2.0"
    sent = OscpOutbound.objects.get(message_type="REGISTER")
    assert sent.secret == "" and "..." in sent.body  # delivered: the new token is not kept
