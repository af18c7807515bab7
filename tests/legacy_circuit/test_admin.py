"""Support staff add, fix and deactivate aliases in admin, with history; ambiguity is flagged."""

from __future__ import annotations

import pytest

from legacy_circuit.models import AliasUsage, CircuitAlias, LegacyCircuit

pytestmark = pytest.mark.django_db

CIRCUITS = "/admin/legacy_circuit/legacycircuit/"
ALIASES = "/admin/legacy_circuit/circuitalias/"


def inline(prefix="aliases", rows=(), initial=0):
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"{prefix}-{i}-{key}"] = value
    return data


def test_the_list_flags_circuits_with_more_than_one_active_alias(support_client, circuits):
    response = support_client.get(CIRCUITS, {"aliases": "many"})
    assert response.status_code == 200
    assert [c.circuit_id for c in response.context["cl"].result_list] == ["CIR-103"]
    none = support_client.get(CIRCUITS, {"aliases": "none"}).context["cl"].result_list
    assert sorted(c.circuit_id for c in none) == ["CIR-104", "CIR-106"]
    html = support_client.get(CIRCUITS).content.decode()
    assert "More than one active alias" in html


def test_support_adds_a_circuit_with_an_alias_and_available_starts_at_configured(
    support_client, microgrid
):
    data = {
        "circuit_id": "CIR-200",
        "name": "New board",
        "depot": str(microgrid.depot.pk),
        "configured_capacity_kw": "320",
        **inline(
            rows=[
                {
                    "microgrid": str(microgrid.pk),
                    "scope_type": "NODE",
                    "node_id": "grp-b",
                    "asset_id": "",
                    "active": "on",
                }
            ]
        ),
    }
    response = support_client.post(CIRCUITS + "add/", data)

    assert response.status_code == 302, response.content.decode()[:3000]
    circuit = LegacyCircuit.objects.get(circuit_id="CIR-200")
    assert (circuit.configured_capacity_kw, circuit.available_capacity_kw) == (320.0, 320.0)
    alias = circuit.aliases.get()
    assert (alias.scope_type, alias.node_id, alias.active) == ("NODE", "grp-b", True)
    assert alias.history.get().history_user.username == "support-user"
    assert circuit.history.get().history_user.username == "support-user"


def test_an_alias_whose_fields_do_not_fit_its_type_is_refused_on_the_field(
    support_client, circuits, microgrid
):
    before = CircuitAlias.objects.count()
    response = support_client.post(
        ALIASES + "add/",
        {
            "circuit": str(circuits["CIR-104"].pk),
            "microgrid": str(microgrid.pk),
            "scope_type": "NODE",
            "node_id": "",
            "asset_id": "CH-01",
            "active": "on",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "FIELD_INVALID" in errors["node_id"][0]
    assert "FIELD_INVALID" in errors["asset_id"][0]
    assert CircuitAlias.objects.count() == before


def test_fixing_an_alias_target_makes_the_circuit_resolve(
    support_client, integration_api, circuits
):
    alias = CircuitAlias.objects.get(circuit__circuit_id="CIR-105")
    response = support_client.post(
        f"{ALIASES}{alias.pk}/change/",
        {
            "circuit": str(alias.circuit_id),
            "microgrid": str(alias.microgrid_id),
            "scope_type": "NODE",
            "node_id": "grp-b",
            "asset_id": "",
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    body = integration_api.post("/api/circuit/CIR-105/rebalance_load").json()
    assert body["scope"] == {"type": "NODE", "node_id": "grp-b"}
    assert [h.node_id for h in alias.history.order_by("history_id")] == ["feeder-gone", "grp-b"]


def test_the_deactivate_action_keeps_the_alias_in_history_and_resolves_the_ambiguity(
    support_client, integration_api, circuits
):
    second = CircuitAlias.objects.get(circuit__circuit_id="CIR-103", node_id="grp-a")
    response = support_client.post(
        ALIASES, {"action": "deactivate", "_selected_action": [str(second.pk)]}
    )
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.active is False
    assert second.history.first().history_user.username == "support-user"
    assert integration_api.post("/api/circuit/CIR-103/rebalance_load").status_code == 200


def test_aliases_are_deactivated_not_deleted(support_client, circuits):
    alias = CircuitAlias.objects.filter(active=True).first()
    assert support_client.post(f"{ALIASES}{alias.pk}/delete/", {"post": "yes"}).status_code == 403
    assert CircuitAlias.objects.filter(pk=alias.pk).exists()


def test_the_change_page_says_how_the_circuit_resolves_now(support_client, circuits):
    html = support_client.get(f"{CIRCUITS}{circuits['CIR-103'].pk}/change/").content.decode()
    assert "not resolvable: AMBIGUOUS" in html
    html = support_client.get(f"{CIRCUITS}{circuits['CIR-101'].pk}/change/").content.decode()
    assert "resolves to MG.NORTH-1" in html


def test_saving_an_ambiguous_circuit_warns(support_client, circuits):
    circuit = circuits["CIR-103"]
    aliases = list(circuit.aliases.order_by("pk"))
    rows = [
        {
            "id": str(a.pk),
            "circuit": str(circuit.pk),
            "microgrid": str(a.microgrid_id),
            "scope_type": a.scope_type,
            "node_id": a.node_id,
            "asset_id": "",
            "active": "on",
        }
        for a in aliases
    ]
    response = support_client.post(
        f"{CIRCUITS}{circuit.pk}/change/",
        {
            "name": "Old split circuit",
            "depot": "",
            "configured_capacity_kw": "300",
            **inline(rows=rows, initial=len(rows)),
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "more than one active alias" in response.content.decode()


def test_the_usage_audit_is_read_only_in_admin(support_client, integration_api, circuits):
    integration_api.post("/api/circuit/CIR-101/rebalance_load")
    row = AliasUsage.objects.get()
    assert support_client.get("/admin/legacy_circuit/aliasusage/").status_code == 200
    assert support_client.get("/admin/legacy_circuit/aliasusage/add/").status_code == 403
    assert (
        support_client.post(
            f"/admin/legacy_circuit/aliasusage/{row.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )


def test_operators_have_no_admin(operator_client, circuits):
    response = operator_client.get(CIRCUITS)
    assert response.status_code == 302
