"""The Manage limits pages through Django's client: list, create, edit, delete, inline feedback."""

import re

import pytest

from microgrid.limits.api.serializers import policy_input
from microgrid.limits.models import LimitPolicy
from microgrid.limits.services import limit_policy_create

URL = "/manage/microgrids/MG.NORTH-1/limits/"
LEGACY_TERMS = re.compile(r"circuit", re.IGNORECASE)


def html_of(response) -> str:
    return response.content.decode()


def row(html: str, attr: str, value: str) -> str:
    """The <tr> of a table whose data attribute has this value."""
    match = re.search(rf'<tr [^>]*{attr}="{re.escape(value)}".*?</tr>', html, re.S)
    assert match, f"no row {attr}={value}"
    return match.group(0)


def counts():
    return (LimitPolicy.objects.count(), LimitPolicy.history.count())


@pytest.mark.django_db
def test_the_limits_tab_needs_an_operator_or_support_login(client, make_user, microgrid):
    assert client.get(URL).status_code == 302
    client.force_login(make_user("integration"))
    assert client.get(URL).status_code == 403


@pytest.mark.django_db
def test_the_page_shows_every_nodes_rating_as_its_limit_before_any_policy(
    operator_client, microgrid
):
    response = operator_client.get(URL)
    assert response.status_code == 200
    html = html_of(response)
    assert "Node Limit" in html and "Microgrid limit" in html
    assert '<a href="/manage/microgrids/MG.NORTH-1/limits/" class="active">Limits</a>' in html
    table = html.split('data-testid="effective-limits"')[1].split("</section>")[0]
    assert re.findall(r'data-node-id="([^"]+)"', table) == ["grid", "sb-1", "grp-a", "grp-b"]
    assert "800 kW" in row(table, "data-node-id", "grid")
    assert "PHYSICAL_RATING" in row(table, "data-node-id", "grid")


@pytest.mark.django_db
def test_creating_a_node_limit_shows_it_exactly_after_reload(operator_client, microgrid):
    response = operator_client.post(
        URL, {"scope": "NODE", "node_id": "sb-1", "limit_kw": "349.999"}
    )
    assert response.status_code == 302 and response["Location"] == URL
    html = html_of(operator_client.get(URL))
    assert "Saved Node Limit LP-1 on Microgrid Node sb-1: 349.999 kW." in html
    policy_row = row(html, "data-policy-id", "LP-1")
    assert "349.999 kW" in policy_row and "Node Limit" in policy_row and "sb-1" in policy_row
    assert "MANUAL" in policy_row
    effective = row(html.split('data-testid="effective-limits"')[1], "data-node-id", "sb-1")
    assert "349.999 kW" in effective and "NODE_LIMIT" in effective
    assert LimitPolicy.objects.get(policy_id="LP-1").limit_kw == 349.999
    # reload again: the value is still shown exactly
    assert "349.999 kW" in row(html_of(operator_client.get(URL)), "data-policy-id", "LP-1")


@pytest.mark.django_db
def test_a_cap_equal_to_the_rating_is_accepted(operator_client, microgrid):
    response = operator_client.post(URL, {"scope": "NODE", "node_id": "grp-a", "limit_kw": "250"})
    assert response.status_code == 302
    assert "250 kW" in row(html_of(operator_client.get(URL)), "data-policy-id", "LP-1")


@pytest.mark.django_db
def test_a_cap_above_the_rating_is_rejected_inline_naming_node_and_field(
    operator_client, microgrid
):
    response = operator_client.post(URL, {"scope": "NODE", "node_id": "grp-a", "limit_kw": "260"})
    assert response.status_code == 422
    html = html_of(response)
    assert 'data-testid="limit-errors"' in html
    field_error = re.search(
        r'<p class="field-error" id="limit_kw-error"[^>]*>.*?</p>', html, re.S
    ).group(0)
    assert 'data-node-id="grp-a"' in field_error
    assert "LIMIT_EXCEEDS_PHYSICAL_RATING" in field_error
    assert "grp-a" in field_error and "limit_kw" in field_error and "250 kW" in field_error
    assert (
        'name="limit_kw" type="text" inputmode="decimal" value="260" class="invalid" aria-invalid="true"'
        in html
    )
    assert '<option value="grp-a" selected>' in html  # the form keeps what was entered
    assert counts() == (0, 0)
    assert "data-policy-id=" not in html_of(operator_client.get(URL))


@pytest.mark.django_db
def test_a_microgrid_limit_above_the_roots_rating_names_the_root(operator_client, microgrid):
    response = operator_client.post(
        URL, {"scope": "MICROGRID", "node_id": "sb-1", "limit_kw": "900"}
    )
    assert response.status_code == 422
    html = html_of(response)
    assert re.search(
        r'data-code="LIMIT_EXCEEDS_PHYSICAL_RATING" data-node-id="grid" data-field="limit_kw"', html
    )
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_bad_form_input_is_field_invalid_next_to_each_field(operator_client, microgrid):
    response = operator_client.post(
        URL, {"scope": "NODE", "node_id": "", "limit_kw": "lots", "days": ["MON"], "start": "18:00"}
    )
    assert response.status_code == 422
    html = html_of(response)
    for field in ("node_id", "limit_kw", "schedule.end"):
        assert re.search(
            rf'<p class="field-error"[^>]*data-field="{re.escape(field)}"[^>]*><span class="code">FIELD_INVALID</span>',
            html,
        ), field
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_a_scheduled_limit_is_created_and_shown_with_its_schedule(operator_client, microgrid):
    response = operator_client.post(
        URL,
        {
            "scope": "MICROGRID",
            "limit_kw": "600",
            "days": ["FRI", "MON"],
            "start": "22:00",
            "end": "06:00",
        },
    )
    assert response.status_code == 302
    policy_row = row(html_of(operator_client.get(URL)), "data-policy-id", "LP-1")
    assert "Microgrid limit" in policy_row
    assert "MON, FRI 22:00–06:00" in policy_row and "ends the next day" in policy_row


@pytest.mark.django_db
def test_an_overlapping_schedule_is_rejected_on_the_schedule(operator_client, microgrid):
    operator_client.post(
        URL,
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": "200",
            "days": ["MON"],
            "start": "17:00",
            "end": "21:00",
        },
    )
    response = operator_client.post(
        URL,
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": "150",
            "days": ["MON"],
            "start": "20:00",
            "end": "22:00",
        },
    )
    assert response.status_code == 422
    assert re.search(
        r'data-field="schedule"><span class="code">LIMIT_SCHEDULE_OVERLAP</span>', html_of(response)
    )
    assert LimitPolicy.objects.count() == 1


@pytest.mark.django_db
def test_a_second_non_scheduled_cap_is_a_visible_conflict(operator_client, microgrid):
    operator_client.post(URL, {"scope": "MICROGRID", "limit_kw": "700"})
    response = operator_client.post(URL, {"scope": "MICROGRID", "limit_kw": "650"})
    assert response.status_code == 409
    assert "LIMIT_ALREADY_EXISTS" in html_of(response)
    assert LimitPolicy.objects.count() == 1


@pytest.mark.django_db
def test_the_page_shows_what_is_active_and_what_applies_when_no_schedule_is(
    operator_client, microgrid
):
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    )
    limit_policy_create(
        microgrid=microgrid,
        **policy_input(
            {
                "scope": "NODE",
                "node_id": "sb-1",
                "limit_kw": 200,
                "schedule": {"days": ["MON"], "start": "17:00", "end": "21:00"},
            }
        ),
    )
    evening = html_of(operator_client.get(URL, {"at": "2026-03-02T18:00:00+01:00"}))
    assert "Mon 2026-03-02 18:00 CET" in evening
    node = row(evening.split('data-testid="effective-limits"')[1], "data-node-id", "sb-1")
    assert "<strong>200 kW</strong>" in node and "TOU_LIMIT" in node
    assert re.search(
        r'data-testid="fallback-limit">350 kW <span class="code">NODE_LIMIT</span>', node
    )
    assert "active" in row(evening, "data-policy-id", "LP-2")
    assert "replaced by LP-2" in row(evening, "data-policy-id", "LP-1")
    noon = html_of(operator_client.get(URL, {"at": "2026-03-02T12:00:00+01:00"}))
    node = row(noon.split('data-testid="effective-limits"')[1], "data-node-id", "sb-1")
    assert "<strong>350 kW</strong>" in node and "NODE_LIMIT" in node
    assert "inactive" in row(noon, "data-policy-id", "LP-2")
    assert "applies" in row(noon, "data-policy-id", "LP-1")


@pytest.mark.django_db
def test_editing_a_limit_keeps_its_id_and_shows_the_new_value(operator_client, microgrid):
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    )
    edit = html_of(operator_client.get(URL + "LP-1/"))
    assert 'value="350"' in edit and '<option value="sb-1" selected>' in edit
    response = operator_client.post(
        URL + "LP-1/", {"scope": "NODE", "node_id": "sb-1", "limit_kw": "300.5"}
    )
    assert response.status_code == 302
    assert "300.5 kW" in row(html_of(operator_client.get(URL)), "data-policy-id", "LP-1")
    history = html_of(operator_client.get(URL + "LP-1/")).split('data-testid="limit-history"')[1]
    assert "changed" in history and "created" in history and "operator-user" in history


@pytest.mark.django_db
def test_an_edit_above_the_rating_is_rejected_and_changes_nothing(operator_client, microgrid):
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    )
    before = counts()
    response = operator_client.post(
        URL + "LP-1/", {"scope": "NODE", "node_id": "sb-1", "limit_kw": "401"}
    )
    assert response.status_code == 422
    assert "LIMIT_EXCEEDS_PHYSICAL_RATING" in html_of(response)
    assert counts() == before
    assert LimitPolicy.objects.get(policy_id="LP-1").limit_kw == 350


@pytest.mark.django_db
def test_deleting_a_limit_asks_first_then_removes_it_from_the_page(operator_client, microgrid):
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "MICROGRID", "limit_kw": 700})
    )
    listing = html_of(operator_client.get(URL))
    assert 'href="LP-1/delete/" data-testid="limit-delete"' in listing  # a link, not a POST
    confirm = operator_client.get(URL + "LP-1/delete/")
    assert confirm.status_code == 200
    assert 'data-testid="limit-delete-confirm"' in html_of(confirm)
    assert "Delete Microgrid limit LP-1" in html_of(confirm)
    assert LimitPolicy.objects.filter(policy_id="LP-1").exists()  # asking deleted nothing
    response = operator_client.post(URL + "LP-1/delete/")
    assert response.status_code == 302
    html = html_of(operator_client.get(URL))
    assert "Deleted Microgrid limit LP-1" in html
    assert 'data-policy-id="LP-1"' not in html


@pytest.mark.django_db
def test_unknown_microgrid_and_policy_pages_are_not_found(operator_client, microgrid):
    response = operator_client.get("/manage/microgrids/NOPE/limits/")
    assert response.status_code == 404 and "Microgrid not found" in html_of(response)
    response = operator_client.get(URL + "LP-9/")
    assert response.status_code == 404 and "LIMIT_NOT_FOUND" in html_of(response)
    assert operator_client.post(URL + "LP-9/delete/").status_code == 404


@pytest.mark.django_db
def test_the_limits_pages_never_say_circuit(operator_client, microgrid):
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    )
    for url in (URL, URL + "LP-1/", "/manage/microgrids/MG.NORTH-1/"):
        assert not LEGACY_TERMS.search(html_of(operator_client.get(url))), url


@pytest.mark.django_db
def test_the_limits_page_reads_in_a_constant_number_of_queries(
    operator_client, microgrid, django_assert_max_num_queries
):
    for node in ("grid", "sb-1", "grp-a", "grp-b"):
        limit_policy_create(
            microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": node, "limit_kw": 100})
        )
    with django_assert_max_num_queries(10):
        assert operator_client.get(URL).status_code == 200


@pytest.mark.django_db
def test_the_card_page_shows_the_roots_limit_and_the_policy_count(operator_client, microgrid):
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "MICROGRID", "limit_kw": 650})
    )
    html = html_of(operator_client.get("/manage/microgrids/MG.NORTH-1/"))
    section = html.split('data-testid="card-limits"')[1].split("</section>")[0]
    assert "650 kW" in section and "MICROGRID_LIMIT" in section and "1" in section


@pytest.mark.django_db
def test_an_empty_microgrid_offers_no_form_and_says_why(operator_client, empty_microgrid):
    html = html_of(operator_client.get(URL))
    assert "no Microgrid Nodes yet" in html
    assert 'data-testid="limit-form"' not in html


@pytest.mark.django_db
def test_recorded_schedule_starts_and_ends_are_listed_in_depot_time(operator_client, microgrid):
    from datetime import UTC, datetime

    from microgrid.limits.services import schedule_transitions_record

    policy = limit_policy_create(
        microgrid=microgrid,
        **policy_input(
            {
                "scope": "NODE",
                "node_id": "sb-1",
                "limit_kw": 200,
                "schedule": {"days": ["MON"], "start": "17:00", "end": "21:00"},
            }
        ),
    )
    LimitPolicy.objects.filter(pk=policy.pk).update(updated_at=datetime(2026, 3, 1, tzinfo=UTC))
    schedule_transitions_record(now=datetime(2026, 3, 2, 15, 59, tzinfo=UTC))
    schedule_transitions_record(now=datetime(2026, 3, 2, 16, 0, tzinfo=UTC))
    section = html_of(operator_client.get(URL)).split('data-testid="schedule-activations"')[1]
    assert "Mon 2026-03-02 17:00 CET" in section and "START" in section and "sb-1" in section
