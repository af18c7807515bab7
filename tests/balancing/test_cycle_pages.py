"""Manage cycles page: paging, time range in the depot's clock, charts over hours, MANUAL rebalance."""

from datetime import timedelta

import pytest
from django.utils import timezone

from balancing.models import Cycle
from balancing.services import cycle_request, trigger_of

PAGE = "/manage/microgrids/MG.NORTH-1/cycles/"


def run_at(microgrid, when):
    return cycle_request(microgrid=microgrid, trigger=trigger_of("API"), now=lambda: when).cycle


@pytest.mark.django_db
def test_rebalance_now_records_a_manual_trigger_with_the_user_and_confirms(
    client, make_user, microgrid
):
    client.force_login(make_user("operator", "olga"))
    response = client.post(PAGE + "rebalance/", follow=True)
    cycle = Cycle.objects.get()
    assert cycle.trigger_type == "MANUAL"
    assert list(cycle.triggers.values_list("trigger", flat=True)) == [
        {"type": "MANUAL", "user": "olga"}
    ]
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == PAGE
    assert 'data-testid="rebalance-result"' in html
    assert f'href="{PAGE}{cycle.cycle_id}/"' in html and cycle.outcome in html


@pytest.mark.django_db
def test_the_list_pages_and_filters_by_time_in_the_depots_clock(operator_client, microgrid):
    start = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    for i in range(60):
        run_at(microgrid, start + timedelta(minutes=2 * i))
    first = operator_client.get(PAGE).content.decode()
    listed = first.split('data-testid="cycle-list"')[1].split("</table>")[0]
    assert listed.count("data-cycle-id=") == 50
    assert 'rel="next"' in first
    second = operator_client.get(PAGE + "?page=2").content.decode()
    assert second.split('data-testid="cycle-list"')[1].count("data-cycle-id=") == 10
    assert "#1<" in second and 'rel="prev"' in second
    # 10 minutes of cycles, the bounds given in Amsterdam time as a datetime-local input sends them
    local = (start + timedelta(minutes=20)).astimezone(microgrid_zone())
    since = local.strftime("%Y-%m-%dT%H:%M:%S")
    until = (local + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    window = operator_client.get(PAGE, {"since": since, "until": until}).content.decode()
    assert (
        window.split('data-testid="cycle-list"')[1].split("</table>")[0].count("data-cycle-id=")
        == 5
    )
    bad = operator_client.get(PAGE, {"since": "yesterday"}).content.decode()
    assert "FIELD_INVALID" in bad and "since" in bad


def microgrid_zone():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Amsterdam")
