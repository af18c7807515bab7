"""Resolving a competing-source conflict: release then bind, or compare-and-swap transfer.

Both through the API (following the paths the conflict answer names) and as
admin actions; each refusal changes nothing.
"""

import pytest

from microgrid.capabilities.models import CapabilityBinding
from tests.capabilities.conftest import MICROGRID, node

BASE = "/api/microgrids/MG.NORTH-1/capabilities/"
BINDINGS = BASE + "bindings/"
TRANSFER = BINDINGS + "transfer/"
ADMIN = "/admin/capabilities/capabilitybinding/"


def release_url(binding_id):
    return f"{BINDINGS}{binding_id}/release/"


def transfer_body(expected, new, scope=None, capability_type="LOAD_MANAGEMENT"):
    return {
        "capability_type": capability_type,
        "scope": scope or node("grp-a"),
        "expected_source_device_id": expected,
        "new_source_device_id": new,
    }


def state():
    return list(
        CapabilityBinding.objects.order_by("seq").values_list(
            "binding_id", "source_device_id", "active", "ended_by"
        )
    )


@pytest.mark.django_db
def test_following_the_release_remediation_binds_the_incoming_source(support_api, microgrid, bind):
    bind("plc-a", node("grp-a"))
    conflict = support_api.post(
        BINDINGS,
        {"capability_type": "LOAD_MANAGEMENT", "scope": node("grp-a"), "source_device_id": "plc-b"},
        format="json",
    ).json()
    release, bind_again = conflict["details"]["remediation"][0]["steps"]
    released = support_api.post(release["path"], format="json")
    assert released.status_code == 200
    assert released.json()["active"] is False
    assert released.json()["released_at"]
    created = support_api.post(bind_again["path"], bind_again["body"], format="json")
    assert created.status_code == 201
    assert created.json()["source_device_id"] == "plc-b"
    assert state() == [("CB-1", "plc-a", False, "RELEASED"), ("CB-2", "plc-b", True, "")]


@pytest.mark.django_db
def test_following_the_transfer_remediation_hands_the_binding_over(support_api, microgrid, bind):
    bind("plc-a", node("grp-a"))
    conflict = support_api.post(
        BINDINGS,
        {"capability_type": "LOAD_MANAGEMENT", "scope": node("grp-a"), "source_device_id": "plc-b"},
        format="json",
    ).json()
    transfer = conflict["details"]["remediation"][1]
    response = support_api.post(transfer["path"], transfer["body"], format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["binding_id"], body["source_device_id"], body["active"]) == ("CB-2", "plc-b", True)
    assert body["scope"] == node("grp-a")
    assert state() == [("CB-1", "plc-a", False, "TRANSFERRED"), ("CB-2", "plc-b", True, "")]
    assert CapabilityBinding.objects.get(binding_id="CB-2").transferred_from.binding_id == "CB-1"


@pytest.mark.django_db
def test_a_transfer_whose_expected_source_no_longer_holds_is_refused(
    support_api, microgrid, bind, row_counts
):
    bind("plc-a", node("grp-a"))
    assert (
        support_api.post(TRANSFER, transfer_body("plc-a", "plc-b"), format="json").status_code
        == 200
    )
    before = row_counts()
    # A second support user, still believing plc-a holds it, tries to move it to plc-c.
    response = support_api.post(TRANSFER, transfer_body("plc-a", "plc-c"), format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "CAPABILITY_TRANSFER_CONFLICT"
    assert body["details"]["current_binding"] == {
        "binding_id": "CB-2",
        "scope": node("grp-a"),
        "source_device_id": "plc-b",
    }
    assert body["details"]["expected_source_device_id"] == "plc-a"
    assert row_counts() == before
    assert state()[-1] == ("CB-2", "plc-b", True, "")


@pytest.mark.django_db
def test_a_retried_transfer_gets_the_binding_it_made_and_changes_nothing(
    support_api, microgrid, bind, row_counts
):
    bind("plc-a", node("grp-a"))
    first = support_api.post(TRANSFER, transfer_body("plc-a", "plc-b"), format="json")
    before = row_counts()
    again = support_api.post(TRANSFER, transfer_body("plc-a", "plc-b"), format="json")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert row_counts() == before


@pytest.mark.django_db
def test_a_transfer_of_a_scope_nobody_holds_is_a_conflict(support_api, microgrid, bind):
    bind("plc-a", node("sb-1"))
    # sb-1 is bound, grp-a (below it) is not bound by a binding of its own.
    response = support_api.post(TRANSFER, transfer_body("plc-a", "plc-b"), format="json")
    assert response.status_code == 409
    assert response.json()["details"]["current_binding"] is None
    assert state() == [("CB-1", "plc-a", True, "")]


@pytest.mark.django_db
def test_a_transfer_with_bad_fields_names_them(support_api, microgrid, bind):
    bind("plc-a", MICROGRID)
    response = support_api.post(
        TRANSFER, {"capability_type": "LOAD_MANAGEMENT", "scope": MICROGRID}, format="json"
    )
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == [
        "expected_source_device_id",
        "new_source_device_id",
    ]
    response = support_api.post(
        TRANSFER, transfer_body("plc-a", "plc-b", scope=node("grp-z")), format="json"
    )
    assert response.status_code == 422
    assert response.json()["code"] == "NODE_NOT_FOUND"


@pytest.mark.django_db
def test_releasing_an_ended_binding_is_refused_and_an_unknown_one_is_404(
    support_api, microgrid, bind, row_counts
):
    bind("plc-a", MICROGRID)
    assert support_api.post(release_url("CB-1")).status_code == 200
    before = row_counts()
    again = support_api.post(release_url("CB-1"))
    assert again.status_code == 409
    assert again.json()["code"] == "BINDING_NOT_ACTIVE"
    assert again.json()["details"]["ended_by"] == "RELEASED"
    missing = support_api.post(release_url("CB-9"))
    assert missing.status_code == 404
    assert missing.json()["code"] == "BINDING_NOT_FOUND"
    assert row_counts() == before


@pytest.mark.django_db
def test_a_release_takes_no_fields(support_api, microgrid, bind):
    bind("plc-a", MICROGRID)
    response = support_api.post(release_url("CB-1"), {"force": True}, format="json")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "force"
    assert support_api.post(release_url("CB-1"), {}, format="json").status_code == 200


@pytest.mark.django_db
def test_only_support_releases_and_transfers(operator_api, integration_api, microgrid, bind):
    bind("plc-a", node("grp-a"))
    for client in (operator_api, integration_api):
        assert client.post(release_url("CB-1")).status_code == 403
        assert (
            client.post(TRANSFER, transfer_body("plc-a", "plc-b"), format="json").status_code == 403
        )
    assert state() == [("CB-1", "plc-a", True, "")]


# ---- admin ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_support_releases_bindings_with_the_admin_action(support_client, microgrid, bind):
    first = bind("plc-a", node("grp-a"))
    second = bind("plc-b", node("grp-b"))
    response = support_client.post(
        ADMIN,
        {"action": "release", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert [(b[0], b[2], b[3]) for b in state()] == [
        ("CB-1", False, "RELEASED"),
        ("CB-2", False, "RELEASED"),
    ]
    history = CapabilityBinding.objects.get(pk=first.pk).history.order_by("history_date")
    assert [h.active for h in history] == [True, False]
    assert history.last().history_user.username == "support-user"


@pytest.mark.django_db
def test_the_admin_transfer_action_asks_for_the_new_source_then_transfers(
    support_client, microgrid, bind
):
    binding = bind("plc-a", node("grp-a"))
    form = support_client.post(ADMIN, {"action": "transfer", "_selected_action": [binding.pk]})
    assert form.status_code == 200
    assert "New source device id" in form.content.decode()
    assert state() == [("CB-1", "plc-a", True, "")]
    done = support_client.post(
        ADMIN,
        {
            "action": "transfer",
            "_selected_action": [binding.pk],
            "apply": "1",
            "new_source_device_id": "plc-b",
        },
        follow=True,
    )
    assert done.status_code == 200
    assert "CB-2 now binds plc-b" in done.content.decode()
    assert state() == [("CB-1", "plc-a", False, "TRANSFERRED"), ("CB-2", "plc-b", True, "")]


@pytest.mark.django_db
def test_the_admin_transfer_of_an_ended_binding_is_refused_with_its_code(
    support_client, microgrid, bind
):
    from microgrid.capabilities.services import capability_binding_release

    binding = bind("plc-a", node("grp-a"))
    capability_binding_release(microgrid=microgrid, binding_id="CB-1")
    done = support_client.post(
        ADMIN,
        {
            "action": "transfer",
            "_selected_action": [binding.pk],
            "apply": "1",
            "new_source_device_id": "plc-b",
        },
        follow=True,
    )
    assert "CAPABILITY_TRANSFER_CONFLICT" in done.content.decode()
    assert state() == [("CB-1", "plc-a", False, "RELEASED")]


@pytest.mark.django_db
def test_admin_adds_a_binding_through_the_service_and_shows_a_conflict_on_the_form(
    support_client, microgrid, bind
):
    form = {
        "microgrid": microgrid.pk,
        "capability_type": "LOAD_MANAGEMENT",
        "scope_type": "NODE",
        "node_id": "grp-a",
        "source_device_id": "plc-a",
    }
    response = support_client.post(ADMIN + "add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert state() == [("CB-1", "plc-a", True, "")]
    refused = support_client.post(ADMIN + "add/", {**form, "source_device_id": "plc-b"})
    assert refused.status_code == 200
    assert "CAPABILITY_SOURCE_CONFLICT" in refused.content.decode()
    missing = support_client.post(ADMIN + "add/", {**form, "node_id": "grp-z"})
    assert "NODE_NOT_FOUND" in str(missing.context["adminform"].form.errors["node_id"])
    assert state() == [("CB-1", "plc-a", True, "")]


@pytest.mark.django_db
def test_support_sees_a_bindings_history_in_admin(support_client, microgrid, bind):
    binding = bind("plc-a", node("grp-a"))
    support_client.post(ADMIN, {"action": "release", "_selected_action": [binding.pk]})
    page = support_client.get(f"{ADMIN}{binding.pk}/history/")
    assert page.status_code == 200
    assert page.content.decode().count("support-user") >= 1
    assert support_client.get(f"{ADMIN}{binding.pk}/change/").status_code == 200
    assert support_client.get(f"{ADMIN}{binding.pk}/delete/").status_code == 403
