"""Who may call what: every URL pattern of the product against every kind of credential.

The table below is the access policy of spec section 6, one row per route:
method -> the credentials allowed. The URL patterns are found in the URL
configuration, not listed by hand, and compared with the table's keys: a new
route without a row fails `test_every_url_pattern_has_a_row`.

Credentials: anonymous, an operator, a support user, an integration client
(each through an API token on /api and /oscp and through a logged-in session
on every surface, /api included) and an OSCP peer (its own token).

Allowed is any answer that is not a refusal (401, 403 or a redirect to a
login page), a 500 or a 404: every id in a route names a real object, so an
allowed call reaches the view's work (a 400 or 422 for the empty body is fine).
Refusals have a fixed form per surface:
- /api/ and /oscp/: 401 `NOT_AUTHENTICATED` for a caller the surface does not
  know (anonymous; a peer token on /api; an API token or session on /oscp),
  403 `PERMISSION_DENIED` for a known user without the role; both JSON error
  bodies;
- /manage/: a redirect to /accounts/login/?next=... when not logged in, 403
  for a logged-in user without a Manage role;
- /admin/: Django admin's redirect to its login page (/admin/login/?next=...)
  for everyone who is not support staff.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from microgrid.capabilities.api.serializers import bind_input
from microgrid.limits.api.serializers import policy_input
from microgrid.topology.api.serializers import microgrid_input

ANON = "anonymous"
OPERATOR = "operator"
SUPPORT = "support"
INTEGRATION = "integration"
PEER = "oscp-peer"
CREDENTIALS = (ANON, OPERATOR, SUPPORT, INTEGRATION, PEER)
USERS = (OPERATOR, SUPPORT, INTEGRATION)

EVERYONE = frozenset(CREDENTIALS)
NOBODY = frozenset()
MANAGE = frozenset({OPERATOR, SUPPORT})  # Manage pages
READ = frozenset({OPERATOR, SUPPORT})  # reads of every canonical endpoint
WRITE = frozenset({OPERATOR, SUPPORT})  # topology, limits, rebalance
SUPPORT_ONLY = frozenset({SUPPORT})  # admin, microgrids, bindings, withdraw
INGEST = frozenset({INTEGRATION, SUPPORT})  # telemetry and capability status events
LEGACY = frozenset({INTEGRATION, SUPPORT})  # the frozen /api/circuit/ endpoints
ANY_ROLE = frozenset({OPERATOR, SUPPORT, INTEGRATION})  # the API's schema and docs
PEERS = frozenset({PEER})

MG = "api/microgrids/<mgid:microgrid_id>/"
PAGE = "manage/microgrids/<mgid:microgrid_id>/"

ACCESS: dict[str, dict[str, frozenset[str]]] = {
    # Public: the login form, the health probe and redirects that carry no data.
    "": {"GET": EVERYONE},
    "accounts/login/": {"GET": EVERYONE, "POST": EVERYONE},
    "accounts/logout/": {"POST": EVERYONE},
    "healthz": {"GET": EVERYONE},
    "favicon.ico": {"GET": EVERYONE},  # a redirect to the static icon
    # Django admin (every admin URL): support staff only.
    "admin/": {"GET": SUPPORT_ONLY},
    # Canonical API.
    "api/schema/": {"GET": ANY_ROLE},
    "api/docs/": {"GET": ANY_ROLE},
    "api/microgrids/": {"GET": READ, "POST": SUPPORT_ONLY},
    MG: {"GET": READ},
    MG + "topology/": {"GET": READ, "PUT": WRITE},
    MG + "topology/revisions/": {"GET": READ},
    MG + "topology/revisions/<int:version>/": {"GET": READ},
    MG + "limits/": {"GET": READ, "POST": WRITE},
    MG + "limits/active/": {"GET": READ},
    MG + "limits/<mgid:policy_id>/": {"GET": READ, "PUT": WRITE, "DELETE": WRITE},
    MG + "telemetry/": {"POST": INGEST},
    MG + "chargers/<mgid:asset_id>/session/": {
        "GET": READ | {INTEGRATION},
        "PUT": INGEST,
        "DELETE": INGEST,
    },
    MG + "operating-envelopes/": {"GET": READ},
    MG + "operating-envelopes/<mgid:envelope_id>/": {"GET": READ},
    MG + "operating-envelopes/<mgid:envelope_id>/withdraw/": {"POST": SUPPORT_ONLY},
    MG + "rebalance/": {"POST": WRITE},
    MG + "cycles/": {"GET": READ},
    MG + "setpoints/": {"GET": READ | {INTEGRATION}},
    MG + "stations/": {"GET": READ},
    MG + "cycles/<mgid:cycle_id>/": {"GET": READ},
    MG + "breaches/": {"GET": READ},
    MG + "breaches/<mgid:breach_id>/": {"GET": READ},
    MG + "capabilities/": {"GET": READ},
    MG + "capabilities/bindings/": {"POST": SUPPORT_ONLY},
    MG + "capabilities/bindings/transfer/": {"POST": SUPPORT_ONLY},
    MG + "capabilities/bindings/<mgid:binding_id>/release/": {"POST": SUPPORT_ONLY},
    MG + "capabilities/events/": {"POST": INGEST},
    "api/legacy/alias-usage/": {"GET": READ},
    # Legacy circuit endpoints (frozen).
    "api/circuit/<mgid:circuit_id>": {"GET": LEGACY},
    "api/circuit/<mgid:circuit_id>/rebalance_load": {"POST": LEGACY},
    "api/circuit/<mgid:circuit_id>/tou_limits": {"GET": LEGACY, "POST": LEGACY},
    # Any other path under /api/ or /oscp/: 404 NOT_FOUND to everyone, nothing behind it.
    "api/*": {"GET": EVERYONE, "POST": EVERYONE},
    "oscp/*": {"GET": EVERYONE, "POST": EVERYONE},
    # OSCP 2.0 inbound: peers with their own token only.
    "oscp/fp/2.0/register": {"POST": PEERS, "PUT": PEERS, "DELETE": PEERS},
    "oscp/fp/2.0/handshake": {"POST": PEERS},
    "oscp/fp/2.0/heartbeat": {"POST": PEERS},
    "oscp/fp/2.0/update_group_capacity_forecast": {"POST": PEERS},
    # Manage pages: operators and support staff; writes as in the API.
    "manage/": {"GET": EVERYONE},  # a redirect to manage/microgrids/
    "manage/microgrids/": {"GET": MANAGE},
    PAGE: {"GET": MANAGE},
    PAGE + "topology/": {"GET": MANAGE},
    PAGE + "topology/revisions/": {"GET": MANAGE},
    PAGE + "topology/revisions/<int:version>/": {"GET": MANAGE},
    PAGE + "topology/edit/": {"GET": WRITE, "POST": WRITE},
    PAGE + "limits/": {"GET": MANAGE, "POST": WRITE},
    PAGE + "limits/<mgid:policy_id>/": {"GET": WRITE, "POST": WRITE},
    PAGE + "limits/<mgid:policy_id>/delete/": {"POST": WRITE},
    PAGE + "envelopes/": {"GET": MANAGE},
    PAGE + "envelopes/<mgid:envelope_id>/": {"GET": MANAGE},
    PAGE + "envelopes/<mgid:envelope_id>/withdraw/": {"POST": SUPPORT_ONLY},
    PAGE + "cycles/": {"GET": MANAGE},
    PAGE + "stations/": {"GET": MANAGE},
    PAGE + "cycles/rebalance/": {"POST": WRITE},
    PAGE + "cycles/<mgid:cycle_id>/": {"GET": MANAGE},
    PAGE + "breaches/": {"GET": MANAGE},
    PAGE + "breaches/<mgid:breach_id>/": {"GET": MANAGE},
    PAGE + "capabilities/": {"GET": MANAGE},
    "manage/legacy/": {"GET": MANAGE},
    "manage/legacy/circuits/": {"GET": MANAGE},
    "manage/legacy/alias-usage/": {"GET": MANAGE},
}

PEER_TOKEN = "access-control-peer-token-0123"
PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


# -- the URL configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    key: str
    callback: object


def _key(prefix: str, pattern) -> str:
    route = getattr(pattern, "_route", None)
    if route is not None:
        return prefix + route
    # A regex: OSCP's optional trailing slash ("^heartbeat/?$") and the catch-alls ("^api/").
    regex = pattern.regex.pattern.lstrip("^").rstrip("$").removesuffix("/?")
    return prefix + regex + ("*" if regex.endswith("/") else "")


def routes(patterns=None, prefix: str = "") -> list[Route]:
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        key = _key(prefix, entry.pattern)
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                found.append(Route(key, None))  # one row for the whole admin site
            else:
                found.extend(routes(entry.url_patterns, key))
        elif isinstance(entry, URLPattern):
            found.append(Route(key, entry.callback))
    return found


def drf_methods(callback) -> set[str] | None:
    """The methods a DRF view implements (None for other views)."""
    view_class = getattr(callback, "cls", None)
    if view_class is None or not issubclass(view_class, APIView):
        return None
    return {
        m.upper()
        for m in view_class.http_method_names
        if m not in ("options", "head") and hasattr(view_class, m)
    }


# -- a microgrid with one of everything the routes name -----------------------------------------


class World(dict):
    """The id for each route parameter, its object made the first time a route names it, so
    an allowed call reaches the view's real work (and a route pays only for what it names).

    `tag` tells two worlds apart (A, the test microgrid, and B, another depot's): their
    objects have ids of their own, and B's peer group is GRP-B."""

    def __init__(self, microgrid, peer, tag: str = "X"):
        super().__init__(microgrid_id=microgrid.microgrid_id)
        self.microgrid = microgrid
        self.peer = peer
        self.tag = tag

    def __missing__(self, name: str) -> str:
        self[name] = getattr(self, f"make_{name}")()
        return self[name]

    def make_version(self) -> str:
        return str(self.microgrid.topology_version)

    def make_policy_id(self) -> str:
        from microgrid.limits.services import limit_policy_create

        data = {"scope": "NODE", "node_id": "sb-1", "limit_kw": 300}
        return limit_policy_create(microgrid=self.microgrid, **policy_input(data)).policy_id

    def make_envelope_id(self) -> str:
        from django.utils import timezone

        from microgrid.envelopes.services import oscp_message_receive

        now = timezone.now()
        block = {
            "capacity": 500,
            "phase": "ALL",
            "unit": "KW",
            "start_time": now.isoformat(),
            "end_time": (now + timezone.timedelta(hours=1)).isoformat(),
        }
        body = {
            "group_id": f"GRP-{self.tag}",
            "type": "CONSUMPTION",
            "forecasted_blocks": [block],
        }
        receipt = oscp_message_receive(
            peer=self.peer,
            message_type="UPDATE_GROUP_CAPACITY_FORECAST",
            request_id=f"access-{self.tag}",
            body=json.dumps(body),
            now=now,
        )
        return receipt.envelopes[0].envelope_id

    def make_asset_id(self) -> str:
        return "CH-01"  # a charger of the small topology

    def make_cycle_id(self) -> str:
        from balancing.services import cycle_request, trigger_of

        return cycle_request(microgrid=self.microgrid, trigger=trigger_of("API")).cycle.cycle_id

    def make_breach_id(self) -> str:
        # A stored row to read (how breaches are found is tests/balancing's business).
        from balancing.models import Breach, Cycle

        cycle = Cycle.objects.get(cycle_id=self["cycle_id"])
        return Breach.objects.create(
            breach_id=f"BR-{self.tag}",
            microgrid=self.microgrid,
            cycle=cycle,
            node_id="sb-1",
            measured_kw=420,
            limit_kw=400,
            excess_kw=20,
            exceeded=["NODE_LIMIT"],
            primary_reason_code="BREACH_DETECTED",
            detected_at=cycle.started_at,
        ).breach_id

    def make_binding_id(self) -> str:
        from microgrid.capabilities.services import capability_binding_create

        data = {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": "grp-a"},
            "source_device_id": "plc-a",
        }
        return capability_binding_create(
            microgrid=self.microgrid, **bind_input(data)
        ).binding.binding_id

    def make_circuit_id(self) -> str:
        from legacy_circuit.models import CircuitAlias, LegacyCircuit

        circuit = LegacyCircuit.objects.create(
            circuit_id=f"CIR-{self.tag}",
            name="Board 1",
            configured_capacity_kw=350,
            available_capacity_kw=350,
        )
        CircuitAlias.objects.create(
            circuit=circuit, microgrid=self.microgrid, scope_type="NODE", node_id="sb-1"
        )
        return circuit.circuit_id


@pytest.fixture
def world(microgrid, make_user):
    """The test microgrid, a user per role and an OSCP peer bound to a group of it."""
    from microgrid.envelopes.services import oscp_group_binding_save, oscp_peer_save

    for role in USERS:
        make_user(role)
    peer, _ = oscp_peer_save(name="dso-access", token=PEER_TOKEN, heartbeat_interval_s=60)
    oscp_group_binding_save(
        peer=peer, group_id="GRP-X", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    return World(microgrid, peer)


def url_for(key: str, ids: World) -> str:
    if key.endswith("*"):
        return "/" + key[:-1] + "no-such-thing/"
    return "/" + PARAM.sub(lambda m: ids[m["name"]], key)


def client_for(credential: str, transport: str):
    """A client carrying `credential` through `transport` ("token" or "session")."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from microgrid.common.models import ApiToken

    client = APIClient()
    if credential == PEER:
        client.credentials(HTTP_AUTHORIZATION=f"Token {PEER_TOKEN}")
    elif credential in USERS:
        user = get_user_model().objects.get(username=f"{credential}-user")
        if transport == "token":
            _, key = ApiToken.issue(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        else:
            client.force_login(user)
    return client


def call(client, method: str, url: str):
    """One request whose effects are rolled back, so every call sees the same world."""
    headers = {"HTTP_X_REQUEST_ID": "access-probe"} if url.startswith("/oscp/") else {}
    with transaction.atomic():
        if url.startswith("/manage/") or url.startswith("/accounts/"):
            response = client.generic(
                method, url, "", content_type="application/x-www-form-urlencoded"
            )
        else:
            response = client.generic(method, url, "{}", content_type="application/json", **headers)
        transaction.set_rollback(True)
    return response


# -- the verdicts ---------------------------------------------------------------------------------


def _login_redirect(response, login: str) -> bool:
    return response.status_code == 302 and response["Location"].startswith(login + "?next=")


def refusal_problem(key: str, credential: str, response) -> str | None:
    """None when `response` is the refusal this surface owes this credential."""
    surface = key.split("/", 1)[0]
    status = response.status_code
    if surface in ("api", "oscp"):
        unknown = (
            credential == ANON
            or (surface == "api" and credential == PEER)
            or (surface == "oscp" and credential != PEER)
        )
        want_status, want_code = (
            (401, "NOT_AUTHENTICATED") if unknown else (403, "PERMISSION_DENIED")
        )
        try:
            code = json.loads(response.content).get("code")
        except (ValueError, AttributeError):
            code = None
        if (status, code) != (want_status, want_code):
            return f"wanted {want_status} {want_code}, got {status} {code}"
        return None
    if surface == "manage":
        if credential in (ANON, PEER):
            return (
                None
                if _login_redirect(response, "/accounts/login/")
                else f"wanted a redirect to the login page, got {status}"
            )
        return None if status == 403 else f"wanted 403, got {status}"
    if surface == "admin":
        return (
            None
            if _login_redirect(response, "/admin/login/")
            else f"wanted a redirect to the admin login, got {status}"
        )
    return f"nothing on {key!r} may be refused, got {status}"


def allowed_problem(key: str, response) -> str | None:
    status = response.status_code
    if status in (401, 403) or status >= 500:
        return f"allowed, got {status}"
    if status == 404 and not key.endswith("*"):
        return "allowed, got 404: the world lacks the object this route names"
    if status == 302 and "/login/?next=" in response["Location"]:
        return f"allowed, got a redirect to {response['Location']}"
    return None


def transports(key: str, credential: str) -> tuple[str, ...]:
    if credential in USERS and key.startswith(("api/", "oscp/")):
        return ("token", "session")
    return ("session",) if credential in USERS else ("none",)


def check_route(key: str, ids: World) -> list[str]:
    problems = []
    url = url_for(key, ids)
    clients = {
        (credential, transport): client_for(credential, transport)
        for credential in CREDENTIALS
        for transport in transports(key, credential)
    }
    for method, allowed in ACCESS[key].items():
        for (credential, transport), client in clients.items():
            response = call(client, method, url)
            if credential in allowed:
                problem = allowed_problem(key, response)
            else:
                problem = refusal_problem(key, credential, response)
            if problem:
                problems.append(f"{method} {url} as {credential} ({transport}): {problem}")
    return problems


# -- the tests -------------------------------------------------------------------------------------


def test_every_url_pattern_has_a_row():
    found = {r.key for r in routes()}
    assert found - set(ACCESS) == set(), "routes without an access row"
    assert set(ACCESS) - found == set(), "rows for routes that no longer exist"


def test_each_api_row_lists_exactly_the_methods_its_view_implements():
    for route in routes():
        methods = drf_methods(route.callback)
        if methods is not None:
            assert set(ACCESS[route.key]) == methods, route.key


@pytest.mark.django_db
@pytest.mark.parametrize(
    # The admin row is walked URL by URL in the admin tests below.
    "key",
    sorted(k for k in ACCESS if k != "admin/"),
    ids=lambda k: k or "/",
)
def test_route_answers_each_credential_as_the_table_says(key, world):
    problems = check_route(key, world)
    assert problems == [], "\n".join(problems)


@pytest.mark.django_db
def test_any_other_path_under_api_and_oscp_is_a_plain_not_found_for_everyone(world):
    for key in ("api/*", "oscp/*"):
        for credential in CREDENTIALS:
            client = client_for(credential, "token")
            for method in ACCESS[key]:
                response = call(client, method, url_for(key, world))
                assert response.status_code == 404, (key, credential, method)
                assert response.json()["code"] == "NOT_FOUND"


@pytest.mark.django_db
def test_an_anonymous_options_request_learns_nothing_about_an_api_endpoint(world):
    for route in routes():
        if route.key.startswith("api/") and not route.key.endswith("*"):
            response = call(client_for(ANON, "none"), "OPTIONS", url_for(route.key, world))
            assert response.status_code == 401, route.key
            assert response.json()["code"] == "NOT_AUTHENTICATED"


# -- Django admin -----------------------------------------------------------------------------------


def admin_urls() -> dict[str, str]:
    """The admin index and the change list of every registered model, by model label."""
    from django.contrib import admin
    from django.urls import reverse

    urls = {"index": reverse("admin:index")}
    for model in admin.site._registry:
        meta = model._meta
        urls[meta.label_lower] = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return urls


ADMIN_PUBLIC = {"login/", "logout/"}  # the admin's login form; logout sends a visitor to index


def every_admin_url() -> list[str]:
    """One concrete URL per admin URL pattern, custom model-admin views included."""
    from django.contrib import admin

    def fill(route: str) -> str:
        route = re.sub(r"\(\?P<app_label>([^|)]+)[^)]*\)", r"\1", route)  # the app list
        route = route.replace("(?P<url>.*)", "no-such-page/")  # the catch-all
        route = PARAM.sub("1", route)  # <path:object_id>, <int:pk>, ...
        route = route.replace("([^/]+)", "1")  # simple-history's regex routes
        return route.replace("^", "").replace("$", "")

    def walk(patterns, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, route)
            elif route not in ADMIN_PUBLIC:
                yield "/admin/" + fill(route)

    return sorted(set(walk(admin.site.urls[0], "")))


@pytest.mark.django_db
def test_every_admin_url_sends_everyone_but_support_staff_to_the_admin_login(make_user):
    from django.test import Client

    staff_operator = make_user(OPERATOR, username="staff-operator")
    staff_operator.is_staff = True  # a stray staff flag gives no admin without the role
    staff_operator.save()
    visitors = {
        ANON: None,
        INTEGRATION: make_user(INTEGRATION),
        "operator with is_staff": staff_operator,
    }
    urls = every_admin_url()
    assert len(urls) > 150
    assert "/admin/topology/microgrid/1/topology/" in urls  # a custom admin view
    problems = []
    for name, user in visitors.items():
        client = Client()
        if user is not None:
            client.force_login(user)
        for url in urls:
            response = client.get(url)
            if not _login_redirect(response, "/admin/login/"):
                problems.append(f"{name} on {url}: {response.status_code}")
    assert problems == []


@pytest.mark.django_db
def test_support_staff_see_every_product_model_in_admin_but_not_users_and_groups(make_user):
    from django.test import Client

    client = Client()
    client.force_login(make_user(SUPPORT))
    answers = {label: client.get(url).status_code for label, url in admin_urls().items()}
    superuser_only = {"auth.user", "auth.group"}
    assert {label for label, status in answers.items() if status != 200} == superuser_only
    assert {answers[label] for label in superuser_only} == {403}


# -- CSRF -------------------------------------------------------------------------------------------


def form_routes() -> list[str]:
    """Every route outside /api/, /oscp/ and admin: the Manage pages and the login forms."""
    return sorted(k for k in ACCESS if not k.startswith(("api/", "oscp/", "admin/")))


@pytest.mark.django_db
def test_a_form_post_without_the_csrf_token_is_refused_on_every_page(world, make_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(SUPPORT))
    answers = {key: call(client, "POST", url_for(key, world)).status_code for key in form_routes()}
    assert {key: status for key, status in answers.items() if status != 403} == {}


@pytest.mark.django_db
def test_the_same_form_posts_with_the_csrf_token_pass_the_check(world, make_user):
    """The refusal above is the CSRF check, not the role: with the token each form is served."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(SUPPORT))
    client.get("/accounts/login/")  # the form page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    posted = [k for k in form_routes() if "POST" in ACCESS[k]]
    assert len(posted) >= 8
    for key in posted:
        url = url_for(key, world)  # outside the rolled-back request: the objects stay
        with transaction.atomic():
            response = client.post(url, {"csrfmiddlewaretoken": token})
            transaction.set_rollback(True)
        assert response.status_code not in (403, 404), key


@pytest.mark.django_db
def test_an_api_write_with_a_session_needs_the_csrf_token_and_one_with_a_token_does_not(
    world, make_user
):
    """A session cookie is sent by the browser on its own; an Authorization header is not."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user(SUPPORT))
    token_client = client_for(SUPPORT, "token")
    token_client.handler.enforce_csrf_checks = True
    writes = [
        (key, method)
        for key, methods in ACCESS.items()
        if key.startswith("api/") and not key.endswith("*")
        for method in methods
        if method != "GET"
    ]
    assert len(writes) >= 10
    for key, method in writes:
        url = url_for(key, world)
        refused = call(browser, method, url)
        assert (refused.status_code, refused.json()["code"]) == (403, "PERMISSION_DENIED"), key
        assert refused.json()["details"] == {"reason": "CSRF"}, key
        assert call(token_client, method, url).status_code not in (401, 403), key


# -- memberships: the matrix's second dimension (spec 6, access) -------------------------------
#
# Two depots: A (the test microgrid) and B (another depot's, with one of everything too). The
# callers of this dimension are members of A only. For every route that names a microgrid or
# a legacy circuit, each of them gets its normal answer on A and, on B, exactly the answer an
# unknown id gets, with nothing written and the refusal audited; every other route (the lists)
# names nothing of B to them, while support staff see B everywhere.

MEMBER_OF_A = {OPERATOR: "operator-of-a", INTEGRATION: "integration-of-a"}
B_MICROGRID = "MG.SOUTH-2"
B_MARKS = (B_MICROGRID, "DEPOT-S", "CIR-B", "South Depot")  # what would betray B in an answer
UNKNOWN = {"microgrid_id": "MG.NO-SUCH-9", "circuit_id": "CIR-NO-SUCH-9"}
CSRF_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')
# Rows a refused request may write: the refusal's own audit and the legacy call audit.
AUDIT_MODELS = {"common.accessrefusal", "legacy_circuit.aliasusage", "common.apitoken"}


@pytest.fixture
def world_b(world, small_topology):
    """Depot B: a microgrid like A's, with its own policy, envelope (group GRP-B of the same
    peer), cycle, breach, binding and circuit, and a legacy call into it in the audit."""
    from legacy_circuit.models import AliasUsage
    from microgrid.envelopes.services import oscp_group_binding_save
    from microgrid.topology.services import microgrid_create, topology_replace

    microgrid = microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": B_MICROGRID,
                "name": "South Depot microgrid",
                "depot": {"depot_id": "DEPOT-S", "name": "South Depot", "timezone": "UTC"},
            }
        )
    )
    topology_replace(
        microgrid=microgrid,
        base_version=0,
        nodes=small_topology["nodes"],
        assets=small_topology["assets"],
    )
    microgrid.refresh_from_db()
    oscp_group_binding_save(
        peer=world.peer, group_id="GRP-B", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    b = World(microgrid, world.peer, tag="B")
    AliasUsage.objects.create(
        circuit_id=b["circuit_id"],
        endpoint="/api/circuit/{circuit_id}",
        method="GET",
        client="integration-of-b",
        microgrid_id=B_MICROGRID,
        status_code=200,
        at=microgrid.updated_at,
    )
    return b


@pytest.fixture
def members_of_a(world, make_user):
    return {
        role: make_user(role, username=name, microgrids=[world.microgrid.microgrid_id])
        for role, name in MEMBER_OF_A.items()
    }


def member_client(role: str, transport: str):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from microgrid.common.models import ApiToken

    user = get_user_model().objects.get(username=MEMBER_OF_A[role])
    client = APIClient()
    if transport == "token":
        _, key = ApiToken.issue(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    else:
        client.force_login(user)
    return client


class Unknown(dict):
    """The ids of world B with the microgrid or circuit replaced by one that does not exist."""

    def __init__(self, world: World, name: str):
        super().__init__({name: UNKNOWN[name]})
        self.world = world

    def __missing__(self, name: str) -> str:
        return self.world[name]


def scoped_name(key: str) -> str | None:
    """The id a route is scoped by: the microgrid's or the legacy circuit's (None for lists)."""
    for name in ("microgrid_id", "circuit_id"):
        if f":{name}>" in key:
            return name
    return None


def database_state() -> dict[str, int]:
    """A fingerprint of every product table but the audits: a hash of all its rows."""
    from django.apps import apps

    from microgrid.common.apps import PRODUCT_APPS

    state = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if model._meta.app_label in PRODUCT_APPS and label not in AUDIT_MODELS:
            state[label] = hash(repr(list(model._default_manager.order_by("pk").values_list())))
    return state


def answer(response) -> tuple:
    """What a caller learns from a response, with the requested id taken out."""
    body = response.content.decode("utf-8", "replace")
    for name, unknown in UNKNOWN.items():
        body = body.replace(unknown, f"<{name}>")
    for mark in (B_MICROGRID, "CIR-B"):
        body = body.replace(mark, "<microgrid_id>" if mark == B_MICROGRID else "<circuit_id>")
    if response.get("Content-Type", "").startswith("application/json"):
        return (response.status_code, json.loads(body))
    # A page, but for its CSRF token, which differs on every render.
    return (response.status_code, CSRF_VALUE.sub("", body))


def call_on_b(client, method: str, url: str):
    """One rolled-back request on B: its answer, whether it wrote, and its refusal audit rows."""
    from microgrid.common.models import AccessRefusal

    headers = {"HTTP_X_REQUEST_ID": "access-probe"} if url.startswith("/oscp/") else {}
    with transaction.atomic():
        before = database_state()
        if url.startswith("/manage/"):
            response = client.generic(
                method, url, "", content_type="application/x-www-form-urlencoded"
            )
        else:
            response = client.generic(method, url, "{}", content_type="application/json", **headers)
        wrote = sorted(k for k, v in database_state().items() if before.get(k) != v)
        audited = list(AccessRefusal.objects.values("username", "microgrid_id", "method", "path"))
        transaction.set_rollback(True)
    return response, wrote, audited


def check_membership_route(key: str, a: World, b: World) -> list[str]:
    problems = []
    name = scoped_name(key)
    for role in (OPERATOR, INTEGRATION):
        for method, allowed in ACCESS[key].items():
            if role not in allowed:
                continue  # refused by role on A and B alike (the table's business)
            for transport in transports(key, role):
                client = member_client(role, transport)
                where = f"{method} {key} as {role} of A ({transport})"
                on_a = call(client, method, url_for(key, a))
                problem = allowed_problem(key, on_a)
                if problem:
                    problems.append(f"{where} on A: {problem}")
                leaked = [m for m in B_MARKS if m in on_a.content.decode("utf-8", "replace")]
                if leaked:
                    problems.append(f"{where} on A names B: {leaked}")
                # Fresh clients: a page's flash message from A must not show on the next page.
                on_b, wrote, audited = call_on_b(
                    member_client(role, transport), method, url_for(key, b)
                )
                unknown = call(
                    member_client(role, transport), method, url_for(key, Unknown(b, name))
                )
                if answer(on_b) != answer(unknown) or on_b.status_code not in (404, 409):
                    problems.append(
                        f"{where} on B: {on_b.status_code} {on_b.content[:200]!r}, not the "
                        f"answer to an unknown {name} ({unknown.status_code})"
                    )
                if wrote:
                    problems.append(f"{where} on B wrote {wrote}")
                wanted = {"username": MEMBER_OF_A[role], "method": method}
                if not any(wanted.items() <= row.items() for row in audited):
                    problems.append(f"{where} on B: no access refusal audited ({audited})")
                elif name == "microgrid_id" and audited[0]["microgrid_id"] != B_MICROGRID:
                    problems.append(f"{where} on B: audited {audited}")
            # Support staff need no membership: B answers them as A does.
            on_b = call(client_for(SUPPORT, "session"), method, url_for(key, b))
            problem = allowed_problem(key, on_b) if SUPPORT in allowed else None
            if problem:
                problems.append(f"{method} {key} as support on B: {problem}")
    return problems


MEMBERSHIP_ROUTES = sorted(k for k in ACCESS if scoped_name(k))
LIST_ROUTES = sorted(
    k for k in ACCESS if not scoped_name(k) and "GET" in ACCESS[k] and k != "admin/"
)


def test_the_membership_dimension_covers_every_route_that_names_a_microgrid_or_circuit():
    assert len(MEMBERSHIP_ROUTES) >= 35
    assert not [k for k in ACCESS if "<" in k and not scoped_name(k)], "a route scoped by neither"


@pytest.mark.django_db
@pytest.mark.parametrize("key", MEMBERSHIP_ROUTES)
def test_a_member_of_a_gets_its_answer_on_a_and_the_unknown_answer_on_b_writing_nothing(
    key, world, world_b, members_of_a, make_user
):
    make_user(SUPPORT)
    problems = check_membership_route(key, world, world_b)
    assert problems == [], "\n".join(problems)


@pytest.mark.django_db
@pytest.mark.parametrize("key", LIST_ROUTES, ids=lambda k: k or "/")
def test_no_list_or_page_names_b_to_a_member_of_a_while_support_sees_it(
    key, world, world_b, members_of_a, make_user
):
    make_user(SUPPORT)
    url = url_for(key, world)
    problems = []
    for role in (OPERATOR, INTEGRATION):
        if role not in ACCESS[key]["GET"]:
            continue
        for transport in transports(key, role):
            body = call(member_client(role, transport), "GET", url).content.decode()
            leaked = [m for m in B_MARKS if m in body]
            if leaked:
                problems.append(f"GET {url} as {role} of A ({transport}) names B: {leaked}")
    assert problems == [], "\n".join(problems)


LISTS_OF_B = {
    "api/microgrids/",
    "api/legacy/alias-usage/",
    "manage/microgrids/",
    "manage/legacy/circuits/",
    "manage/legacy/alias-usage/",
}


@pytest.mark.django_db
def test_the_lists_show_b_to_support_so_the_filter_above_is_not_vacuous(world, world_b, make_user):
    make_user(SUPPORT)
    support = client_for(SUPPORT, "session")
    shows_b = {
        key
        for key in LIST_ROUTES
        if SUPPORT in ACCESS[key]["GET"]
        and B_MICROGRID in call(support, "GET", url_for(key, world)).content.decode()
    }
    assert shows_b >= LISTS_OF_B
