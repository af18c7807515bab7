"""Where bindings and their status are shown: the API list, the microgrid card, the Manage pages.

Every status is labelled with its target scope, so a scoped status never
reads as the status of the whole site.
"""

import pytest
from django.utils import timezone

from microgrid.capabilities.services import capability_binding_release
from tests.capabilities.conftest import MICROGRID, node

LIST = "/api/microgrids/MG.NORTH-1/capabilities/"
CARD = "/api/microgrids/MG.NORTH-1/"
PAGE = "/manage/microgrids/MG.NORTH-1/capabilities/"
CARD_PAGE = "/manage/microgrids/MG.NORTH-1/"


@pytest.fixture
def scoped(microgrid, bind, report):
    """grp-a under plc-a (AVAILABLE, fresh), grp-b under plc-b (UNAVAILABLE), and an ended
    whole-microgrid demand-response binding."""
    now = timezone.now()
    bind("plc-a", node("grp-a"), now=now)
    bind("plc-b", node("grp-b"), now=now)
    bind("aggregator", MICROGRID, "DEMAND_RESPONSE", now=now)
    capability_binding_release(microgrid=microgrid, binding_id="CB-3", now=now)
    report("plc-a", node("grp-a"), "AVAILABLE", event_ref="a-1", observed_at=now, now=now)
    report("plc-b", node("grp-b"), "UNAVAILABLE", event_ref="b-1", observed_at=now, now=now)
    return now


@pytest.mark.django_db
def test_the_list_has_the_spec_shape_with_active_bindings_first(operator_api, scoped):
    response = operator_api.get(LIST)
    assert response.status_code == 200
    bindings = response.json()["bindings"]
    assert [(b["binding_id"], b["active"]) for b in bindings] == [
        ("CB-1", True),
        ("CB-2", True),
        ("CB-3", False),
    ]
    first = bindings[0]
    assert set(first) == {
        "binding_id",
        "capability_type",
        "scope",
        "source_device_id",
        "active",
        "created_at",
        "released_at",
        "latest_status",
    }
    assert first["scope"] == node("grp-a")
    assert first["latest_status"] == {
        "state": "AVAILABLE",
        "observed_at": scoped.isoformat(),
        "event_ref": "a-1",
    }
    assert bindings[1]["latest_status"]["state"] == "UNAVAILABLE"
    assert bindings[2]["scope"] == MICROGRID
    assert bindings[2]["released_at"] is not None
    assert bindings[2]["latest_status"] is None


@pytest.mark.django_db
def test_active_bindings_are_ordered_by_type_then_whole_microgrid_then_tree_order(
    operator_api, microgrid, bind
):
    bind("p-b", node("grp-b"))
    bind("p-a", node("grp-a"))
    bind("bms", MICROGRID, "ENERGY_STORAGE")
    bind("dr-a", node("sb-1"), "DEMAND_RESPONSE")
    bind("dr", node("grid"), "ON_SITE_GENERATION")
    order = [
        (b["capability_type"], b["scope"].get("node_id"))
        for b in operator_api.get(LIST).json()["bindings"]
    ]
    assert order == [
        ("LOAD_MANAGEMENT", "grp-a"),
        ("LOAD_MANAGEMENT", "grp-b"),
        ("ENERGY_STORAGE", None),
        ("DEMAND_RESPONSE", "sb-1"),
        ("ON_SITE_GENERATION", "grid"),
    ]


@pytest.mark.django_db
def test_the_card_shows_each_current_status_with_its_target_scope(operator_api, scoped):
    section = operator_api.get(CARD).json()["capabilities"]
    assert [
        (b["binding_id"], b["scope_label"], b["latest_status"]["state"], b["external_control"])
        for b in section["bindings"]
    ] == [
        ("CB-1", "Microgrid Node Bay A (grp-a)", "AVAILABLE", True),
        ("CB-2", "Microgrid Node Bay B (grp-b)", "UNAVAILABLE", False),
    ]
    assert section["bindings"][0]["scope"] == node("grp-a")
    assert section["ended_binding_count"] == 1


@pytest.mark.django_db
def test_reads_take_the_same_number_of_queries_for_many_bindings(
    operator_api, operator_client, microgrid, bind, report, django_assert_max_num_queries
):
    def add(capability_type, node_id):
        source = f"{capability_type[:4].lower()}-{node_id}"
        bind(source, node(node_id), capability_type)
        for i in range(3):
            report(source, node(node_id), event_ref=f"e{i}", capability_type=capability_type)

    add("LOAD_MANAGEMENT", "grp-a")
    with django_assert_max_num_queries(12) as one:
        operator_api.get(LIST)
    list_queries = len(one.captured_queries)
    with django_assert_max_num_queries(40) as one:
        operator_api.get(CARD)
    card_queries = len(one.captured_queries)
    with django_assert_max_num_queries(40) as one:
        operator_client.get(PAGE)
    page_queries = len(one.captured_queries)
    add("LOAD_MANAGEMENT", "grp-b")
    for capability_type in ("ENERGY_STORAGE", "DEMAND_RESPONSE"):
        for node_id in ("grp-a", "grp-b"):
            add(capability_type, node_id)
    with django_assert_max_num_queries(list_queries):
        response = operator_api.get(LIST)
    assert len(response.json()["bindings"]) == 6
    with django_assert_max_num_queries(card_queries):
        response = operator_api.get(CARD)
    assert len(response.json()["capabilities"]["bindings"]) == 6
    with django_assert_max_num_queries(page_queries):
        response = operator_client.get(PAGE)
    assert len(response.context["views"]) == 6


@pytest.mark.django_db
def test_the_manage_card_labels_every_status_with_its_scope(operator_client, scoped):
    response = operator_client.get(CARD_PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="card-capabilities"' in html
    assert "Microgrid Node Bay A (grp-a)" in html
    assert "Microgrid Node Bay B (grp-b)" in html
    assert "UNAVAILABLE" in html
    assert "under external control" in html
    # The ended whole-microgrid binding is history, not current status.
    assert "aggregator" not in html


@pytest.mark.django_db
def test_the_capabilities_page_shows_bindings_status_per_scope_and_history(operator_client, scoped):
    response = operator_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        'data-testid="capability-status"',
        'data-testid="capability-bindings"',
        'data-testid="capability-events"',
        "Microgrid Node Bay A (grp-a)",
        "Whole microgrid",
        "aggregator",
        "released",
        "a-1",
        "b-1",
        "EXTERNAL_CONTROL",
    ):
        assert text in html, text
    tab = response.context["tabs"]
    assert [t["key"] for t in tab if t["active"]] == ["capabilities"]
    assert any(t["label"] == "Capabilities" and t["url"].endswith("/capabilities/") for t in tab)


@pytest.mark.django_db
def test_the_event_history_can_be_narrowed_to_one_binding(operator_client, scoped):
    html = operator_client.get(PAGE + "?binding=CB-2").content.decode()
    history = html[html.index('data-testid="capability-events"') :]
    assert "b-1" in history
    assert 'data-event-ref="a-1"' not in history


@pytest.mark.django_db
def test_the_capabilities_page_of_an_unknown_microgrid_is_not_found(operator_client, microgrid):
    response = operator_client.get("/manage/microgrids/MG.NOPE/capabilities/")
    assert response.status_code == 404
    assert "Microgrid not found" in response.content.decode()


@pytest.mark.django_db
def test_an_empty_capabilities_page_says_the_product_controls_everything(
    operator_client, microgrid
):
    html = operator_client.get(PAGE).content.decode()
    assert "No external source is bound" in html


@pytest.mark.django_db
def test_support_sees_the_status_events_in_admin(support_client, scoped):
    response = support_client.get("/admin/capabilities/capabilitystatusevent/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "a-1" in html and "b-1" in html
    assert "Microgrid Node grp-b" in html
