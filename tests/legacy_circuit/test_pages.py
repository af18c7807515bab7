"""The legacy Manage pages: circuits with their aliases and capacities, and the usage summary."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

CIRCUITS = "/manage/legacy/circuits/"
USAGE = "/manage/legacy/alias-usage/"


def circuit_row(html: str, circuit_id: str) -> str:
    match = re.search(rf'<tr data-circuit-id="{re.escape(circuit_id)}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {circuit_id}"
    return match.group(1)


def test_the_circuits_page_shows_each_circuit_its_aliases_and_why_it_does_not_resolve(
    operator_client, circuits
):
    response = operator_client.get(CIRCUITS)
    assert response.status_code == 200
    html = response.content.decode()

    assert 'data-testid="circuit-count">8<' in html
    assert 'data-testid="unresolvable-count">4<' in html
    resolves = circuit_row(html, "CIR-101")
    assert "resolves" in resolves and "NODE sb-1" in resolves and "not resolvable" not in resolves
    ambiguous = circuit_row(html, "CIR-103")
    assert "AMBIGUOUS" in ambiguous and "More than one active alias" in ambiguous
    assert ambiguous.count('data-problem="AMBIGUOUS"') == 2
    assert "NO_ALIAS" in circuit_row(html, "CIR-104")
    missing = circuit_row(html, "CIR-105")
    assert "TARGET_MISSING" in missing and "Its target does not exist" in missing
    retired = circuit_row(html, "CIR-106")
    assert "NO_ALIAS" in retired and 'data-alias-active="false"' in retired
    assert "ASSET CH-01" in circuit_row(html, "CIR-102")


def test_the_circuits_page_shows_available_against_configured_capacity(operator_client, circuits):
    from legacy_circuit.models import LegacyCircuit

    LegacyCircuit.objects.filter(circuit_id="CIR-101").update(available_capacity_kw=120.0)

    row = circuit_row(operator_client.get(CIRCUITS).content.decode(), "CIR-101")

    assert re.search(r'data-testid="configured-capacity">350.0 kW<', row)
    assert re.search(r'data-testid="available-capacity">120.0 kW', row)
    assert "reduced by an operating envelope" in row


def test_the_circuits_page_reads_in_a_constant_number_of_queries(
    operator_client, circuits, microgrid, django_assert_max_num_queries
):
    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_save, legacy_circuit_save

    operator_client.get(CIRCUITS)  # warm the session
    with django_assert_max_num_queries(10) as few:
        operator_client.get(CIRCUITS)
    for n in range(30):
        circuit, _ = legacy_circuit_save(
            circuit_id=f"CIR-X{n}", name=f"Extra {n}", configured_capacity_kw=10
        )
        circuit_alias_save(
            alias=CircuitAlias(
                circuit=circuit, microgrid=microgrid, scope_type="NODE", node_id="grp-a"
            )
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        operator_client.get(CIRCUITS)


def test_the_usage_page_summarises_calls_per_client_and_circuit(
    operator_client, integration_api, circuits
):
    integration_api.post("/api/circuit/CIR-101/rebalance_load")
    integration_api.post("/api/circuit/CIR-101/rebalance_load")
    integration_api.post("/api/circuit/CIR-103/rebalance_load")

    html = operator_client.get(USAGE).content.decode()

    row = re.search(
        r'<tr data-client="integration-user" data-circuit-id="CIR-101">(.*?)</tr>', html, re.S
    ).group(1)
    assert 'data-testid="calls">2<' in row and 'data-testid="failures">0<' in row
    row = re.search(
        r'<tr data-client="integration-user" data-circuit-id="CIR-103">(.*?)</tr>', html, re.S
    ).group(1)
    assert 'data-testid="calls">1<' in row and ">1</span>" in row
    assert "CIRCUIT_ALIAS_NOT_RESOLVABLE" in html and "AMBIGUOUS" in html
    # A resolved call links to its canonical cycle.
    assert "/manage/microgrids/MG.NORTH-1/cycles/" in html


def test_the_usage_page_filters_and_shows_a_bad_filter(operator_client, integration_api, circuits):
    integration_api.post("/api/circuit/CIR-101/rebalance_load")
    integration_api.post("/api/circuit/CIR-103/rebalance_load")

    filtered = operator_client.get(USAGE, {"circuit_id": "CIR-103"}).content.decode()
    assert 'data-circuit-id="CIR-103"' in filtered
    assert 'data-circuit-id="CIR-101"' not in filtered

    bad = operator_client.get(USAGE, {"since": "last week"})
    assert bad.status_code == 200
    assert "FIELD_INVALID" in bad.content.decode()


def test_legacy_pages_link_each_other_and_canonical_pages_only_say_legacy(
    operator_client, circuits
):
    legacy = operator_client.get(CIRCUITS).content.decode()
    assert 'href="/manage/legacy/alias-usage/"' in legacy
    canonical = operator_client.get("/manage/microgrids/").content.decode()
    assert 'href="/manage/legacy/">Legacy</a>' in canonical
    assert "circuit" not in canonical.lower()
    assert operator_client.get("/manage/legacy/").url == CIRCUITS


def test_support_sees_the_pages_and_integration_clients_do_not(
    support_client, client, make_user, circuits
):
    assert support_client.get(CIRCUITS).status_code == 200
    assert support_client.get(USAGE).status_code == 200
    client.force_login(make_user("integration"))
    assert client.get(CIRCUITS).status_code == 403
    assert client.get(USAGE).status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client, circuits):
    response = client.get(CIRCUITS)
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_empty_pages_say_so(operator_client, db):
    assert "No legacy circuits" in operator_client.get(CIRCUITS).content.decode()
    assert "No legacy calls" in operator_client.get(USAGE).content.decode()


@pytest.mark.django_db
def test_legacy_pages_keep_the_apps_top_navigation_and_one_page_per_url(operator_client):
    top = operator_client.get("/manage/microgrids/").content.decode()
    nav = top.split('class="app-nav"')[1].split("</nav>")[0]
    for url in ("/manage/legacy/circuits/", "/manage/legacy/alias-usage/"):
        html = operator_client.get(url).content.decode()
        legacy_nav = html.split('class="app-nav"')[1].split("</nav>")[0]
        assert legacy_nav.replace(' aria-current="page"', "") == nav
        assert 'data-testid="legacy-tabs"' in html
    index = operator_client.get("/manage/legacy/")
    assert index.status_code == 302 and index["Location"] == "/manage/legacy/circuits/"
