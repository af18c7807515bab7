"""Envelope fixtures: a peer with its token, groups bound to the test microgrid, and helpers
that send OSCP messages over HTTP (as a peer would) or straight to the service (with a clock)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

TOKEN = "dso-north-token-0123456789"
OTHER_TOKEN = "dso-south-token-9876543210"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FORECAST = "/oscp/fp/2.0/update_group_capacity_forecast"
HEARTBEAT = "/oscp/fp/2.0/heartbeat"
HANDSHAKE = "/oscp/fp/2.0/handshake"

_request_ids = itertools.count(1)


def block(start, end, capacity=300, unit="KW", phase="ALL") -> dict:
    return {
        "capacity": capacity,
        "phase": phase,
        "unit": unit,
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
    }


def forecast_body(group_id="GRP-N", type="CONSUMPTION", blocks=None) -> dict:
    return {
        "group_id": group_id,
        "type": type,
        "forecasted_blocks": blocks if blocks is not None else [block(T0, T0 + timedelta(hours=1))],
    }


def next_request_id() -> str:
    return f"req-{next(_request_ids)}"


@pytest.fixture
def peer(db):
    from microgrid.envelopes.services import oscp_peer_save

    peer, _ = oscp_peer_save(name="dso-north", token=TOKEN, heartbeat_interval_s=60)
    return peer


@pytest.fixture
def other_peer(db):
    from microgrid.envelopes.services import oscp_peer_save

    peer, _ = oscp_peer_save(name="dso-south", token=OTHER_TOKEN, heartbeat_interval_s=60)
    return peer


@pytest.fixture
def bound(microgrid, peer):
    """GRP-N -> the whole microgrid, GRP-A -> Microgrid Node sb-1, GRP-G -> grp-a."""
    from microgrid.envelopes.services import oscp_group_binding_save

    for group_id, scope in (
        ("GRP-N", {"type": "MICROGRID"}),
        ("GRP-A", {"type": "NODE", "node_id": "sb-1"}),
        ("GRP-G", {"type": "NODE", "node_id": "grp-a"}),
    ):
        oscp_group_binding_save(peer=peer, group_id=group_id, microgrid=microgrid, scope=scope)
    return microgrid


@pytest.fixture
def receive(peer):
    """receive(body, now=..., message_type=..., request_id=...) -> Receipt, through the service."""
    from microgrid.envelopes.services import oscp_message_receive

    def send(
        body, *, now=T0, message_type="UPDATE_GROUP_CAPACITY_FORECAST", request_id=None, who=None
    ):
        return oscp_message_receive(
            peer=who or peer,
            message_type=message_type,
            request_id=request_id or next_request_id(),
            correlation_id="corr-1",
            body=json.dumps(body),
            now=now,
        )

    return send


@pytest.fixture
def oscp_client():
    """post(path, body, token=TOKEN, request_id=...) over HTTP, as a capacity provider sends."""
    from rest_framework.test import APIClient

    client = APIClient()

    def post(path, body, *, token=TOKEN, request_id="auto", correlation_id=None, raw=None):
        headers = {}
        if token is not None:
            headers["HTTP_AUTHORIZATION"] = f"Token {token}"
        if request_id == "auto":
            request_id = next_request_id()
        if request_id is not None:
            headers["HTTP_X_REQUEST_ID"] = request_id
        if correlation_id is not None:
            headers["HTTP_X_CORRELATION_ID"] = correlation_id
        data = raw if raw is not None else json.dumps(body)
        return client.generic("POST", path, data, content_type="application/json", **headers)

    post.client = client
    return post


@pytest.fixture
def legacy_record(microgrid):
    """make(circuit_id, configured_kw, scope_type, node_id="", asset_id="") -> a legacy record
    with one alias."""
    from legacy_circuit.models import CircuitAlias, LegacyCircuit

    def make(circuit_id, configured_kw, scope_type="MICROGRID", node_id="", asset_id=""):
        record = LegacyCircuit.objects.create(
            circuit_id=circuit_id,
            name=circuit_id,
            configured_capacity_kw=configured_kw,
            available_capacity_kw=configured_kw,
        )
        CircuitAlias.objects.create(
            circuit=record,
            microgrid=microgrid,
            scope_type=scope_type,
            node_id=node_id,
            asset_id=asset_id,
        )
        return record

    return make


@pytest.fixture
def cp():
    """A real Capacity Provider listening on 127.0.0.1."""
    from .cp_server import start_cp, stop_cp

    server = start_cp()
    yield server
    stop_cp(server)
