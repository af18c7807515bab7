"""Every legacy call leaves one AliasUsage row; the usage report summarises them for migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from microgrid.topology.access import SYSTEM
from tests.legacy_circuit.conftest import assert_body

pytestmark = pytest.mark.django_db

EVENING = {"start": "17:00", "end": "21:00", "days": ["MON"], "limit_kw": 200}


def last_usage():
    from legacy_circuit.models import AliasUsage

    return AliasUsage.objects.order_by("-pk").first()


def test_a_rebalance_records_client_mapping_status_and_cycle(integration_api, circuits):
    body = integration_api.post("/api/circuit/CIR-102/rebalance_load").json()

    row = last_usage()
    assert (row.circuit_id, row.endpoint, row.method, row.client, row.status_code) == (
        "CIR-102",
        "/api/circuit/{circuit_id}/rebalance_load",
        "POST",
        "integration-user",
        200,
    )
    assert (row.microgrid_id, row.scope, row.cycle_id) == (
        "MG.NORTH-1",
        {"type": "ASSET", "asset_id": "CH-01"},
        body["cycle_id"],
    )
    assert (row.failure_code, row.failure_reason) == ("", "")


def test_an_unresolvable_call_records_the_failure_code_and_reason(integration_api, circuits):
    integration_api.post("/api/circuit/CIR-103/rebalance_load")

    row = last_usage()
    assert (row.status_code, row.failure_code, row.failure_reason) == (
        409,
        "CIRCUIT_ALIAS_NOT_RESOLVABLE",
        "AMBIGUOUS",
    )
    assert (row.microgrid_id, row.scope, row.cycle_id) == ("", None, "")


def test_a_refused_tou_write_is_audited_while_the_write_rolls_back(integration_api, circuits):
    from microgrid.limits.models import LimitPolicy

    integration_api.post(
        "/api/circuit/CIR-101/tou_limits",
        {"tou_limits": [EVENING, {**EVENING, "start": "18:00", "end": "19:00"}]},
        format="json",
    )

    row = last_usage()
    assert (row.status_code, row.failure_code) == (422, "LIMIT_SCHEDULE_OVERLAP")
    assert (row.microgrid_id, row.scope) == ("MG.NORTH-1", {"type": "NODE", "node_id": "sb-1"})
    assert not LimitPolicy.objects.exists()
    assert not LimitPolicy.history.exists()


def test_a_tou_write_and_its_audit_row_are_one_transaction(circuits, monkeypatch):
    from legacy_circuit import services
    from legacy_circuit.api.serializers import tou_limits_input
    from legacy_circuit.models import AliasUsage
    from microgrid.limits.models import LimitPolicy

    def broken(**kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(services, "alias_usage_record", broken)
    usage = services.UsageContext(circuit_id="CIR-101", endpoint="tou", method="POST")
    with pytest.raises(RuntimeError):
        services.circuit_tou_replace(
            circuit_id="CIR-101",
            tou_limits=tou_limits_input({"tou_limits": [EVENING]}, circuit_id="CIR-101"),
            usage=usage,
            user=SYSTEM,
        )

    assert not LimitPolicy.objects.exists()
    assert not LimitPolicy.history.exists()
    assert not AliasUsage.objects.exists()


def test_reads_refusals_and_auth_failures_are_each_recorded_once(
    integration_api, operator_api, anon_api, circuits
):
    from legacy_circuit.models import AliasUsage

    integration_api.get("/api/circuit/CIR-101")
    integration_api.get("/api/circuit/CIR-999")
    integration_api.get("/api/circuit/CIR-100/tou_limits")
    integration_api.post("/api/circuit/CIR-102/tou_limits", {"tou_limits": []}, format="json")
    operator_api.post("/api/circuit/CIR-101/rebalance_load")
    anon_api.post("/api/circuit/CIR-101/rebalance_load")

    rows = list(
        AliasUsage.objects.order_by("pk").values_list(
            "client", "method", "circuit_id", "status_code", "failure_code", "microgrid_id"
        )
    )
    assert rows == [
        ("integration-user", "GET", "CIR-101", 200, "", ""),
        ("integration-user", "GET", "CIR-999", 404, "CIRCUIT_NOT_FOUND", ""),
        ("integration-user", "GET", "CIR-100", 200, "", "MG.NORTH-1"),
        ("integration-user", "POST", "CIR-102", 422, "TOU_SCOPE_UNSUPPORTED", "MG.NORTH-1"),
        ("operator-user", "POST", "CIR-101", 403, "PERMISSION_DENIED", ""),
        ("", "POST", "CIR-101", 401, "NOT_AUTHENTICATED", ""),
    ]


@pytest.fixture
def usage_rows(db):
    """Six calls by two clients on three circuits at fixed times."""
    from legacy_circuit.models import AliasUsage

    t0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    def row(minutes, client, circuit_id, status, **extra):
        return AliasUsage(
            circuit_id=circuit_id,
            endpoint="/api/circuit/{circuit_id}/rebalance_load",
            method="POST",
            client=client,
            status_code=status,
            at=t0 + timedelta(minutes=minutes),
            **extra,
        )

    ok = {"microgrid_id": "MG.NORTH-1", "scope": {"type": "NODE", "node_id": "sb-1"}}
    refused = {"failure_code": "CIRCUIT_ALIAS_NOT_RESOLVABLE", "failure_reason": "AMBIGUOUS"}
    AliasUsage.objects.bulk_create(
        [
            row(0, "depot-erp", "CIR-101", 200, cycle_id="c1", **ok),
            row(5, "depot-erp", "CIR-101", 200, cycle_id="c2", **ok),
            row(10, "depot-erp", "CIR-103", 409, **refused),
            row(20, "fleet-app", "CIR-101", 200, cycle_id="c3", **ok),
            row(30, "fleet-app", "CIR-103", 409, **refused),
            row(40, "fleet-app", "CIR-103", 409, **refused),
        ]
    )


def test_the_report_lists_rows_newest_first_and_a_summary_per_client_and_circuit(
    operator_api, usage_rows
):
    response = operator_api.get("/api/legacy/alias-usage/")
    assert response.status_code == 200
    assert_body(response, "alias_usage_report")


def test_the_report_filters_by_circuit_client_and_since(support_api, usage_rows):
    def report(**params):
        return support_api.get("/api/legacy/alias-usage/", params).json()

    by_circuit = report(circuit_id="CIR-103")
    assert {u["circuit_id"] for u in by_circuit["usage"]} == {"CIR-103"}
    assert [(s["client"], s["calls"], s["failures"]) for s in by_circuit["summary"]] == [
        ("depot-erp", 1, 1),
        ("fleet-app", 2, 2),
    ]
    by_client = report(client="fleet-app")
    assert [(s["circuit_id"], s["calls"]) for s in by_client["summary"]] == [
        ("CIR-101", 1),
        ("CIR-103", 2),
    ]
    since = report(since="2026-03-02T13:20:00+01:00")
    assert [u["at"] for u in since["usage"]] == [
        "2026-03-02T12:40:00+00:00",
        "2026-03-02T12:30:00+00:00",
        "2026-03-02T12:20:00+00:00",
    ]
    assert since["filters"]["since"] == "2026-03-02T13:20:00+01:00"
    # An unencoded "+" in the offset arrives as a space.
    assert report(since="2026-03-02T13:20:00 01:00")["usage"] == since["usage"]
    assert len(report(limit="2")["usage"]) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [({"since": "yesterday"}, "since"), ({"since": "2026-03-02T12:00:00"}, "since"),
     ({"limit": "0"}, "limit"), ({"status": "409"}, "status")],
)  # fmt: skip
def test_a_bad_filter_is_422_field_invalid_naming_it(operator_api, usage_rows, params, field):
    response = operator_api.get("/api/legacy/alias-usage/", params)
    assert response.status_code == 422
    assert response.json()["code"] == "FIELD_INVALID"
    assert response.json()["errors"][0]["field"] == field


def test_the_report_reads_in_a_constant_number_of_queries(
    operator_api, usage_rows, django_assert_max_num_queries
):
    with django_assert_max_num_queries(6):
        operator_api.get("/api/legacy/alias-usage/")


def test_the_report_is_for_operators_and_support_only(integration_api, anon_api, usage_rows):
    assert integration_api.get("/api/legacy/alias-usage/").status_code == 403
    assert anon_api.get("/api/legacy/alias-usage/").status_code == 401
