"""POST /api/circuit/{circuit_id}/rebalance_load: one canonical cycle, the frozen answer."""

from __future__ import annotations

import pytest

from microgrid.topology.access import SYSTEM
from tests.legacy_circuit.conftest import assert_body

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("circuit_id", "fixture", "scope"),
    [
        ("CIR-101", "rebalance_node", {"type": "NODE", "node_id": "sb-1"}),
        ("CIR-100", "rebalance_microgrid", {"type": "MICROGRID"}),
        ("CIR-102", "rebalance_asset", {"type": "NODE", "node_id": "grp-a"}),
        ("CIR.B-2", "rebalance_dotted_id", {"type": "NODE", "node_id": "grp-b"}),
    ],
)
def test_a_resolvable_circuit_runs_one_cycle_and_answers_the_frozen_shape(
    integration_api, circuits, fixed_ids, circuit_id, fixture, scope
):
    from balancing.models import Cycle

    response = integration_api.post(f"/api/circuit/{circuit_id}/rebalance_load")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert_body(response, fixture)
    cycle = Cycle.objects.get()
    assert cycle.cycle_id == response.json()["cycle_id"]
    assert cycle.trigger_type == "LEGACY_ALIAS"
    assert cycle.document["trigger"] == {"type": "LEGACY_ALIAS", "circuit_id": circuit_id}
    assert cycle.scope == scope


def test_a_microgrid_scope_answers_node_id_null_rather_than_leaving_it_out(
    integration_api, circuits
):
    body = integration_api.post("/api/circuit/CIR-100/rebalance_load").json()
    assert list(body) == ["circuit_id", "microgrid_id", "scope", "cycle_id", "status"]
    assert body["scope"] == {"type": "MICROGRID", "node_id": None}


@pytest.mark.parametrize(
    ("circuit_id", "reason"),
    [
        ("NO-SUCH-CIRCUIT", "UNKNOWN_CIRCUIT"),
        ("CIR-104", "NO_ALIAS"),
        ("CIR-106", "NO_ALIAS"),
        ("CIR-103", "AMBIGUOUS"),
        ("CIR-105", "TARGET_MISSING"),
    ],
)
def test_an_unresolvable_circuit_is_409_with_its_reason_and_runs_no_cycle(
    integration_api, circuits, row_counts, circuit_id, reason
):
    before = row_counts()

    response = integration_api.post(f"/api/circuit/{circuit_id}/rebalance_load")

    assert response.status_code == 409
    assert response.json()["code"] == "CIRCUIT_ALIAS_NOT_RESOLVABLE"
    assert response.json()["details"] == {"circuit_id": circuit_id, "reason": reason}
    after = row_counts()
    assert after.pop("usage") == before.pop("usage") + 1
    assert after == before


@pytest.mark.parametrize(
    ("circuit_id", "fixture"),
    [
        ("NO-SUCH-CIRCUIT", "not_resolvable_unknown_circuit"),
        ("CIR-104", "not_resolvable_no_alias"),
        ("CIR-103", "not_resolvable_ambiguous"),
        ("CIR-105", "not_resolvable_target_missing"),
    ],
)
def test_each_unresolvable_answer_is_the_frozen_error_body(
    integration_api, circuits, circuit_id, fixture
):
    assert_body(integration_api.post(f"/api/circuit/{circuit_id}/rebalance_load"), fixture)


def test_a_microgrid_alias_without_a_topology_is_target_missing(integration_api, empty_microgrid):
    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_save, legacy_circuit_save

    circuit, _ = legacy_circuit_save(circuit_id="CIR-9", name="New site", configured_capacity_kw=10)
    circuit_alias_save(
        alias=CircuitAlias(circuit=circuit, microgrid=empty_microgrid, scope_type="MICROGRID")
    )

    response = integration_api.post("/api/circuit/CIR-9/rebalance_load")

    assert response.status_code == 409
    assert response.json()["details"]["reason"] == "TARGET_MISSING"


def test_an_asset_alias_naming_something_other_than_a_charger_is_target_missing(
    integration_api, microgrid
):
    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_save, legacy_circuit_save

    circuit, _ = legacy_circuit_save(circuit_id="CIR-PV", name="PV", configured_capacity_kw=60)
    circuit_alias_save(
        alias=CircuitAlias(
            circuit=circuit, microgrid=microgrid, scope_type="ASSET", asset_id="PV-1"
        )
    )

    response = integration_api.post("/api/circuit/CIR-PV/rebalance_load")

    assert response.json()["details"] == {"circuit_id": "CIR-PV", "reason": "TARGET_MISSING"}


def test_deactivating_the_second_alias_makes_an_ambiguous_circuit_resolve(
    integration_api, circuits
):
    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_set_active

    grp_a = CircuitAlias.objects.get(circuit__circuit_id="CIR-103", node_id="grp-a")
    circuit_alias_set_active(alias=grp_a, active=False)

    body = integration_api.post("/api/circuit/CIR-103/rebalance_load").json()

    assert body["scope"] == {"type": "NODE", "node_id": "sb-1"}


def test_the_legacy_cycle_is_on_the_canonical_cycle_endpoints_with_its_circuit(
    integration_api, operator_api, circuits
):
    cycle_id = integration_api.post("/api/circuit/CIR-101/rebalance_load").json()["cycle_id"]

    listed = operator_api.get("/api/microgrids/MG.NORTH-1/cycles/?trigger=LEGACY_ALIAS").json()
    assert [c["cycle_id"] for c in listed["cycles"]] == [cycle_id]
    assert listed["cycles"][0]["scope"] == {"type": "NODE", "node_id": "sb-1"}
    detail = operator_api.get(f"/api/microgrids/MG.NORTH-1/cycles/{cycle_id}/").json()
    assert detail["trigger"] == {"type": "LEGACY_ALIAS", "circuit_id": "CIR-101"}
    assert detail["scope"] == {"type": "NODE", "node_id": "sb-1"}


def test_the_legacy_cycle_is_on_the_canonical_cycle_pages(
    integration_api, operator_client, circuits
):
    cycle_id = integration_api.post("/api/circuit/CIR-102/rebalance_load").json()["cycle_id"]

    listing = operator_client.get("/manage/microgrids/MG.NORTH-1/cycles/").content.decode()
    assert cycle_id in listing and "LEGACY_ALIAS" in listing
    page = operator_client.get(f"/manage/microgrids/MG.NORTH-1/cycles/{cycle_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "LEGACY_ALIAS" in html and "CIR-102" in html


def test_a_request_body_is_not_read(integration_api, circuits):
    response = integration_api.post(
        "/api/circuit/CIR-101/rebalance_load", data="not json", content_type="text/plain"
    )
    assert response.status_code == 200


def test_the_path_has_no_trailing_slash(integration_api, circuits):
    from balancing.models import Cycle

    response = integration_api.post("/api/circuit/CIR-101/rebalance_load/")
    assert response.status_code == 404
    assert not Cycle.objects.exists()


def test_the_simulator_can_run_a_legacy_rebalance_on_its_own_clock(circuits):
    from datetime import UTC, datetime

    from balancing.models import Cycle
    from legacy_circuit.models import AliasUsage
    from legacy_circuit.services import UsageContext, circuit_rebalance

    at = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
    usage = UsageContext(
        circuit_id="CIR-101",
        endpoint="/api/circuit/{circuit_id}/rebalance_load",
        method="POST",
        client="simulator",
    )

    body = circuit_rebalance(
        circuit_id="CIR-101", usage=usage, user=SYSTEM, now=lambda: at, valid_for_s=60
    )

    cycle = Cycle.objects.get(cycle_id=body["cycle_id"])
    assert cycle.started_at == at
    assert AliasUsage.objects.get().at == at
