"""Shared fixtures: users in each role, API clients with tokens, a small microgrid."""

from __future__ import annotations

import copy

import pytest

SMALL_TOPOLOGY = {
    "nodes": [
        {
            "node_id": "grid",
            "parent_id": None,
            "kind": "GRID_CONNECTION",
            "name": "Grid",
            "physical_rating_kw": 800,
        },
        {
            "node_id": "sb-1",
            "parent_id": "grid",
            "kind": "SWITCHBOARD",
            "name": "Board 1",
            "physical_rating_kw": 400,
        },
        {
            "node_id": "grp-a",
            "parent_id": "sb-1",
            "kind": "CHARGER_GROUP",
            "name": "Bay A",
            "physical_rating_kw": 250,
        },
        {
            "node_id": "grp-b",
            "parent_id": "sb-1",
            "kind": "CHARGER_GROUP",
            "name": "Bay B",
            "physical_rating_kw": 250,
        },
    ],
    "assets": [
        {
            "asset_id": "CH-01",
            "node_id": "grp-a",
            "kind": "CHARGER",
            "name": "Charger 1",
            "max_power_kw": 150,
            "min_power_kw": 4.1,
            "priority": 0,
            "failsafe_power_kw": 4.1,
        },
        {
            "asset_id": "CH-02",
            "node_id": "grp-a",
            "kind": "CHARGER",
            "name": "Charger 2",
            "max_power_kw": 150,
            "min_power_kw": 4.1,
        },
        {
            "asset_id": "CH-03",
            "node_id": "grp-b",
            "kind": "CHARGER",
            "name": "Charger 3",
            "max_power_kw": 150,
            "min_power_kw": 4.1,
        },
        {
            "asset_id": "SITE",
            "node_id": "grid",
            "kind": "SITE_LOAD",
            "name": "Workshop",
            "rated_power_kw": 120,
            "fallback_kw": 80,
        },
        {
            "asset_id": "PV-1",
            "node_id": "grid",
            "kind": "PV",
            "name": "Roof PV",
            "rated_power_kw": 60,
        },
        {"asset_id": "M-GRID", "node_id": "grid", "kind": "METER", "name": "Grid meter"},
    ],
}


@pytest.fixture
def small_topology():
    return copy.deepcopy(SMALL_TOPOLOGY)


ALL_MICROGRIDS = "all"


def grant_microgrids(user, microgrids) -> None:
    """Memberships for a test user: ALL_MICROGRIDS (a fleet-wide membership, as
    `create_api_token --all-microgrids` gives) or the ids of the microgrids it may reach."""
    from microgrid.topology.services import microgrid_memberships_grant

    if microgrids == ALL_MICROGRIDS:
        microgrid_memberships_grant(user=user, all_microgrids=True)
    else:
        microgrid_memberships_grant(user=user, microgrid_ids=list(microgrids))


@pytest.fixture
def make_user(db):
    """make_user(role, username, password, microgrids): a user in a role. Operators and
    integration clients reach every microgrid unless `microgrids` names the ones they may
    reach (tests/reliability/test_tenancy.py tests memberships); support needs none."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    def make(
        role: str | None = None,
        username: str | None = None,
        password: str = "pw-Secret-123",
        microgrids=None,
    ):
        user_model = get_user_model()
        name = username or f"{role or 'nobody'}-user"
        user, _ = user_model.objects.get_or_create(username=name)
        user.set_password(password)
        user.is_staff = role == "support"
        user.save()
        if role:
            user.groups.add(Group.objects.get(name=role))
        if microgrids is None and role in ("operator", "integration"):
            microgrids = ALL_MICROGRIDS
        grant_microgrids(user, microgrids or ())
        return user

    return make


@pytest.fixture
def api_client_for(make_user):
    from rest_framework.test import APIClient

    from microgrid.common.models import ApiToken

    def make(role: str | None):
        client = APIClient()
        if role is not None:
            user = make_user(role)
            _, key = ApiToken.issue(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            client.user = user
        return client

    return make


@pytest.fixture
def operator_api(api_client_for):
    return api_client_for("operator")


@pytest.fixture
def support_api(api_client_for):
    return api_client_for("support")


@pytest.fixture
def integration_api(api_client_for):
    return api_client_for("integration")


@pytest.fixture
def anon_api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def empty_microgrid(db):
    from microgrid.topology.api.serializers import microgrid_input
    from microgrid.topology.services import microgrid_create

    return microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": "MG.NORTH-1",
                "name": "North Depot microgrid",
                "depot": {
                    "depot_id": "DEPOT-N",
                    "name": "North Depot",
                    "timezone": "Europe/Amsterdam",
                },
            }
        )
    )


@pytest.fixture
def microgrid(empty_microgrid, small_topology):
    from microgrid.topology.services import topology_replace

    topology_replace(
        microgrid=empty_microgrid,
        base_version=0,
        nodes=small_topology["nodes"],
        assets=small_topology["assets"],
    )
    empty_microgrid.refresh_from_db()
    return empty_microgrid


@pytest.fixture
def operator_client(client, make_user):
    """Django test client logged in as an operator (Manage pages)."""
    client.force_login(make_user("operator"))
    return client


@pytest.fixture
def support_client(client, make_user):
    client.force_login(make_user("support"))
    return client


def pytest_configure(config):
    from django.conf import settings

    # Hashing passwords at production strength costs seconds per test for nothing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Tasks run in-process unless a real broker is under test (tests/integration).
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        from microgrid.celery import app

        app.conf.task_always_eager = True
        app.conf.task_eager_propagates = True
