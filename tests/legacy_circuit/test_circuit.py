"""GET /api/circuit/{circuit_id}, and who may call the legacy endpoints."""

from __future__ import annotations

import pytest

from tests.legacy_circuit.conftest import assert_body

pytestmark = pytest.mark.django_db


def test_a_circuit_reads_in_the_frozen_shape(integration_api, circuits):
    response = integration_api.get("/api/circuit/CIR-101")
    assert response.status_code == 200
    assert_body(response, "circuit")


def test_an_unknown_circuit_is_404_circuit_not_found(integration_api, circuits):
    response = integration_api.get("/api/circuit/CIR-999")
    assert response.status_code == 404
    assert_body(response, "circuit_not_found")


def test_available_capacity_is_the_stored_value_driven_by_operating_envelopes(
    integration_api, circuits
):
    from legacy_circuit.models import LegacyCircuit

    LegacyCircuit.objects.filter(circuit_id="CIR-101").update(available_capacity_kw=120.5)

    body = integration_api.get("/api/circuit/CIR-101").json()

    assert (body["available_capacity_kw"], body["configured_capacity_kw"]) == (120.5, 350.0)


def test_a_circuit_reads_without_needing_a_mapping(integration_api, circuits):
    for circuit_id in ("CIR-103", "CIR-104", "CIR-105"):
        assert integration_api.get(f"/api/circuit/{circuit_id}").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/circuit/CIR-101"),
        ("get", "/api/circuit/CIR-101/tou_limits"),
        ("post", "/api/circuit/CIR-101/tou_limits"),
        ("post", "/api/circuit/CIR-101/rebalance_load"),
    ],
)
def test_support_may_call_the_legacy_endpoints_too(support_api, circuits, method, path):
    body = {"tou_limits": []} if path.endswith("tou_limits") else None
    response = getattr(support_api, method)(path, body, format="json")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/circuit/CIR-101"),
        ("get", "/api/circuit/CIR-101/tou_limits"),
        ("post", "/api/circuit/CIR-101/tou_limits"),
        ("post", "/api/circuit/CIR-101/rebalance_load"),
    ],
)
def test_operators_and_anonymous_clients_are_refused(
    operator_api, anon_api, circuits, row_counts, method, path
):
    before = row_counts()
    assert getattr(operator_api, method)(path, {}, format="json").status_code == 403
    assert getattr(anon_api, method)(path, {}, format="json").status_code == 401
    after = row_counts()
    assert after.pop("usage") == before.pop("usage") + 2
    assert after == before


def test_integration_clients_may_not_use_canonical_endpoints(integration_api, circuits):
    assert integration_api.get("/api/microgrids/MG.NORTH-1/limits/").status_code == 403
    assert integration_api.post("/api/microgrids/MG.NORTH-1/rebalance/").status_code == 403
    assert integration_api.get("/api/legacy/alias-usage/").status_code == 403


def test_an_unsupported_method_is_405_in_the_error_body(integration_api, circuits):
    response = integration_api.delete("/api/circuit/CIR-101/tou_limits")
    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"
    assert integration_api.post("/api/circuit/CIR-101").status_code == 405
    assert integration_api.get("/api/circuit/CIR-101/rebalance_load").status_code == 405
