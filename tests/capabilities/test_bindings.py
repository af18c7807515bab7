"""Binding external sources: the overlap conflict rule, idempotent repeats, validation, roles."""

import pytest

from microgrid.capabilities.models import CapabilityBinding
from microgrid.topology.models import Microgrid
from tests.capabilities.conftest import MICROGRID, node

BINDINGS = "/api/microgrids/MG.NORTH-1/capabilities/bindings/"
LIST = "/api/microgrids/MG.NORTH-1/capabilities/"


def bind_body(source, scope, capability_type="LOAD_MANAGEMENT"):
    return {"capability_type": capability_type, "scope": scope, "source_device_id": source}


def post(client, body, url=BINDINGS):
    return client.post(url, body, format="json")


def active_bindings():
    return list(
        CapabilityBinding.objects.filter(active=True)
        .order_by("seq")
        .values_list("binding_id", "capability_type", "scope_type", "node_id", "source_device_id")
    )


@pytest.mark.django_db
def test_support_binds_a_source_to_a_node_subtree_and_gets_the_binding(support_api, microgrid):
    response = post(support_api, bind_body("plc-a", node("grp-a")))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["binding_id"] == "CB-1"
    assert body["capability_type"] == "LOAD_MANAGEMENT"
    assert body["scope"] == {"type": "NODE", "node_id": "grp-a"}
    assert body["source_device_id"] == "plc-a"
    assert body["active"] is True
    assert body["released_at"] is None
    assert body["latest_status"] is None
    assert body["created_at"]
    binding = CapabilityBinding.objects.get()
    assert binding.history.get().history_user.username == "support-user"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("existing", "incoming"),
    [
        (node("grp-a"), node("grp-a")),  # the same node
        (node("sb-1"), node("grp-a")),  # an ancestor is bound
        (node("grp-a"), node("sb-1")),  # a descendant is bound
        (MICROGRID, node("grp-b")),  # the whole microgrid is bound
        (node("grp-b"), MICROGRID),  # the whole microgrid asked for while a part is bound
        (MICROGRID, MICROGRID),
    ],
    ids=[
        "same-node",
        "ancestor",
        "descendant",
        "microgrid-then-node",
        "node-then-microgrid",
        "microgrid",
    ],
)
def test_a_second_source_with_an_overlapping_scope_is_refused_and_changes_nothing(
    support_api, microgrid, bind, row_counts, existing, incoming
):
    first = bind("plc-a", existing)
    before = row_counts()
    response = post(support_api, bind_body("plc-b", incoming))
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "CAPABILITY_SOURCE_CONFLICT"
    details = body["details"]
    assert details["microgrid_id"] == "MG.NORTH-1"
    assert details["capability_type"] == "LOAD_MANAGEMENT"
    assert details["existing_binding"] == {
        "binding_id": first.binding_id,
        "scope": existing,
        "source_device_id": "plc-a",
    }
    assert details["incoming"] == {"source_device_id": "plc-b", "scope": incoming}
    assert [r["action"] for r in details["remediation"]][0] == "RELEASE_THEN_BIND"
    assert row_counts() == before
    assert active_bindings() == [
        ("CB-1", "LOAD_MANAGEMENT", existing["type"], existing.get("node_id"), "plc-a")
    ]


@pytest.mark.django_db
def test_the_conflict_offers_release_then_bind_and_for_the_same_scope_a_transfer(
    support_api, microgrid, bind
):
    bind("plc-a", node("grp-a"))
    details = post(support_api, bind_body("plc-b", node("grp-a"))).json()["details"]
    release, transfer = details["remediation"]
    assert release["steps"] == [
        {
            "method": "POST",
            "path": "/api/microgrids/MG.NORTH-1/capabilities/bindings/CB-1/release/",
        },
        {"method": "POST", "path": BINDINGS, "body": bind_body("plc-b", node("grp-a"))},
    ]
    assert transfer == {
        "action": "TRANSFER",
        "description": transfer["description"],
        "method": "POST",
        "path": "/api/microgrids/MG.NORTH-1/capabilities/bindings/transfer/",
        "body": {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": node("grp-a"),
            "expected_source_device_id": "plc-a",
            "new_source_device_id": "plc-b",
        },
    }


@pytest.mark.django_db
def test_a_bind_over_several_scoped_sources_names_them_all_and_offers_no_transfer(
    support_api, microgrid, bind
):
    bind("plc-a", node("grp-a"))
    bind("plc-b", node("grp-b"))
    details = post(support_api, bind_body("ems", MICROGRID)).json()["details"]
    assert [b["binding_id"] for b in details["existing_bindings"]] == ["CB-1", "CB-2"]
    assert details["existing_binding"]["binding_id"] == "CB-1"
    assert [r["action"] for r in details["remediation"]] == ["RELEASE_THEN_BIND"]
    paths = [s["path"] for s in details["remediation"][0]["steps"]]
    assert paths[:2] == [
        "/api/microgrids/MG.NORTH-1/capabilities/bindings/CB-1/release/",
        "/api/microgrids/MG.NORTH-1/capabilities/bindings/CB-2/release/",
    ]


@pytest.mark.django_db
def test_the_same_source_asking_for_an_overlapping_scope_is_a_conflict_too(
    support_api, microgrid, bind
):
    bind("plc-a", node("grp-a"))
    response = post(support_api, bind_body("plc-a", node("sb-1")))
    assert response.status_code == 409
    assert response.json()["code"] == "CAPABILITY_SOURCE_CONFLICT"


@pytest.mark.django_db
def test_different_sources_for_disjoint_scopes_are_accepted_within_one_microgrid(
    support_api, microgrid
):
    assert post(support_api, bind_body("plc-a", node("grp-a"))).status_code == 201
    assert post(support_api, bind_body("plc-b", node("grp-b"))).status_code == 201
    assert [(b[3], b[4]) for b in active_bindings()] == [("grp-a", "plc-a"), ("grp-b", "plc-b")]
    # No new microgrid identity: both are scopes of MG.NORTH-1.
    assert list(Microgrid.objects.values_list("microgrid_id", flat=True)) == ["MG.NORTH-1"]
    assert {b.microgrid_id for b in CapabilityBinding.objects.all()} == {microgrid.pk}


@pytest.mark.django_db
def test_other_capability_types_do_not_compete_with_each_other(support_api, microgrid):
    assert post(support_api, bind_body("plc-a", MICROGRID)).status_code == 201
    response = post(support_api, bind_body("bms", MICROGRID, "ENERGY_STORAGE"))
    assert response.status_code == 201
    assert response.json()["binding_id"] == "CB-2"


@pytest.mark.django_db
def test_the_same_source_binding_again_gets_the_existing_binding_with_200(
    support_api, microgrid, row_counts
):
    first = post(support_api, bind_body("plc-a", node("grp-a")))
    before = row_counts()
    again = post(support_api, bind_body("plc-a", node("grp-a")))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert row_counts() == before


@pytest.mark.django_db
def test_binding_ids_are_numbered_per_microgrid_and_never_reused(support_api, microgrid, bind):
    from microgrid.capabilities.services import capability_binding_release

    bind("plc-a", node("grp-a"))
    capability_binding_release(microgrid=microgrid, binding_id="CB-1")
    second = post(support_api, bind_body("plc-a", node("grp-a"))).json()
    assert second["binding_id"] == "CB-2"


@pytest.mark.django_db
def test_a_node_that_is_not_in_the_microgrid_is_refused(support_api, microgrid, row_counts):
    response = post(support_api, bind_body("plc-a", node("grp-z")))
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "NODE_NOT_FOUND"
    assert body["errors"][0]["node_id"] == "grp-z"
    assert body["errors"][0]["field"] == "scope.node_id"
    assert row_counts() == (0, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["capability_type", "scope", "source_device_id"]),
        (bind_body("plc-a", MICROGRID, "HEATING"), ["capability_type"]),
        (bind_body("plc a", MICROGRID), ["source_device_id"]),
        (bind_body(7, {"type": "SITE"}), ["scope", "source_device_id"]),
        ({**bind_body("plc-a", MICROGRID), "active": False}, ["active"]),
    ],
)
def test_every_bad_field_is_named_and_nothing_is_stored(
    support_api, microgrid, row_counts, body, fields
):
    response = post(support_api, body)
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == sorted(fields)
    assert {e["code"] for e in response.json()["errors"]} == {"FIELD_INVALID"}
    assert row_counts() == (0, 0, 0)


@pytest.mark.django_db
def test_a_body_that_is_not_an_object_is_a_malformed_request(support_api, microgrid):
    response = support_api.post(BINDINGS, "[1]", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_REQUEST"
    response = support_api.post(BINDINGS, "{nope", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_only_support_binds_sources(operator_api, integration_api, anon_api, microgrid):
    body = bind_body("plc-a", MICROGRID)
    assert post(operator_api, body).status_code == 403
    assert post(integration_api, body).status_code == 403
    assert post(anon_api, body).status_code == 401
    assert CapabilityBinding.objects.count() == 0


@pytest.mark.django_db
def test_an_unknown_microgrid_is_404(support_api, microgrid):
    response = post(
        support_api, bind_body("plc-a", MICROGRID), "/api/microgrids/MG.NOPE/capabilities/bindings/"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "MICROGRID_NOT_FOUND"


ODD_BODIES = [
    "null",
    "[]",
    '"text"',
    "1e999",
    "{}",
    '{"scope": []}',
    '{"scope": {"type": "NODE", "node_id": null}}',
    '{"capability_type": {}, "scope": {"type": null}, "source_device_id": []}',
    '{"capability_type": "LOAD_MANAGEMENT", "scope": {"type": "NODE", "node_id": "x"}, '
    '"source_device_id": "p", "expected_source_device_id": "p", "new_source_device_id": "q", '
    '"event_ref": 1, "state": "AVAILABLE", "observed_at": "+275760-09-13T00:00:00+00:00"}',
    '{"capability_type": "LOAD_MANAGEMENT", "scope": {"type": "MICROGRID"}, '
    '"source_device_id": "p", "event_ref": "e", "state": "AVAILABLE", '
    '"observed_at": "2026-01-01T00:00:00+99:00", "detail": {"a": [1, {"b": null}]}}',
]


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ODD_BODIES)
@pytest.mark.parametrize(
    "path",
    ["bindings/", "bindings/transfer/", "bindings/CB-1/release/", "events/"],
)
def test_odd_bodies_on_every_capability_endpoint_get_an_error_body_never_a_500(
    support_api, microgrid, bind, row_counts, raw, path
):
    bind("plc-a", node("grp-a"))
    before = row_counts()
    response = support_api.post(LIST + path, raw, content_type="application/json")
    if response.status_code == 200 and path.endswith("release/"):
        return  # "{}" releases: the one valid body among them
    assert response.status_code in (400, 404, 409, 422), (response.status_code, response.content)
    assert response.json()["code"]
    assert row_counts() == before
