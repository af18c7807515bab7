"""Schemathesis against the product's own OpenAPI document, in process (WSGI, no server).

Every operation of /api/ (canonical and legacy) and /oscp/ gets generated
requests, valid and invalid (a fixed seed, a bounded number), sent with valid
tokens: support's, integration's on the ingest endpoints, an OSCP peer's on
/oscp/. Each answer must be no 5xx, a documented status, a documented content
type and a body of its documented schema.

Slow (a few thousand requests): marked `schemathesis`, left out of `make test`,
run by .ci/run on PostgreSQL. The terminal summary says
"schemathesis: N requests, F failures".
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import schemathesis
from django.utils import timezone
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.conftest import SCHEMATHESIS_STATS

SEED = 20260302
# Fuzzing examples per operation and mode; the examples and coverage phases add their own.
MAX_EXAMPLES = 40
PEER_TOKEN = "st-peer-token-0123456789abcdef"
# 27 canonical operations, 5 legacy, 3 OSCP: a route left out of the document fails here.
EXPECTED_OPERATIONS = 35

pytestmark = [pytest.mark.schemathesis, pytest.mark.django_db(transaction=True)]

CONFIG = {
    "seed": SEED,
    "suppress-health-check": ["all"],
    "generation": {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "database": "none",
        "deterministic": True,
    },
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
}


def _load_schema():
    from microgrid.wsgi import application

    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", application, config=schemathesis.Config.from_dict(CONFIG)
    )


@pytest.fixture
def depot(microgrid, make_user):
    """MG.NORTH-1 with a limit (LP-1), an active envelope (OE-1) from a bound peer, a capability
    binding (CB-1), a legacy circuit aliased to sb-1 (CIR-101), a cycle and an open breach:
    the examples in the document name these, so generated requests reach real rows."""
    from django.contrib.auth.models import Group
    from rest_framework.test import APIClient

    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_save, legacy_circuit_save
    from microgrid.capabilities.services import capability_binding_create
    from microgrid.common.models import ApiToken
    from microgrid.common.roles import ALL_ROLES
    from microgrid.envelopes.services import (
        oscp_group_binding_save,
        oscp_message_receive,
        oscp_peer_save,
    )
    from microgrid.limits.services import limit_policy_create
    from microgrid.telemetry.services import telemetry_ingest

    # A transactional test flushes the tables after itself, the role groups included.
    for role in ALL_ROLES:
        Group.objects.get_or_create(name=role)
    keys = {role: ApiToken.issue(user=make_user(role))[1] for role in ("support", "integration")}
    support = APIClient()
    support.credentials(HTTP_AUTHORIZATION=f"Token {keys['support']}")
    peer, _ = oscp_peer_save(name="dso-st", token=PEER_TOKEN, heartbeat_interval_s=60)
    oscp_group_binding_save(
        peer=peer, group_id="GRP-N", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    now = timezone.now()
    oscp_message_receive(
        peer=peer,
        message_type="UPDATE_GROUP_CAPACITY_FORECAST",
        request_id="st-setup-1",
        correlation_id=None,
        body=(
            '{"group_id": "GRP-N", "type": "CONSUMPTION", "forecasted_blocks": [{"capacity": 600,'
            f' "phase": "ALL", "unit": "KW", "start_time": "{(now - timedelta(minutes=1)).isoformat()}",'
            f' "end_time": "{(now + timedelta(hours=2)).isoformat()}"}}]}}'
        ),
        now=now,
    )
    limit_policy_create(
        microgrid=microgrid, data={"scope": "NODE", "node_id": "sb-1", "limit_kw": 350}
    )
    capability_binding_create(
        microgrid=microgrid,
        data={
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": "grp-b"},
            "source_device_id": "plc-b",
        },
    )
    circuit, _ = legacy_circuit_save(
        circuit_id="CIR-101", name="Board 1", configured_capacity_kw=350, depot=microgrid.depot
    )
    circuit_alias_save(
        alias=CircuitAlias(circuit=circuit, microgrid=microgrid, scope_type="NODE", node_id="sb-1")
    )
    telemetry_ingest(
        microgrid=microgrid,
        readings=[
            {"asset_id": "M-GRID", "power_kw": 900, "observed_at": now.isoformat()},
            {
                "asset_id": "CH-01",
                "power_kw": 50,
                "observed_at": now.isoformat(),
                "connected": True,
                "requested_kw": 150,
            },
        ],
    )
    answer = support.post(f"/api/microgrids/{microgrid.microgrid_id}/rebalance/", {}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["breaches"], "the setup wants an open breach to read"
    return keys


INGEST_OPERATIONS = {
    "telemetry_ingest",
    "capabilities_event",
    "legacy_circuit_get",
    "legacy_circuit_rebalance_load",
    "legacy_circuit_tou_limits_get",
    "legacy_circuit_tou_limits_set",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_answers_as_documented_whatever_it_is_sent(depot):
    # One test over every operation, the way schemathesis' own lazy loader does it (its
    # pytest-9-incompatible reporting aside): one database, set up once, flushed once.
    schema = _load_schema()

    def exercise(case):
        operation_id = case.operation.definition.raw.get("operationId")
        if case.operation.path.startswith("/oscp/"):
            token = PEER_TOKEN
        elif operation_id in INGEST_OPERATIONS:
            token = depot["integration"]
        else:
            token = depot["support"]
        headers = {"Authorization": f"Token {token}"}
        started = time.monotonic()
        SCHEMATHESIS_STATS["requests"] += 1
        try:
            response = case.call(headers=headers)
            SCHEMATHESIS_STATS["statuses"][response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)
        finally:
            SCHEMATHESIS_STATS["seconds"] += time.monotonic() - started

    failures = []
    operations = 0
    for result in get_all_tests(schema=schema, test_func=exercise, settings=None, given_kwargs={}):
        if isinstance(result, Err):
            failures.append(f"schema error: {result.err()}")
            continue
        operation, run = result.ok()
        operations += 1
        try:
            run()
        except Exception as exc:  # a FailureGroup: the report names the check and the request
            SCHEMATHESIS_STATS["failures"] += 1
            failures.append(f"{operation.label}:\n{exc}")
    assert operations == EXPECTED_OPERATIONS, operations
    assert not failures, "\n\n".join(failures)
