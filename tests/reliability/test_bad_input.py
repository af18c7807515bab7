"""Bad input on every endpoint: a deterministic 4xx with the error body, and nothing changes.

One table of every canonical, legacy and OSCP operation; each row says what a
good request looks like and what its bad variants must answer. Every case is
sent twice: both answers must be the same (status and body), carry the spec's
error body `{code, message, details, errors?}`, and leave every product table
with the rows it had (history included). The legacy audit is the one
exception, by contract: a call that reaches a legacy endpoint writes exactly
one AliasUsage row, whatever it answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings

from tests.reliability.conftest import row_counts

pytestmark = pytest.mark.django_db

MG = "MG.NORTH-1"
UNKNOWN = "NO-SUCH-ID"
MALFORMED = (400, "MALFORMED_REQUEST")
FIELD_INVALID = (422, "FIELD_INVALID")
OSCP_INVALID = (400, "OSCP_MESSAGE_INVALID")
NOT_FOUND = (404, "NOT_FOUND")


@dataclass(frozen=True)
class Endpoint:
    """One operation. `path` has `{mg}`, `{sub}` (a second id) or `{circuit}`; `ids` maps each
    placeholder to the id that exists; `unknown` is what an unknown id of each answers."""

    name: str
    method: str
    path: str
    role: str
    ids: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, tuple[int, str]] = field(default_factory=dict)
    wrong_types: Any = None  # a body whose fields have the wrong JSON types
    wrong_types_answer: tuple[int, str] = FIELD_INVALID
    huge_number: Any = None  # a body with a number that overflows to infinity (1e400)
    huge_number_answer: tuple[int, str] = FIELD_INVALID
    bad_queries: tuple[str, ...] = ()  # query strings, each with one bad value
    reads_body: bool = True  # the legacy rebalance does not read its body (frozen contract)
    unknown_sub: str = UNKNOWN  # an id of the {sub} kind that names nothing
    legacy: bool = False

    @property
    def has_body(self) -> bool:
        return self.method in ("POST", "PUT") and self.reads_body

    def url(self, **override: str) -> str:
        values = {**self.ids, **override}
        return self.path.format(**values)


def _ids(**extra: str) -> dict[str, str]:
    return {"mg": MG, **extra}


MG_UNKNOWN = {"mg": (404, "MICROGRID_NOT_FOUND")}
CIRCUIT_UNRESOLVABLE = {"circuit": (409, "CIRCUIT_ALIAS_NOT_RESOLVABLE")}
HUGE = 1e400  # json.dumps writes "Infinity"; the bodies below spell 1e400 out instead

ENDPOINTS = [
    # -- topology ------------------------------------------------------------------------------
    Endpoint(
        "microgrids_list",
        "GET",
        "/api/microgrids/",
        "support",
        bad_queries=("depot_id=%00", "depot_id=" + "D" * 65),
    ),
    Endpoint(
        "microgrids_create",
        "POST",
        "/api/microgrids/",
        "support",
        wrong_types={"microgrid_id": 5, "name": ["x"], "depot": "DEPOT-N"},
        huge_number={
            "microgrid_id": "MG-HUGE",
            "name": "Huge",
            "depot": {"depot_id": "DEPOT-N", "name": "North Depot"},
            "telemetry_stale_after_s": HUGE,
        },
    ),
    Endpoint("microgrids_card", "GET", "/api/microgrids/{mg}/", "operator", _ids(), MG_UNKNOWN),
    Endpoint(
        "topology_get", "GET", "/api/microgrids/{mg}/topology/", "operator", _ids(), MG_UNKNOWN
    ),
    Endpoint(
        "topology_replace",
        "PUT",
        "/api/microgrids/{mg}/topology/",
        "operator",
        _ids(),
        MG_UNKNOWN,
        wrong_types={"base_version": "1", "nodes": {"node_id": "grid"}, "assets": 3},
        huge_number={
            "base_version": 1,
            "nodes": [
                {
                    "node_id": "grid",
                    "parent_id": None,
                    "kind": "GRID_CONNECTION",
                    "name": "Grid",
                    "physical_rating_kw": HUGE,
                }
            ],
            "assets": [],
        },
    ),
    Endpoint(
        "topology_revisions_list",
        "GET",
        "/api/microgrids/{mg}/topology/revisions/",
        "operator",
        _ids(),
        MG_UNKNOWN,
    ),
    Endpoint(
        "topology_revisions_get",
        "GET",
        "/api/microgrids/{mg}/topology/revisions/{sub}/",
        "operator",
        _ids(sub="1"),
        {**MG_UNKNOWN, "sub": (404, "REVISION_NOT_FOUND")},
        unknown_sub="99",
    ),
    # -- limits ----------------------------------------------------------------------------------
    Endpoint("limits_list", "GET", "/api/microgrids/{mg}/limits/", "operator", _ids(), MG_UNKNOWN),
    Endpoint(
        "limits_create",
        "POST",
        "/api/microgrids/{mg}/limits/",
        "operator",
        _ids(),
        MG_UNKNOWN,
        wrong_types={"scope": 1, "node_id": ["sb-1"], "limit_kw": "100"},
        huge_number={"scope": "NODE", "node_id": "sb-1", "limit_kw": HUGE},
    ),
    Endpoint(
        "limits_active",
        "GET",
        "/api/microgrids/{mg}/limits/active/",
        "operator",
        _ids(),
        MG_UNKNOWN,
        bad_queries=("at=yesterday", "at=2026-03-02T12:00:00"),
    ),
    Endpoint(
        "limits_get",
        "GET",
        "/api/microgrids/{mg}/limits/{sub}/",
        "operator",
        _ids(sub="LP-1"),
        {**MG_UNKNOWN, "sub": (404, "LIMIT_NOT_FOUND")},
    ),
    Endpoint(
        "limits_update",
        "PUT",
        "/api/microgrids/{mg}/limits/{sub}/",
        "operator",
        _ids(sub="LP-1"),
        {**MG_UNKNOWN, "sub": (404, "LIMIT_NOT_FOUND")},
        wrong_types={"scope": "NODE", "node_id": "sb-1", "limit_kw": True, "schedule": "17-21"},
        huge_number={"scope": "NODE", "node_id": "sb-1", "limit_kw": HUGE},
    ),
    Endpoint(
        "limits_delete",
        "DELETE",
        "/api/microgrids/{mg}/limits/{sub}/",
        "operator",
        _ids(sub="LP-1"),
        {**MG_UNKNOWN, "sub": (404, "LIMIT_NOT_FOUND")},
    ),
    # -- telemetry ---------------------------------------------------------------------------------
    Endpoint(
        "telemetry_ingest",
        "POST",
        "/api/microgrids/{mg}/telemetry/",
        "integration",
        _ids(),
        MG_UNKNOWN,
        wrong_types={"readings": {"asset_id": "SITE"}},
        wrong_types_answer=(422, "TELEMETRY_INVALID"),
        huge_number={
            "readings": [
                {"asset_id": "SITE", "power_kw": HUGE, "observed_at": "2026-03-02T12:00:00+00:00"}
            ]
        },
        huge_number_answer=(422, "TELEMETRY_INVALID"),
    ),
    # -- charger sessions --------------------------------------------------------------------------
    Endpoint(
        "charger_session_get",
        "GET",
        "/api/microgrids/{mg}/chargers/{sub}/session/",
        "operator",
        _ids(sub="CH-01"),
        {**MG_UNKNOWN, "sub": (404, "CHARGER_NOT_FOUND")},
    ),
    Endpoint(
        "charger_session_put",
        "PUT",
        "/api/microgrids/{mg}/chargers/{sub}/session/",
        "integration",
        _ids(sub="CH-01"),
        {**MG_UNKNOWN, "sub": (404, "CHARGER_NOT_FOUND")},
        wrong_types={"departure_at": 5, "energy_needed_kwh": "60"},
        huge_number={"departure_at": "2030-01-01T00:00:00+00:00", "energy_needed_kwh": HUGE},
    ),
    Endpoint(
        "charger_session_delete",
        "DELETE",
        "/api/microgrids/{mg}/chargers/{sub}/session/",
        "integration",
        _ids(sub="CH-01"),
        {**MG_UNKNOWN, "sub": (404, "CHARGER_NOT_FOUND")},
    ),
    # -- operating envelopes ---------------------------------------------------------------------
    Endpoint(
        "operating_envelopes_list",
        "GET",
        "/api/microgrids/{mg}/operating-envelopes/",
        "operator",
        _ids(),
        MG_UNKNOWN,
        bad_queries=("status=ACTIVE,LIVE", "limit=%C2%B2", "limit=0", "at=%00"),
    ),
    Endpoint(
        "operating_envelopes_get",
        "GET",
        "/api/microgrids/{mg}/operating-envelopes/{sub}/",
        "operator",
        _ids(sub="OE-1"),
        {**MG_UNKNOWN, "sub": (404, "ENVELOPE_NOT_FOUND")},
        bad_queries=("at=2026-13-01T00:00:00Z",),
    ),
    Endpoint(
        "operating_envelopes_withdraw",
        "POST",
        "/api/microgrids/{mg}/operating-envelopes/{sub}/withdraw/",
        "support",
        _ids(sub="OE-1"),
        {**MG_UNKNOWN, "sub": (404, "ENVELOPE_NOT_FOUND")},
        wrong_types={"reason": 5},
    ),
    # -- balancing ---------------------------------------------------------------------------------
    Endpoint(
        "rebalance",
        "POST",
        "/api/microgrids/{mg}/rebalance/",
        "operator",
        _ids(),
        MG_UNKNOWN,
        wrong_types={"scope": "sb-1"},
    ),
    Endpoint(
        "setpoints_current",
        "GET",
        "/api/microgrids/{mg}/setpoints/",
        "integration",
        _ids(),
        MG_UNKNOWN,
        bad_queries=("asset_id=%00", "asset_id=a%20b", "asset_id=" + "x" * 65),
    ),
    Endpoint(
        "stations_list", "GET", "/api/microgrids/{mg}/stations/", "operator", _ids(), MG_UNKNOWN
    ),
    Endpoint(
        "cycles_list",
        "GET",
        "/api/microgrids/{mg}/cycles/",
        "operator",
        _ids(),
        MG_UNKNOWN,
        bad_queries=("outcome=FINE", "trigger=%00", "since=soon", "limit=%C2%B2", "limit=1001"),
    ),
    Endpoint(
        "cycles_get",
        "GET",
        "/api/microgrids/{mg}/cycles/{sub}/",
        "operator",
        _ids(sub="<cycle>"),
        {**MG_UNKNOWN, "sub": (404, "CYCLE_NOT_FOUND")},
    ),
    Endpoint(
        "breaches_list",
        "GET",
        "/api/microgrids/{mg}/breaches/",
        "operator",
        _ids(),
        MG_UNKNOWN,
        bad_queries=("status=CLOSED", "node_id=grid%00", "node_id=grid%0A", "limit=%C2%B2"),
    ),
    Endpoint(
        "breaches_get",
        "GET",
        "/api/microgrids/{mg}/breaches/{sub}/",
        "operator",
        _ids(sub="<breach>"),
        {**MG_UNKNOWN, "sub": (404, "BREACH_NOT_FOUND")},
    ),
    # -- capabilities ------------------------------------------------------------------------------
    Endpoint(
        "capabilities_list",
        "GET",
        "/api/microgrids/{mg}/capabilities/",
        "operator",
        _ids(),
        MG_UNKNOWN,
    ),
    Endpoint(
        "capabilities_bind",
        "POST",
        "/api/microgrids/{mg}/capabilities/bindings/",
        "support",
        _ids(),
        MG_UNKNOWN,
        wrong_types={"capability_type": 1, "scope": "MICROGRID", "source_device_id": 7},
    ),
    Endpoint(
        "capabilities_transfer",
        "POST",
        "/api/microgrids/{mg}/capabilities/bindings/transfer/",
        "support",
        _ids(),
        MG_UNKNOWN,
        wrong_types={
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": 3},
            "expected_source_device_id": None,
            "new_source_device_id": ["plc-c"],
        },
    ),
    Endpoint(
        "capabilities_release",
        "POST",
        "/api/microgrids/{mg}/capabilities/bindings/{sub}/release/",
        "support",
        _ids(sub="CB-1"),
        {**MG_UNKNOWN, "sub": (404, "BINDING_NOT_FOUND")},
        wrong_types={"reason": 5},
    ),
    Endpoint(
        "capabilities_event",
        "POST",
        "/api/microgrids/{mg}/capabilities/events/",
        "integration",
        _ids(),
        MG_UNKNOWN,
        wrong_types={
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": "grp-b"},
            "source_device_id": "plc-b",
            "event_ref": 12,
            "state": "AVAILABLE",
            "observed_at": 1767225600,
            "detail": {"note": "a\u0000b"},
        },
    ),
    # -- legacy --------------------------------------------------------------------------------------
    Endpoint(
        "legacy_circuit_get",
        "GET",
        "/api/circuit/{circuit}",
        "integration",
        {"circuit": "CIR-101"},
        {"circuit": (404, "CIRCUIT_NOT_FOUND")},
        legacy=True,
    ),
    Endpoint(
        "legacy_circuit_rebalance_load",
        "POST",
        "/api/circuit/{circuit}/rebalance_load",
        "integration",
        {"circuit": "CIR-101"},
        CIRCUIT_UNRESOLVABLE,
        reads_body=False,
        legacy=True,
    ),
    Endpoint(
        "legacy_circuit_tou_limits_get",
        "GET",
        "/api/circuit/{circuit}/tou_limits",
        "integration",
        {"circuit": "CIR-101"},
        CIRCUIT_UNRESOLVABLE,
        legacy=True,
    ),
    Endpoint(
        "legacy_circuit_tou_limits_set",
        "POST",
        "/api/circuit/{circuit}/tou_limits",
        "integration",
        {"circuit": "CIR-101"},
        CIRCUIT_UNRESOLVABLE,
        wrong_types={
            "tou_limits": [{"start": 1700, "end": "21:00", "days": "MON", "limit_kw": "9"}]
        },
        huge_number={
            "tou_limits": [{"start": "17:00", "end": "21:00", "days": ["MON"], "limit_kw": HUGE}]
        },
        legacy=True,
    ),
    Endpoint(
        "legacy_alias_usage",
        "GET",
        "/api/legacy/alias-usage/",
        "support",
        bad_queries=(
            "client=%00",
            "circuit_id=CIR%00",
            "since=never",
            "limit=%C2%B2",
            "cursor=1",
        ),
    ),
    # -- OSCP 2.0 inbound --------------------------------------------------------------------------
    *(
        Endpoint(
            name,
            method,
            "/oscp/fp/2.0/register",
            "peer",
            wrong_types={"token": 5, "version_url": "2.0"},
            wrong_types_answer=OSCP_INVALID,
            huge_number={
                "token": "cp-token-0123456789",
                "version_url": [{"version": HUGE, "base_url": "https://cp.test"}],
            },
            huge_number_answer=OSCP_INVALID,
        )
        for name, method in (("oscp_register", "POST"), ("oscp_register_update", "PUT"))
    ),
    Endpoint("oscp_unregister", "DELETE", "/oscp/fp/2.0/register", "peer"),
    Endpoint(
        "oscp_handshake",
        "POST",
        "/oscp/fp/2.0/handshake",
        "peer",
        wrong_types={
            "required_behaviour": {"heartbeat_interval": "60", "measurement_configuration": "X"}
        },
        wrong_types_answer=OSCP_INVALID,
        huge_number={
            "required_behaviour": {
                "heartbeat_interval": HUGE,
                "measurement_configuration": ["CONTINUOUS"],
            }
        },
        huge_number_answer=OSCP_INVALID,
    ),
    Endpoint(
        "oscp_heartbeat",
        "POST",
        "/oscp/fp/2.0/heartbeat",
        "peer",
        wrong_types={"offline_mode_at": 1767225600},
        wrong_types_answer=OSCP_INVALID,
    ),
    Endpoint(
        "oscp_update_group_capacity_forecast",
        "POST",
        "/oscp/fp/2.0/update_group_capacity_forecast",
        "peer",
        wrong_types={"group_id": ["GRP-N"], "type": 1, "forecasted_blocks": {}},
        wrong_types_answer=OSCP_INVALID,
        huge_number={
            "group_id": "GRP-N",
            "type": "CONSUMPTION",
            "forecasted_blocks": [
                {
                    "capacity": HUGE,
                    "phase": "ALL",
                    "unit": "KW",
                    "start_time": "2026-03-02T12:00:00+00:00",
                    "end_time": "2026-03-02T13:00:00+00:00",
                }
            ],
        },
        huge_number_answer=OSCP_INVALID,
    ),
]

# Ids no endpoint accepts: a NUL, an encoded slash, a space, a non-ASCII letter, a leading
# hyphen, 65 characters, a trailing newline. They match no route: a plain 404 NOT_FOUND.
ODD_IDS = [
    "MG%00X",
    "MG%2F..%2FX",
    "MG%20X",
    "%C3%BC",
    "-MG",
    "A" * 65,
    "MG.NORTH-1%0A",
]


def _json(body: Any) -> str:
    # 1e400 is a finite-looking JSON number that overflows to infinity when parsed.
    return json.dumps(body, allow_nan=True).replace("Infinity", "1e400")


@dataclass(frozen=True)
class Case:
    endpoint: Endpoint
    label: str
    expected: tuple[int, str]
    url: str
    body: str | bytes | None = None
    reaches_endpoint: bool = True

    @property
    def id(self) -> str:
        return f"{self.endpoint.name}: {self.label}"


def _cases() -> list[Case]:
    cases: list[Case] = []
    for ep in ENDPOINTS:
        url = ep.url()
        if ep.has_body:
            cases += [
                Case(ep, "malformed-json", MALFORMED, url, '{"scope": '),
                Case(ep, "not-an-object", MALFORMED, url, "[1, 2]"),
                Case(ep, "not-utf8", MALFORMED, url, b'{"name": "\xff\xfe"}'),
                Case(ep, "nan-literal", MALFORMED, url, '{"limit_kw": NaN}'),
                Case(ep, "infinity-literal", MALFORMED, url, '{"capacity": Infinity}'),
            ]
            if ep.wrong_types is not None:
                cases.append(
                    Case(ep, "wrong-types", ep.wrong_types_answer, url, _json(ep.wrong_types))
                )
            if ep.huge_number is not None:
                cases.append(
                    Case(
                        ep, "overflowing-number", ep.huge_number_answer, url, _json(ep.huge_number)
                    )
                )
        # The cap holds on every path, whatever the method: refused before any view runs.
        too_big = b'{"pad": "' + b"x" * settings.MAX_REQUEST_BODY_BYTES + b'"}'
        cases.append(
            Case(ep, "too-large", (413, "REQUEST_TOO_LARGE"), url, too_big, reaches_endpoint=False)
        )
        for query in ep.bad_queries:
            cases.append(Case(ep, f"bad-query {query}", FIELD_INVALID, f"{url}?{query}"))
        for name, answer in ep.unknown.items():
            value = ep.unknown_sub if name == "sub" else UNKNOWN
            cases.append(Case(ep, f"unknown-{name}", answer, ep.url(**{name: value})))
        for name in ep.ids:
            for i, odd in enumerate(ODD_IDS):
                cases.append(
                    Case(
                        ep,
                        f"odd-{name}-{i}",
                        NOT_FOUND,
                        ep.url(**{name: odd}),
                        reaches_endpoint=False,
                    )
                )
    return cases


CASES = _cases()


def test_the_table_covers_every_documented_operation():
    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    documented = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert {ep.name for ep in ENDPOINTS} == documented


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[ep.name for ep in ENDPOINTS])
def test_bad_input_gets_the_same_refusal_twice_and_changes_nothing(endpoint, depot, subtests):
    # One setup per endpoint, one subtest per bad variant of it.
    for case in CASES:
        if case.endpoint is endpoint:
            with subtests.test(case.id):
                _check(case, depot)


def _check(case: Case, depot) -> None:
    from legacy_circuit.models import AliasUsage

    ep = case.endpoint
    url = case.url.replace("<cycle>", depot.cycle_id).replace("<breach>", depot.breach_id)
    client = depot.client(ep.role)
    headers = {}
    if ep.role == "peer":
        headers["HTTP_X_REQUEST_ID"] = f"bad-{case.id}"
    before, audit_before = row_counts(), AliasUsage.objects.count()

    answers = []
    for _ in range(2):
        response = client.generic(
            ep.method, url, case.body or "", content_type="application/json", **headers
        )
        body = response.json()
        answers.append((response.status_code, body))
        assert (response.status_code, body.get("code")) == case.expected, body
        assert {"code", "message", "details"} <= set(body), body
        assert set(body) <= {"code", "message", "details", "errors"}, body
        assert isinstance(body["details"], dict)

    assert answers[0] == answers[1], "the same bad input must get the same answer"
    assert row_counts() == before
    audited = 2 if ep.legacy and case.reaches_endpoint else 0
    assert AliasUsage.objects.count() - audit_before == audited


@pytest.mark.parametrize("path", ["/api/no-such-thing/", "/oscp/fp/2.0/no_such_message"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_an_unknown_path_gets_the_json_404_for_every_method_even_with_csrf_checks(path, method):
    # Browsers' and curl's requests are CSRF-checked; the test client skips that unless asked.
    from django.test import Client

    response = Client(enforce_csrf_checks=True).generic(
        method, path, "{}", content_type="application/json"
    )
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": "NOT_FOUND", "message": "Not found", "details": {}}


def test_an_id_with_a_trailing_newline_is_refused_and_nothing_is_created(depot):
    before = row_counts()
    response = depot.client("support").post(
        "/api/microgrids/",
        {
            "microgrid_id": "MG-NEW\n",
            "name": "New",
            "depot": {"depot_id": "DEPOT-NEW", "name": "New depot"},
        },
        format="json",
    )
    assert response.status_code == 422
    assert [(e["code"], e["field"]) for e in response.json()["errors"]] == [
        ("FIELD_INVALID", "microgrid_id")
    ]
    assert row_counts() == before


@pytest.mark.parametrize("detail", ["a\u0000b", {"note\u0000": "x"}, {"deep": ["\u0000"]}])
def test_a_capability_event_detail_with_a_nul_is_refused_not_a_server_error(depot, detail):
    # PostgreSQL's jsonb cannot store a NUL: before this was refused it was a 500 there.
    before = row_counts()
    response = depot.client("integration").post(
        f"/api/microgrids/{MG}/capabilities/events/",
        {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": {"type": "NODE", "node_id": "grp-b"},
            "source_device_id": "plc-b",
            "event_ref": "ev-nul",
            "state": "AVAILABLE",
            "observed_at": "2026-03-02T12:00:00+00:00",
            "detail": detail,
        },
        format="json",
    )
    assert response.status_code == 422
    assert [(e["code"], e["field"]) for e in response.json()["errors"]] == [
        ("FIELD_INVALID", "detail")
    ]
    assert row_counts() == before


def test_a_refusal_that_echoes_a_nul_is_not_kept_for_idempotent_replay(depot):
    # The answer names the unknown field, NUL and all; jsonb could not store it.
    from microgrid.common.models import IdempotencyRecord

    client = depot.client("operator")
    for _ in range(2):
        response = client.post(
            f"/api/microgrids/{MG}/limits/",
            {"scope": "NODE", "node_id": "sb-1", "limit_kw": 100, "bad\u0000field": 1},
            format="json",
            HTTP_IDEMPOTENCY_KEY="key-nul",
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "bad\u0000field"
        assert "Idempotent-Replayed" not in response
    assert not IdempotencyRecord.objects.exists()
