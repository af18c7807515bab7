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

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.conftest import PEER_TOKEN, SCHEMATHESIS_STATS

SEED = 20260302
# Fuzzing examples per operation and mode; the examples and coverage phases add their own.
MAX_EXAMPLES = 25
# 32 canonical operations (setpoints and stations added, then a charger's session: GET, PUT,
# DELETE), 5 legacy, 6 OSCP: a route left out of the document fails here.
EXPECTED_OPERATIONS = 43

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


def _load_schema(token: str):
    from microgrid.wsgi import application

    # The schema, like every API URL, refuses anonymous callers.
    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json",
        application,
        config=schemathesis.Config.from_dict(CONFIG),
        headers={"Authorization": f"Token {token}"},
    )


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


def test_every_operation_answers_as_documented_whatever_it_is_sent(depot, monkeypatch):
    # One test over every operation, the way schemathesis' own lazy loader does it (its
    # pytest-9-incompatible reporting aside): one database, set up once, flushed once.
    from microgrid.envelopes.models import OscpPeer

    # A generated register points the peer at a generated CP URL: nothing leaves the process
    # here (outbound delivery has its own tests against a real CP on 127.0.0.1).
    monkeypatch.setattr("microgrid.envelopes.outbox._deliver_later", lambda pk: None)
    schema = _load_schema(depot.keys["support"])

    def exercise(case):
        operation_id = case.operation.definition.raw.get("operationId")
        if case.operation.path.startswith("/oscp/"):
            token = PEER_TOKEN
        elif operation_id in INGEST_OPERATIONS:
            token = depot.keys["integration"]
        else:
            token = depot.keys["support"]
        headers = {"Authorization": f"Token {token}"}
        started = time.monotonic()
        SCHEMATHESIS_STATS["requests"] += 1
        try:
            response = case.call(headers=headers)
            SCHEMATHESIS_STATS["statuses"][response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)
        finally:
            SCHEMATHESIS_STATS["seconds"] += time.monotonic() - started
            if case.operation.path.startswith("/oscp/"):
                # A generated DELETE /register deactivates the peer: keep it usable, so every
                # OSCP operation is exercised with a valid token.
                OscpPeer.objects.update(active=True)

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
