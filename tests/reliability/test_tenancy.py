"""Memberships (spec 6, access): each client reaches only its own depots.

The route-by-route matrix is in test_access_control.py (the membership dimension); here:
how memberships are given (create_api_token, admin), that a change counts from the next
request, the users without one, the audit of refusals, the legacy circuits, constant
queries and the demo's two depots.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from microgrid.common.models import AccessRefusal, ApiToken
from microgrid.topology.api.serializers import microgrid_input
from microgrid.topology.models import MicrogridMembership

PROFILES = Path(__file__).resolve().parents[2] / "simulator" / "profiles"
A = "MG.NORTH-1"
B = "MG.SOUTH-2"


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def create_api_token(*args: str) -> str:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


@pytest.fixture
def two_depots(microgrid, small_topology):
    from microgrid.topology.services import microgrid_create, topology_replace

    south = microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": B,
                "name": "South Depot microgrid",
                "depot": {"depot_id": "DEPOT-S", "name": "South Depot", "timezone": "UTC"},
            }
        )
    )
    topology_replace(microgrid=south, base_version=0, nodes=small_topology["nodes"], assets=[])
    return microgrid, south


def listed(client) -> list[str]:
    response = client.get("/api/microgrids/")
    assert response.status_code == 200
    return [m["microgrid_id"] for m in response.json()["microgrids"]]


# -- create_api_token ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_token_made_with_microgrid_reaches_exactly_those_microgrids(two_depots):
    key = create_api_token("fleet-north", "--role", "operator", "--microgrid", A)
    client = token_client(key)
    assert listed(client) == [A]
    assert client.get(f"/api/microgrids/{A}/topology/").status_code == 200
    refused = client.get(f"/api/microgrids/{B}/topology/")
    assert (refused.status_code, refused.json()["code"]) == (404, "MICROGRID_NOT_FOUND")

    # --microgrid is repeatable, and a second call adds to what the user has.
    key = create_api_token(
        "fleet-both", "--role", "integration", "--microgrid", A, "--microgrid", B
    )
    assert set(
        MicrogridMembership.objects.filter(user__username="fleet-both").values_list(
            "microgrid__microgrid_id", flat=True
        )
    ) == {A, B}
    create_api_token("fleet-north", "--role", "operator", "--microgrid", B)
    assert listed(client) == [A, B]  # the same key: the user's memberships count


@pytest.mark.django_db
def test_all_microgrids_is_fleet_wide_and_covers_a_microgrid_made_later(microgrid):
    from microgrid.topology.services import microgrid_create

    client = token_client(
        create_api_token("fleet-system", "--role", "operator", "--all-microgrids")
    )
    assert listed(client) == [A]
    microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": B,
                "name": "South",
                "depot": {"depot_id": "DEPOT-S", "name": "South Depot", "timezone": "UTC"},
            }
        )
    )
    assert listed(client) == [A, B]


@pytest.mark.django_db
def test_a_token_without_membership_reaches_no_microgrid_but_support_reaches_every_one(
    two_depots,
):
    err = io.StringIO()
    call_command(
        "create_api_token", "lonely", "--role", "integration", stdout=io.StringIO(), stderr=err
    )
    assert "reaches no microgrid" in err.getvalue()
    key = ApiToken.objects.get(user__username="lonely")  # issued all the same
    assert key is not None
    client = token_client(create_api_token("lonely-operator", "--role", "operator"))
    assert listed(client) == []
    assert client.get(f"/api/microgrids/{A}/").status_code == 404
    page = APIClient()
    page.force_login(ApiToken.objects.get(user__username="lonely-operator").user)
    listing = page.get("/manage/microgrids/").content.decode()
    assert "not a member of any microgrid" in listing and A not in listing
    support = token_client(create_api_token("helpdesk", "--role", "support"))
    assert listed(support) == [A, B]
    assert not MicrogridMembership.objects.filter(user__username="helpdesk").exists()


@pytest.mark.django_db
def test_an_unknown_microgrid_or_both_options_refuse_and_create_nothing(microgrid):
    from django.contrib.auth import get_user_model

    with pytest.raises(CommandError, match="MG.NOPE"):
        create_api_token("typo", "--role", "operator", "--microgrid", A, "--microgrid", "MG.NOPE")
    with pytest.raises(CommandError, match="not both"):
        create_api_token("greedy", "--role", "operator", "--microgrid", A, "--all-microgrids")
    assert not get_user_model().objects.filter(username__in=["typo", "greedy"]).exists()
    assert not MicrogridMembership.objects.exists()
    assert not ApiToken.objects.exists()


# -- admin: a change counts from the next request --------------------------------------------------


@pytest.mark.django_db
def test_a_membership_added_and_revoked_in_admin_counts_from_the_next_request(
    two_depots, make_user, client
):
    operator = make_user("operator", username="op-north", microgrids=[A])
    _, key = ApiToken.issue(user=operator)
    api = token_client(key)
    page = APIClient()
    page.force_login(operator)
    assert api.get(f"/api/microgrids/{B}/").status_code == 404
    assert page.get(f"/manage/microgrids/{B}/").status_code == 404

    client.force_login(make_user("support"))
    south = two_depots[1]
    added = client.post(
        "/admin/topology/microgridmembership/add/",
        {"user": operator.pk, "microgrid": south.pk, "all_microgrids": ""},
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    assert api.get(f"/api/microgrids/{B}/").status_code == 200
    assert page.get(f"/manage/microgrids/{B}/").status_code == 200
    membership = MicrogridMembership.objects.get(user=operator, microgrid=south)
    assert membership.history.first().history_user.username == "support-user"

    deleted = client.post(
        f"/admin/topology/microgridmembership/{membership.pk}/delete/", {"post": "yes"}
    )
    assert deleted.status_code == 302
    assert api.get(f"/api/microgrids/{B}/").status_code == 404
    assert page.get(f"/manage/microgrids/{B}/").status_code == 404
    assert B not in page.get("/manage/microgrids/").content.decode()
    assert MicrogridMembership.history.filter(history_type="-").count() == 1  # kept in history


@pytest.mark.django_db
def test_admin_refuses_a_membership_that_is_both_one_microgrid_and_all(
    two_depots, make_user, client
):
    operator = make_user("operator", username="op-north", microgrids=[A])
    client.force_login(make_user("support"))
    for data in (
        {"user": operator.pk, "microgrid": two_depots[1].pk, "all_microgrids": "on"},
        {"user": operator.pk, "microgrid": "", "all_microgrids": ""},
        {"user": operator.pk, "microgrid": two_depots[0].pk, "all_microgrids": ""},  # has it
    ):
        response = client.post("/admin/topology/microgridmembership/add/", data)
        assert response.status_code == 200  # the form again, with its error
        assert "errornote" in response.content.decode()
    assert MicrogridMembership.objects.filter(user=operator).count() == 1


# -- the audit of refusals -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_refusal_is_audited_with_who_which_microgrid_path_and_when_and_shown_to_support(
    two_depots, make_user, client
):
    operator = make_user("operator", username="op-north", microgrids=[A])
    _, key = ApiToken.issue(user=operator)
    api = token_client(key)
    put = api.put(f"/api/microgrids/{B}/topology/", {"base_version": 1}, format="json")
    assert (put.status_code, put.json()["code"]) == (404, "MICROGRID_NOT_FOUND")
    assert api.get("/api/microgrids/MG.NO-SUCH/").status_code == 404  # unknown: no refusal
    assert api.get(f"/api/microgrids/{A}/").status_code == 200

    row = AccessRefusal.objects.get()
    assert (row.user, row.username, row.microgrid_id, row.method, row.path, row.code) == (
        operator,
        "op-north",
        B,
        "PUT",
        f"/api/microgrids/{B}/topology/",
        "MICROGRID_NOT_FOUND",
    )
    assert row.at is not None

    client.force_login(make_user("support"))
    listing = client.get("/admin/common/accessrefusal/")
    assert listing.status_code == 200
    assert f"/api/microgrids/{B}/topology/" in listing.content.decode()
    assert client.get(f"/admin/common/accessrefusal/{row.pk}/change/").status_code == 200
    assert client.get("/admin/common/accessrefusal/add/").status_code == 403


@pytest.mark.django_db
def test_a_refused_manage_page_is_the_not_found_page_and_is_audited(two_depots, make_user, client):
    client.force_login(make_user("operator", username="op-north", microgrids=[A]))
    response = client.post(f"/manage/microgrids/{B}/cycles/rebalance/")
    assert response.status_code == 404
    assert "Microgrid not found" in response.content.decode()
    assert AccessRefusal.objects.get().path == f"/manage/microgrids/{B}/cycles/rebalance/"
    from balancing.models import Cycle

    assert not Cycle.objects.exists()


# -- legacy circuits --------------------------------------------------------------------------------


@pytest.fixture
def circuits(two_depots):
    from legacy_circuit.models import CircuitAlias, LegacyCircuit

    north, south = two_depots
    made = {}
    for circuit_id, microgrids in (
        ("CIR-N", [north]),
        ("CIR-S", [south]),
        ("CIR-NS", [north, south]),  # ambiguous across both depots
        ("CIR-NONE", []),  # no alias yet
    ):
        circuit = LegacyCircuit.objects.create(
            circuit_id=circuit_id,
            name=circuit_id,
            configured_capacity_kw=300,
            available_capacity_kw=300,
        )
        for mg in microgrids:
            CircuitAlias.objects.create(
                circuit=circuit, microgrid=mg, scope_type="NODE", node_id="sb-1"
            )
        made[circuit_id] = circuit
    return made


@pytest.mark.django_db
def test_a_legacy_circuit_resolves_only_into_the_callers_microgrids(circuits, make_user):
    from balancing.models import Cycle
    from legacy_circuit.models import AliasUsage

    integration = make_user("integration", username="erp-north", microgrids=[A])
    _, key = ApiToken.issue(user=integration)
    api = token_client(key)

    ok = api.post("/api/circuit/CIR-N/rebalance_load")
    assert ok.status_code == 200 and ok.json()["microgrid_id"] == A
    unknown = api.post("/api/circuit/CIR-UNKNOWN/rebalance_load").json()
    for hidden in ("CIR-S", "CIR-NS", "CIR-NONE"):
        refused = api.post(f"/api/circuit/{hidden}/rebalance_load")
        assert refused.status_code == 409
        assert refused.json() == {
            **unknown,
            "message": unknown["message"].replace("CIR-UNKNOWN", hidden),
            "details": {"circuit_id": hidden, "reason": "UNKNOWN_CIRCUIT"},
        }
        get = api.get(f"/api/circuit/{hidden}")
        assert (get.status_code, get.json()["code"]) == (404, "CIRCUIT_NOT_FOUND")
        tou = api.post(f"/api/circuit/{hidden}/tou_limits", {"tou_limits": []}, format="json")
        assert tou.json()["details"]["reason"] == "UNKNOWN_CIRCUIT"
    assert Cycle.objects.count() == 1  # CIR-N's only

    # Audited with the client: the legacy call audit and the access refusal.
    usage = AliasUsage.objects.filter(circuit_id="CIR-S", method="POST").first()
    assert (usage.client, usage.microgrid_id, usage.failure_reason) == (
        "erp-north",
        "",
        "UNKNOWN_CIRCUIT",
    )
    refusals = AccessRefusal.objects.filter(circuit_id="CIR-S")
    assert {(r.username, r.microgrid_id, r.method) for r in refusals} == {
        ("erp-north", B, "POST"),
        ("erp-north", B, "GET"),
    }
    assert not AccessRefusal.objects.filter(circuit_id="CIR-UNKNOWN").exists()

    # A fleet-wide client and support see every circuit as before.
    for role in ("integration", "support"):
        fleet = token_client(ApiToken.issue(user=make_user(role))[1])
        reason = fleet.post("/api/circuit/CIR-NS/rebalance_load").json()["details"]["reason"]
        assert reason == "AMBIGUOUS"
        assert fleet.get("/api/circuit/CIR-NONE").status_code == 200


@pytest.mark.django_db
def test_the_circuit_page_and_the_usage_report_show_only_the_callers_microgrids(
    circuits, make_user, client
):
    integration = token_client(ApiToken.issue(user=make_user("integration"))[1])
    for circuit_id in ("CIR-N", "CIR-S"):
        assert integration.post(f"/api/circuit/{circuit_id}/rebalance_load").status_code == 200
    client.force_login(make_user("operator", username="op-north", microgrids=[A]))
    page = client.get("/manage/legacy/circuits/").content.decode()
    assert "CIR-N<" in page or "CIR-N " in page or ">CIR-N" in page
    for hidden in ("CIR-S", "CIR-NS", "CIR-NONE", B):
        assert hidden not in page
    report = client.get("/api/legacy/alias-usage/").json()
    assert {u["circuit_id"] for u in report["usage"]} == {"CIR-N"}
    assert {s["circuit_id"] for s in report["summary"]} == {"CIR-N"}
    usage_page = client.get("/manage/legacy/alias-usage/").content.decode()
    assert "CIR-N" in usage_page and "CIR-S" not in usage_page


# -- constant queries ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_membership_costs_no_query_per_microgrid(
    microgrid, make_user, django_assert_max_num_queries
):
    from microgrid.topology.services import microgrid_create

    ids = [f"MG.FLEET-{i:02d}" for i in range(12)]
    for mg in ids:
        microgrid_create(
            **microgrid_input(
                {
                    "microgrid_id": mg,
                    "name": mg,
                    "depot": {"depot_id": f"D-{mg}", "name": mg, "timezone": "UTC"},
                }
            )
        )
    operator = make_user("operator", username="op-fleet", microgrids=ids[::2])
    api = token_client(ApiToken.issue(user=operator)[1])
    api.get("/api/microgrids/")  # warm: the token's last_used_at is written once a minute
    # Token, roles, the fleet's counts per state and its page (both with the membership
    # subquery: the fleet overview, issue 17).
    with django_assert_max_num_queries(4):
        assert listed(api) == ids[::2]
    # One microgrid: token, roles, the microgrid with its membership subquery, the card's reads.
    with django_assert_max_num_queries(12) as card:
        assert api.get(f"/api/microgrids/{ids[0]}/").status_code == 200
    with django_assert_max_num_queries(len(card.captured_queries) + 1):  # +1: the refusal's
        assert api.get(f"/api/microgrids/{ids[1]}/").status_code == 404


# -- the demo --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_demo_operator_sees_the_demo_depot_and_not_the_second_one(settings):
    settings.DEBUG = True
    call_command("load_profile", str(PROFILES / "demo_depot.yaml"), stdout=io.StringIO())
    call_command("load_profile", str(PROFILES / "demo_depot_harbour.yaml"), stdout=io.StringIO())
    call_command("demo_users", stdout=io.StringIO())

    operator = APIClient()
    login = {"username": "operator", "password": "operator-demo"}
    assert operator.post("/accounts/login/", login).status_code == 302
    assert listed(operator) == ["MG.DEMO-1"]
    assert operator.get("/manage/microgrids/MG.HARBOUR-1/").status_code == 404
    support = APIClient()
    login = {"username": "support", "password": "support-demo"}
    assert support.post("/accounts/login/", login).status_code == 302
    assert listed(support) == ["MG.DEMO-1", "MG.HARBOUR-1"]


@pytest.mark.django_db
def test_demo_users_asks_for_the_demo_depot_first(settings):
    settings.DEBUG = True
    with pytest.raises(CommandError, match="demo_depot.yaml"):
        call_command("demo_users", stdout=io.StringIO())
