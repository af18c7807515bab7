"""OSCP 2.0 both ways against a real Capacity Provider on 127.0.0.1 (tests/envelopes/
cp_server.py): registration, handshake and its acknowledgement, heartbeats both ways,
forecasts (whole, partial, per phase, segmented, cleared), measurements and compliance
errors, the tolerant inputs, replays and an unreachable peer. Messages are shaped as the
OSCP 2.0 definitions and pyoscp encode them."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from microgrid.envelopes.models import (
    OperatingEnvelope,
    OscpMessage,
    OscpOutbound,
    OscpPeer,
    OscpSegment,
)

from .conftest import TOKEN

FP = "/oscp/fp/2.0"
M = timedelta(minutes=1)
H = timedelta(hours=1)


def ts(at, fmt="iso"):
    """Times as peers write them: ISO with offset and microseconds, or pyoscp's heartbeat
    format without an offset."""
    if fmt == "pyoscp":
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return at.isoformat()


def blk(start, end, capacity, unit="KW", phase="ALL"):
    return {
        "capacity": capacity,
        "phase": phase,
        "unit": unit,
        "start_time": ts(start),
        "end_time": ts(end),
    }


def forecast(blocks, group_id="GRP-N", type="CONSUMPTION", **extra):
    return {"group_id": group_id, "type": type, "forecasted_blocks": blocks, **extra}


def envelopes():
    return {
        e.envelope_id: (e.state, e.phase, e.capacity_kw, e.valid_from, e.valid_until)
        for e in OperatingEnvelope.objects.order_by("number")
    }


@pytest.fixture
def fp(live_server, transactional_db, microgrid):
    """The product with one peer (given token A out of band) and GRP-N bound to the
    microgrid; returns its OSCP base URL."""
    from django.contrib.auth.models import Group

    from microgrid.common.roles import ALL_ROLES
    from microgrid.envelopes.services import oscp_group_binding_save, oscp_peer_save

    for role in ALL_ROLES:
        Group.objects.get_or_create(name=role)
    peer, _ = oscp_peer_save(name="dso-north", token=TOKEN, heartbeat_interval_s=60)
    oscp_group_binding_save(
        peer=peer, group_id="GRP-N", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    return live_server.url + FP


def register_and_handshake(cp, fp, *, interval=30, configuration=("INTERMITTENT",)):
    status, _ = cp.send(
        fp,
        "/register",
        {"token": cp.token, "version_url": [{"version": "2.0", "base_url": cp.base_url}]},
        token=TOKEN,
        request_id="reg-1",
    )
    assert status == 204
    cp.wait_for("/register")
    behaviour = {"heartbeat_interval": interval, "measurement_configuration": list(configuration)}
    status, _ = cp.send(fp, "/handshake", {"required_behaviour": behaviour}, request_id="hs-1")
    assert status == 204
    return cp.wait_for("/handshake_acknowledgement")[0]


def test_a_capacity_provider_registers_hand_shakes_and_stays_online_both_ways(cp, fp):
    from microgrid.envelopes.outbound import oscp_tick_run

    # 1. register: the CP sends its token and URL with the token we gave it (A) ...
    ack = register_and_handshake(cp, fp)
    register = cp.got("/register")[0]
    assert register.method == "POST"
    assert register.headers["authorization"] == f"Token {cp.token}"
    assert register.headers["x-correlation-id"] == "reg-1"
    assert register.body["version_url"] == [{"version": "2.0", "base_url": fp}]
    assert len(register.body["token"]) >= 32 and register.body["token"] != TOKEN
    peer = OscpPeer.objects.get()
    assert (peer.cp_base_url, peer.cp_token) == (cp.base_url, cp.token)
    # ... and from the CP's first use of the new token on, token A is refused.
    status, body = cp.send(
        fp, "/heartbeat", {"offline_mode_at": "2026-03-02T12:00:00Z"}, token=TOKEN
    )
    assert (status, body["code"]) == (401, "NOT_AUTHENTICATED")

    # 2. handshake -> handshake_acknowledgement with the behaviour we follow
    assert ack.headers["x-correlation-id"] == "hs-1"
    assert ack.body == {
        "required_behaviour": {
            "heartbeat_interval": 30,
            "measurement_configuration": ["INTERMITTENT"],
        }
    }
    peer.refresh_from_db()
    assert peer.handshake_heartbeat_interval_s == 30 and peer.interval_s == 30

    # 3. the CP's heartbeat in pyoscp's format: local time without an offset -> UTC, noted
    now = timezone.now()
    status, _ = cp.send(
        fp, "/heartbeat", {"offline_mode_at": ts(now + 90 * timedelta(seconds=1), "pyoscp")}
    )
    assert status == 204
    message = OscpMessage.objects.filter(message_type="HEARTBEAT").get()
    assert "taken as UTC" in message.notes[0]
    peer.refresh_from_db()
    # offline at the earlier of offline_mode_at and twice the interval (60 s)
    assert peer.offline_mode_at <= timezone.now() + timedelta(seconds=60)
    assert not peer.offline_at(timezone.now())

    # 4. our heartbeat to the CP: offline_mode_at = now + 2 x 30 s, with offset and fraction
    tick = timezone.now()
    oscp_tick_run(now=tick)
    beat = cp.wait_for("/heartbeat")[0]
    assert beat.headers["authorization"] == f"Token {cp.token}"
    sent_at = OscpOutbound.objects.get(message_type="HEARTBEAT")
    from datetime import datetime

    offline = datetime.fromisoformat(beat.body["offline_mode_at"])
    assert offline.utcoffset() == timedelta(0) and "." in beat.body["offline_mode_at"]
    assert offline == (tick + timedelta(seconds=60)).replace(
        microsecond=(tick.microsecond // 1000) * 1000
    )
    assert (sent_at.state, sent_at.attempts, sent_at.last_status_code) == ("SENT", 1, 204)
    # the next one is due one interval later, not before
    oscp_tick_run(now=tick + timedelta(seconds=29))
    assert OscpOutbound.objects.filter(message_type="HEARTBEAT").count() == 1
    oscp_tick_run(now=tick + timedelta(seconds=30))
    cp.wait_for("/heartbeat", 2)


def test_forecasts_whole_partial_per_phase_segmented_and_cleared_are_enforced(cp, fp, microgrid):
    from microgrid.limits.selectors import effective_limits

    # Heartbeats once a day: the peer stays online over the hours looked at below.
    register_and_handshake(cp, fp, interval=86400)
    t0 = timezone.now().replace(microsecond=0) + H
    root = lambda at: effective_limits(microgrid, at)["grid"].effective_limit_kw  # noqa: E731

    # whole, with a field this product does not know (kept raw, ignored)
    whole = forecast(
        [blk(t0, t0 + H, 180), blk(t0 + H, t0 + 2 * H, 181)], extra_hint={"source": "dso"}
    )
    whole["forecasted_blocks"][0]["comment"] = "peak"
    assert cp.send(fp, "/update_group_capacity_forecast", whole)[0] == 204
    assert (
        '"comment": "peak"'
        in OscpMessage.objects.get(message_type="UPDATE_GROUP_CAPACITY_FORECAST").body
    )

    # partial: 00:30-01:30 keeps 00:00-00:30 at 180 and 01:30-02:00 at 181
    half = 30 * M
    assert (
        cp.send(
            fp, "/update_group_capacity_forecast", forecast([blk(t0 + half, t0 + H + half, 150)])
        )[0]
        == 204
    )
    for minute, kw in ((0, 180), (29, 180), (30, 150), (89, 150), (90, 181), (119, 181)):
        assert root(t0 + minute * M) == kw, minute

    # segmented: three segments, out of order, all with the same X-Request-ID (some peers do)
    later = t0 + 3 * H
    segments = [
        forecast([blk(later, later + H, 100, "W", "ONE")]),
        forecast([blk(later, later + H, 90000, "W", "TWO")]),
        forecast([blk(later, later + H, 100000, "W", "THREE")]),
    ]
    for index in (3, 1):
        status, _ = cp.send(
            fp,
            "/update_group_capacity_forecast",
            segments[index - 1],
            request_id="seg-req",
            headers={
                "X-Correlation-ID": "fc-9",
                "X-Segment-Index": str(index),
                "X-Segment-Count": "3",
            },
        )
        assert status == 204
    assert not OperatingEnvelope.objects.filter(valid_from=later).exists()  # not before all came
    status, _ = cp.send(
        fp,
        "/update_group_capacity_forecast",
        segments[1],
        request_id="seg-req",
        headers={"X-Correlation-ID": "fc-9", "X-Segment-Index": "2", "X-Segment-Count": "3"},
    )
    assert status == 204
    assembled = OscpMessage.objects.get(correlation_id="fc-9")
    assert assembled.segments == 3
    assert len(json.loads(assembled.body)["forecasted_blocks"]) == 3
    # per phase: 0.1 kW on ONE x 3 phases binds (never 0.1 kW as a whole-node cap silently)
    per_phase = OperatingEnvelope.objects.filter(valid_from=later).order_by("number")
    assert [(e.phase, e.capacity_kw) for e in per_phase] == [
        ("ONE", 0.3),
        ("TWO", 270.0),
        ("THREE", 300.0),
    ]
    assert "x 3 phases" in per_phase[0].capacity_note
    assert root(later + M) == 0.3

    # cleared: an empty list ends every live envelope of the group and type, by the peer
    assert cp.send(fp, "/update_group_capacity_forecast", forecast([]))[0] == 204
    assert not OperatingEnvelope.objects.filter(state="RECEIVED", valid_until__gt=timezone.now())
    ended = OperatingEnvelope.objects.filter(state="WITHDRAWN")
    assert ended.exists() and all(e.withdrawn_by_message_id for e in ended)
    assert root(t0 + M) == 800.0  # back to the other limits (the root's rating)


def test_measurements_are_sent_as_intermittent_energy_of_the_groups_meter(cp, fp, microgrid):
    from microgrid.envelopes.models import OscpGroupBinding
    from microgrid.envelopes.outbound import oscp_tick_run
    from microgrid.telemetry.services import telemetry_ingest

    register_and_handshake(cp, fp, configuration=("INTERMITTENT", "CONTINUOUS"))
    # A reading holds until the next one, at most telemetry_stale_after_s.
    type(microgrid).objects.filter(pk=microgrid.pk).update(telemetry_stale_after_s=900)
    now = timezone.now()
    oscp_tick_run(now=now - 15 * M)  # starts the counter
    binding = OscpGroupBinding.objects.get()
    assert binding.measured_until == now - 15 * M
    readings = [
        {"asset_id": "M-GRID", "power_kw": 120, "observed_at": (now - 15 * M).isoformat()},
        {"asset_id": "M-GRID", "power_kw": 60, "observed_at": (now - 5 * M).isoformat()},
    ]
    telemetry_ingest(microgrid=microgrid, readings=readings, now=now)
    oscp_tick_run(now=now)
    sent = cp.wait_for("/update_group_measurements")[0]
    (measurement,) = sent.body["measurements"]
    assert sent.body["group_id"] == "GRP-N"
    # 120 kW for 10 min (20 kWh) + 60 kW for 5 min (5 kWh) = 25 000 Wh
    assert measurement["value"] == 25000.0
    assert (measurement["unit"], measurement["direction"], measurement["energy_type"]) == (
        "WH",
        "IMPORT",
        "TOTAL",
    )
    assert measurement["initial_measure_time"].startswith(ts(now - 15 * M)[:19])
    # INTERMITTENT: the next one reports the energy since this one (60 kW held to its limit)
    oscp_tick_run(now=now + 15 * M)
    second = cp.wait_for("/update_group_measurements", 2)[1].body["measurements"][0]
    # 60 kW held 15 min from its reading (now - 5 min): 10 min of this window = 10 kWh
    assert second["value"] == 10000.0
    assert second["initial_measure_time"] == measurement["measure_time"]


def test_replays_segments_and_bad_headers_over_http(cp, fp):
    from microgrid.envelopes.outbound import oscp_tick_run

    register_and_handshake(cp, fp)
    t0 = timezone.now() + H
    body = forecast([blk(t0, t0 + H, 200)])
    assert cp.send(fp, "/update_group_capacity_forecast", body, request_id="r-1")[0] == 204
    assert cp.send(fp, "/update_group_capacity_forecast", body, request_id="r-1")[0] == 204
    status, error = cp.send(
        fp, "/update_group_capacity_forecast", forecast([blk(t0, t0 + H, 5)]), request_id="r-1"
    )
    assert (status, error["code"]) == (400, "OSCP_REQUEST_ID_REUSED")
    assert OperatingEnvelope.objects.count() == 1

    def seg(index, count="2", corr="fc-1", payload=None):
        headers = {"X-Segment-Index": index, "X-Segment-Count": count}
        if corr:
            headers["x-correlation-id"] = corr
        return cp.send(fp, "/update_group_capacity_forecast", payload or body, headers=headers)

    for bad in (
        seg("3", "2"),
        seg("x", "2"),
        seg("1", "0"),
        seg("1", "2", corr=None),
        seg("1", ""),
    ):
        assert (bad[0], bad[1]["code"]) == (400, "OSCP_MESSAGE_INVALID")
    assert not OscpSegment.objects.exists()
    # one segment of two, then nothing: dropped (and kept for the audit) after 5 minutes
    assert seg("1")[0] == 204
    assert seg("1")[0] == 204  # the same segment again is no new segment
    assert OscpSegment.objects.count() == 1
    oscp_tick_run(now=timezone.now() + 5 * M + timedelta(seconds=1))
    assert OscpSegment.objects.get().state == "DROPPED"
    assert OperatingEnvelope.objects.count() == 1


def test_the_cp_unregisters_and_its_pending_messages_are_cancelled(cp, fp):
    register_and_handshake(cp, fp)
    peer = OscpPeer.objects.get()
    assert cp.send(fp, "/register", method="DELETE")[0] == 204
    peer.refresh_from_db()
    assert (peer.active, peer.cp_token) == (False, "")
    assert cp.send(fp, "/heartbeat", {"offline_mode_at": ts(timezone.now())})[0] == 401
