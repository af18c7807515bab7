"""The interim legacy path: an aliased legacy value follows the enforced envelope of its scope,
and the canonical envelope view shows the same value beside the envelope."""

from __future__ import annotations

from datetime import timedelta

import pytest

from legacy_circuit.interim import legacy_capacity_reconcile
from legacy_circuit.models import CircuitAlias, LegacyCircuit
from microgrid.envelopes.models import OperatingEnvelope
from microgrid.envelopes.services import envelope_transitions_record, envelope_withdraw

from .conftest import T0, block, forecast_body

H = timedelta(hours=1)
M = timedelta(minutes=1)
DETAIL = "/api/microgrids/MG.NORTH-1/operating-envelopes/{}/?at={}"


def value(circuit_id: str) -> float:
    return LegacyCircuit.objects.get(circuit_id=circuit_id).available_capacity_kw


def view(api, envelope_id, at):
    return api.get(DETAIL.format(envelope_id, at.isoformat().replace("+", "%2B"))).json()


@pytest.mark.django_db
def test_the_legacy_value_matches_the_canonical_view_through_activation_and_expiry(
    bound, receive, legacy_record, operator_api
):
    legacy_record("CIR-100", 700)
    receive(forecast_body(blocks=[block(T0 + H, T0 + 2 * H, 300)]), now=T0)
    assert value("CIR-100") == 700.0  # pending: the configured value still holds
    pending = view(operator_api, "OE-1", T0)
    assert pending["status"] == "PENDING"
    assert pending["legacy_circuit"] == {"circuit_id": "CIR-100", "available_capacity_kw": 700.0}

    envelope_transitions_record(now=T0 + H)
    active = view(operator_api, "OE-1", T0 + H)
    assert active["status"] == "ACTIVE"
    assert value("CIR-100") == active["capacity_kw"] == 300.0
    assert active["legacy_circuit"] == {"circuit_id": "CIR-100", "available_capacity_kw": 300.0}

    envelope_transitions_record(now=T0 + 2 * H)
    expired = view(operator_api, "OE-1", T0 + 2 * H)
    assert expired["status"] == "EXPIRED"
    assert value("CIR-100") == 700.0
    assert expired["legacy_circuit"]["available_capacity_kw"] == 700.0


@pytest.mark.django_db
def test_an_envelope_active_on_receipt_sets_the_value_at_once(bound, receive, legacy_record):
    legacy_record("CIR-101", 350, "NODE", "sb-1")
    receive(forecast_body(group_id="GRP-A", blocks=[block(T0 - H, T0 + H, 200)]), now=T0)
    assert value("CIR-101") == 200.0


@pytest.mark.django_db
def test_a_value_follows_only_an_envelope_of_its_very_scope(bound, receive, legacy_record):
    legacy_record("CIR-100", 700)
    legacy_record("CIR-101", 350, "NODE", "sb-1")
    legacy_record("CIR-102", 150, "ASSET", asset_id="CH-01")
    receive(forecast_body(group_id="GRP-A", blocks=[block(T0 - H, T0 + H, 200)]), now=T0)
    receive(forecast_body(group_id="GRP-G", blocks=[block(T0 - H, T0 + H, 50)]), now=T0)
    assert (value("CIR-100"), value("CIR-101"), value("CIR-102")) == (700.0, 200.0, 150.0)


@pytest.mark.django_db
def test_the_smallest_enforced_envelope_of_the_scope_is_followed(
    bound, peer, receive, legacy_record
):
    from microgrid.envelopes.services import oscp_group_binding_save

    legacy_record("CIR-100", 700)
    oscp_group_binding_save(
        peer=peer, group_id="GRP-N2", microgrid=bound, scope={"type": "MICROGRID"}
    )
    receive(forecast_body(blocks=[block(T0 - H, T0 + H, 400)]), now=T0)
    receive(forecast_body(group_id="GRP-N2", blocks=[block(T0 - H, T0 + H, 350)]), now=T0)
    receive(forecast_body(type="OPTIMUM", blocks=[block(T0 - H, T0 + H, 10)]), now=T0)
    receive(forecast_body(type="GENERATION", blocks=[block(T0 - H, T0 + H, 5)]), now=T0)
    assert value("CIR-100") == 350.0


@pytest.mark.django_db
def test_supersede_and_withdraw_move_the_value_and_the_configured_value_returns(
    bound, receive, legacy_record
):
    legacy_record("CIR-100", 700)
    receive(forecast_body(blocks=[block(T0 - H, T0 + H, 300)]), now=T0)
    receive(forecast_body(blocks=[block(T0 - H, T0 + H, 250)]), now=T0 + M)
    assert value("CIR-100") == 250.0
    envelope_withdraw(envelope=OperatingEnvelope.objects.get(envelope_id="OE-2"), now=T0 + 2 * M)
    assert value("CIR-100") == 700.0


@pytest.mark.django_db
def test_a_value_with_two_aliases_follows_no_envelope(bound, receive, legacy_record):
    record = legacy_record("CIR-103", 300, "NODE", "sb-1")
    CircuitAlias.objects.create(circuit=record, microgrid=bound, scope_type="NODE", node_id="grp-a")
    receive(forecast_body(group_id="GRP-A", blocks=[block(T0 - H, T0 + H, 100)]), now=T0)
    assert value("CIR-103") == 300.0


@pytest.mark.django_db
def test_the_fallback_switch_moves_the_value_too(bound, receive, legacy_record):
    legacy_record("CIR-100", 700)
    receive(forecast_body(blocks=[block(T0 - H, T0 + H, 400)]), now=T0)
    receive(forecast_body(type="FALLBACK_CONSUMPTION", blocks=[block(T0 - H, T0 + H, 150)]), now=T0)
    receive({"offline_mode_at": (T0 + M).isoformat()}, message_type="HEARTBEAT", now=T0)
    assert value("CIR-100") == 400.0
    envelope_transitions_record(now=T0 + M)
    assert value("CIR-100") == 150.0
    receive(
        {"offline_mode_at": (T0 + 10 * M).isoformat()}, message_type="HEARTBEAT", now=T0 + 2 * M
    )
    assert value("CIR-100") == 400.0


@pytest.mark.django_db
def test_reconciling_is_idempotent_and_writes_history_only_on_a_change(
    bound, receive, legacy_record
):
    record = legacy_record("CIR-100", 700)
    receive(forecast_body(blocks=[block(T0 - H, T0 + H, 300)]), now=T0)
    rows = record.history.count()
    assert legacy_capacity_reconcile(microgrid=bound, now=T0) == []
    assert legacy_capacity_reconcile(microgrid=bound, now=T0 + M) == []
    assert record.history.count() == rows
    latest = record.history.order_by("-history_id").first()
    assert latest.available_capacity_kw == 300.0
    assert latest.history_change_reason == "follows operating envelope OE-1"
    assert legacy_capacity_reconcile(microgrid=bound, now=T0 + H) == ["CIR-100"]
    assert record.history.count() == rows + 1
