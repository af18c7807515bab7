"""Support staff fix limit policies in admin; every write goes through the services."""

import pytest

from microgrid.limits.api.serializers import policy_input
from microgrid.limits.models import LimitPolicy, ScheduleActivation
from microgrid.limits.services import limit_policy_create

ADD = "/admin/limits/limitpolicy/add/"


def change_url(policy):
    return f"/admin/limits/limitpolicy/{policy.pk}/change/"


def form(microgrid, **fields):
    data = {
        "microgrid": microgrid.pk,
        "scope": "NODE",
        "node_id": "",
        "limit_kw": "",
        "source": "MANUAL",
        "start": "",
        "end": "",
    }
    data.update(fields)
    return data


@pytest.mark.django_db
def test_support_creates_a_node_limit_in_admin(support_client, microgrid):
    response = support_client.post(ADD, form(microgrid, node_id="sb-1", limit_kw="400"))
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = LimitPolicy.objects.get()
    assert (policy.policy_id, policy.node.node_id, policy.limit_kw) == ("LP-1", "sb-1", 400.0)
    assert policy.history.get().history_user.username == "support-user"


@pytest.mark.django_db
def test_admin_refuses_a_cap_above_the_rating_on_the_limit_field(support_client, microgrid):
    response = support_client.post(ADD, form(microgrid, node_id="sb-1", limit_kw="400.5"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "LIMIT_EXCEEDS_PHYSICAL_RATING" in errors["limit_kw"][0]
    assert "sb-1" in errors["limit_kw"][0]
    assert LimitPolicy.objects.count() == 0


@pytest.mark.django_db
def test_admin_refuses_an_overlapping_schedule_and_a_bad_time(support_client, microgrid):
    limit_policy_create(
        microgrid=microgrid,
        **policy_input(
            {
                "scope": "MICROGRID",
                "limit_kw": 600,
                "schedule": {"days": ["MON"], "start": "17:00", "end": "21:00"},
            }
        ),
    )
    response = support_client.post(
        ADD,
        form(
            microgrid, scope="MICROGRID", limit_kw="500", days=["MON"], start="20:00", end="22:00"
        ),
    )
    assert "LIMIT_SCHEDULE_OVERLAP" in str(response.context["adminform"].form.errors)
    response = support_client.post(
        ADD,
        form(microgrid, scope="MICROGRID", limit_kw="500", days=["TUE"], start="7pm", end="22:00"),
    )
    assert "FIELD_INVALID" in response.context["adminform"].form.errors["start"][0]
    assert LimitPolicy.objects.count() == 1


@pytest.mark.django_db
def test_support_fixes_a_policy_in_admin_and_the_history_shows_it(support_client, microgrid):
    policy = limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 300})
    )
    page = support_client.get(change_url(policy)).content.decode()
    assert 'value="sb-1"' in page
    response = support_client.post(
        change_url(policy),
        form(microgrid, node_id="sb-1", limit_kw="250", days=["SAT"], start="22:00", end="06:00"),
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.policy_id, policy.limit_kw, policy.schedule.as_dict()) == (
        "LP-1",
        250.0,
        {"days": ["SAT"], "start": "22:00", "end": "06:00"},
    )
    assert support_client.get(change_url(policy).replace("change/", "history/")).status_code == 200
    assert policy.history.count() == 2


@pytest.mark.django_db
def test_deleting_in_admin_goes_through_the_service(support_client, microgrid):
    policy = limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 300})
    )
    response = support_client.post(
        change_url(policy).replace("change/", "delete/"), {"post": "yes"}
    )
    assert response.status_code == 302
    assert LimitPolicy.objects.count() == 0
    assert LimitPolicy.history.filter(history_type="-").count() == 1


@pytest.mark.django_db
def test_schedule_activations_are_read_only_in_admin(support_client, microgrid):
    assert support_client.get("/admin/limits/scheduleactivation/").status_code == 200
    assert support_client.get("/admin/limits/scheduleactivation/add/").status_code == 403
    assert ScheduleActivation.objects.count() == 0


@pytest.mark.django_db
def test_operators_cannot_open_admin(operator_client, microgrid):
    assert operator_client.get("/admin/limits/limitpolicy/").status_code == 302
