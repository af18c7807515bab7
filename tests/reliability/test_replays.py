"""Every inbound message, sent twice, changes nothing the second time and gets the same answer.

Proved from the outside, over HTTP: OSCP messages by peer and X-Request-ID,
capability events by event_ref, telemetry by asset and timestamp, legacy TOU
writes by content, and every canonical POST by its Idempotency-Key. Each test
counts the rows of every product table (history included) after the first
send and after the second; after-commit work (the cycles an envelope or a
limit asks for) runs inside each send, so a replay that set off a cycle would
show.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.reliability.conftest import row_counts

pytestmark = pytest.mark.django_db

MG = "MG.NORTH-1"


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """send(client, method, path, body, **headers) -> (status, JSON body or None), with the
    request's after-commit callbacks run (as they are outside a test transaction)."""

    def do(client, method, path, body=None, **headers):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.generic(
                method,
                path,
                json.dumps(body) if body is not None else "",
                content_type="application/json",
                **headers,
            )
        return response.status_code, (response.json() if response.content else None), response

    return do


def _twice(send, client, method, path, body=None, second_body=None, **headers):
    """Send, count, send again (optionally another body), count: both answers and counts."""
    first_status, first, _ = send(client, method, path, body, **headers)
    after_first = row_counts()
    status, again, response = send(
        client, method, path, second_body if second_body is not None else body, **headers
    )
    return (first_status, first), (status, again), after_first, row_counts(), response


def _forecast(now, capacity=400):
    return {
        "group_id": "GRP-N",
        "type": "CONSUMPTION",
        "forecasted_blocks": [
            {
                "capacity": capacity,
                "phase": "ALL",
                "unit": "KW",
                "start_time": (now - timedelta(minutes=1)).isoformat(),
                "end_time": (now + timedelta(hours=1)).isoformat(),
            }
        ],
    }


# -- OSCP: by peer and X-Request-ID ------------------------------------------------------------


def _reused(send, client, path, body, request_id):
    """The same X-Request-ID with another body: 400 OSCP_REQUEST_ID_REUSED, nothing changes."""
    before = row_counts()
    status, error, _ = send(client, "POST", path, body, HTTP_X_REQUEST_ID=request_id)
    assert (status, error["code"]) == (400, "OSCP_REQUEST_ID_REUSED")
    assert error["details"]["request_id"] == request_id
    assert row_counts() == before


def test_a_repeated_capacity_forecast_is_accepted_again_and_stores_nothing(depot, send):
    from microgrid.envelopes.models import OperatingEnvelope

    now = timezone.now()
    path = "/oscp/fp/2.0/update_group_capacity_forecast"
    first, second, after_first, after_second, _ = _twice(
        send, depot.client("peer"), "POST", path, _forecast(now), HTTP_X_REQUEST_ID="forecast-42"
    )
    assert first == second == (204, None)
    assert after_second == after_first
    # Another body under the same X-Request-ID is refused: the CP learns it was not applied.
    _reused(send, depot.client("peer"), path, _forecast(now, capacity=5), "forecast-42")
    # The setup's 600 kW envelope is superseded for the time the 400 kW block covers; what
    # is left of it stays in force as parts. The refused 5 kW is nowhere.
    rows = OperatingEnvelope.objects.values_list("capacity", "state", "split_from")
    assert sorted((c, s) for c, s, origin in rows if origin is None) == [
        (400, "RECEIVED"),
        (600, "SUPERSEDED"),
    ]
    assert {c for c, s, origin in rows if origin is not None} == {600}


def test_a_repeated_heartbeat_changes_nothing_the_second_time(depot, send):
    now = timezone.now()
    path = "/oscp/fp/2.0/heartbeat"
    # Within twice the peer's interval (60 s), so offline_mode_at is what decides.
    body = {"offline_mode_at": (now + timedelta(minutes=1)).isoformat()}
    first, second, after_first, after_second, _ = _twice(
        send, depot.client("peer"), "POST", path, body, HTTP_X_REQUEST_ID="heartbeat-7"
    )
    assert first == second == (204, None)
    assert after_second == after_first
    other = {"offline_mode_at": (now - timedelta(minutes=5)).isoformat()}
    _reused(send, depot.client("peer"), path, other, "heartbeat-7")
    depot.peer.refresh_from_db()
    assert depot.peer.offline_mode_at == now + timedelta(minutes=1)


def test_a_repeated_handshake_changes_nothing_the_second_time(depot, send):
    path = "/oscp/fp/2.0/handshake"
    body = {"required_behaviour": {"heartbeat_interval": 30, "measurement_configuration": []}}
    first, second, after_first, after_second, _ = _twice(
        send, depot.client("peer"), "POST", path, body, HTTP_X_REQUEST_ID="handshake-1"
    )
    assert first == second == (204, None)
    assert after_second == after_first
    other = {
        "required_behaviour": {
            "heartbeat_interval": 90,
            "measurement_configuration": ["CONTINUOUS"],
        }
    }
    _reused(send, depot.client("peer"), path, other, "handshake-1")
    depot.peer.refresh_from_db()
    assert depot.peer.required_behaviour == {
        "heartbeat_interval": 30,
        "measurement_configuration": [],
    }


# -- capability events: by event_ref -----------------------------------------------------------


def test_a_repeated_capability_event_is_answered_with_the_stored_event(depot, send):
    event = {
        "capability_type": "LOAD_MANAGEMENT",
        "scope": {"type": "NODE", "node_id": "grp-b"},
        "source_device_id": "plc-b",
        "event_ref": "plc-b-0001",
        "state": "AVAILABLE",
        "observed_at": timezone.now().isoformat(),
        "detail": {"soc": 80},
    }
    first, second, after_first, after_second, _ = _twice(
        send,
        depot.client("integration"),
        "POST",
        f"/api/microgrids/{MG}/capabilities/events/",
        event,
        second_body={**event, "state": "UNAVAILABLE", "detail": "changed my mind"},
    )
    assert (first[0], second[0]) == (201, 200)
    assert second[1] == first[1]
    assert first[1]["event"]["state"] == "AVAILABLE"
    assert after_second == after_first


# -- telemetry: by asset and timestamp ---------------------------------------------------------


def test_a_repeated_telemetry_batch_stores_no_second_reading_and_moves_nothing(depot, send):
    from microgrid.telemetry.models import LatestReading

    at = timezone.now().isoformat()
    batch = {
        "readings": [
            {"asset_id": "SITE", "power_kw": 42.5, "observed_at": at},
            {
                "asset_id": "CH-02",
                "power_kw": 11,
                "observed_at": at,
                "connected": True,
                "requested_kw": 22,
            },
        ]
    }
    latest = lambda: sorted(  # noqa: E731
        LatestReading.objects.values_list(
            "asset__asset_id", "power_kw", "observed_at", "connected", "requested_kw"
        )
    )
    first, second, after_first, after_second, _ = _twice(
        send,
        depot.client("integration"),
        "POST",
        f"/api/microgrids/{MG}/telemetry/",
        batch,
    )
    state = latest()
    # The same points at the same timestamps with other values: still nothing new.
    third_status, third, _ = send(
        depot.client("integration"),
        "POST",
        f"/api/microgrids/{MG}/telemetry/",
        {"readings": [{**r, "power_kw": 99} for r in batch["readings"]]},
    )
    assert first == second == (third_status, third) == (202, {"accepted": 2})
    assert after_second == after_first == row_counts()
    assert latest() == state
    assert ("SITE", 42.5) in [(row[0], row[1]) for row in state]


# -- legacy TOU writes: by content -------------------------------------------------------------


def test_a_repeated_legacy_tou_write_writes_nothing_but_its_audit_row(depot, send):
    from legacy_circuit.models import AliasUsage

    body = {"tou_limits": [{"start": "17:00", "end": "21:00", "days": ["MON"], "limit_kw": 200}]}
    usage = AliasUsage.objects.count()
    first, second, after_first, after_second, _ = _twice(
        send, depot.client("integration"), "POST", "/api/circuit/CIR-101/tou_limits", body
    )
    assert first == second
    assert first[0] == 200
    assert after_second == after_first
    assert AliasUsage.objects.count() == usage + 2  # every legacy call is audited


# -- Idempotency-Key on every canonical POST ---------------------------------------------------

CANONICAL_POSTS = [
    (
        "microgrids_create",
        "support",
        "/api/microgrids/",
        {
            "microgrid_id": "MG.SOUTH-1",
            "name": "South",
            "depot": {"depot_id": "DEPOT-S", "name": "South Depot", "timezone": "UTC"},
        },
        201,
    ),
    (
        "limits_create",
        "operator",
        f"/api/microgrids/{MG}/limits/",
        {"scope": "MICROGRID", "limit_kw": 700},
        201,
    ),
    (
        "telemetry_ingest",
        "integration",
        f"/api/microgrids/{MG}/telemetry/",
        {"readings": [{"asset_id": "PV-1", "power_kw": 12, "observed_at": "<now>"}]},
        202,
    ),
    (
        "operating_envelopes_withdraw",
        "support",
        f"/api/microgrids/{MG}/operating-envelopes/OE-1/withdraw/",
        {"reason": "test"},
        200,
    ),
    (
        "rebalance",
        "operator",
        f"/api/microgrids/{MG}/rebalance/",
        {"scope": {"type": "NODE", "node_id": "sb-1"}},
        200,
    ),
    (
        "capabilities_bind",
        "support",
        f"/api/microgrids/{MG}/capabilities/bindings/",
        {
            "capability_type": "ENERGY_STORAGE",
            "scope": {"type": "MICROGRID"},
            "source_device_id": "bess-1",
        },
        201,
    ),
    (
        "capabilities_transfer",
        "support",
        f"/api/microgrids/{MG}/capabilities/bindings/transfer/",
        {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": "grp-b"},
            "expected_source_device_id": "plc-b",
            "new_source_device_id": "plc-c",
        },
        200,
    ),
    (
        "capabilities_release",
        "support",
        f"/api/microgrids/{MG}/capabilities/bindings/CB-1/release/",
        {},
        200,
    ),
    (
        "capabilities_event",
        "integration",
        f"/api/microgrids/{MG}/capabilities/events/",
        {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": "grp-b"},
            "source_device_id": "plc-b",
            "event_ref": "idem-1",
            "state": "DEGRADED",
            "observed_at": "<now>",
        },
        201,
    ),
]


def test_every_canonical_post_is_in_the_idempotency_table():
    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    posts = {
        op["operationId"]
        for path, item in document["paths"].items()
        if path.startswith("/api/") and not path.startswith(("/api/circuit/", "/api/legacy/"))
        for method, op in item.items()
        if method == "post"
    }
    assert posts == {name for name, *_ in CANONICAL_POSTS}


@pytest.mark.parametrize(
    ("name", "role", "path", "body", "status"), CANONICAL_POSTS, ids=[p[0] for p in CANONICAL_POSTS]
)
def test_a_canonical_post_repeated_with_its_idempotency_key_answers_as_before(
    depot, send, name, role, path, body, status
):
    body = json.loads(json.dumps(body).replace("<now>", timezone.now().isoformat()))
    first, second, after_first, after_second, response = _twice(
        send, depot.client(role), "POST", path, body, HTTP_IDEMPOTENCY_KEY=f"key-{name}"
    )
    assert first[0] == status, first
    assert second == first
    assert response["Idempotent-Replayed"] == "true"
    assert after_second == after_first
