"""Manage pages: active and historical envelopes with source metadata and history."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.envelopes.models import OperatingEnvelope

from .conftest import block, forecast_body

H = timedelta(hours=1)
PAGE = "/manage/microgrids/MG.NORTH-1/envelopes/"


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def envelopes(bound, receive, now, legacy_record):
    legacy_record("CIR-101", 350, "NODE", "sb-1")
    receive(forecast_body(group_id="GRP-A", blocks=[block(now - H, now + H, 200)]), now=now - H)
    receive(forecast_body(group_id="GRP-A", blocks=[block(now - H, now + H, 180)]), now=now)
    receive(forecast_body(blocks=[block(now + H, now + 2 * H, 0)]), now=now)
    receive(forecast_body(type="OPTIMUM", blocks=[block(now - H, now + H, 30)]), now=now)
    return bound


def section(html: str, testid: str) -> str:
    match = re.search(
        rf'<section class="card" data-testid="{testid}"[^>]*>(.*?)</section>', html, re.S
    )
    assert match, testid
    return match.group(1)


@pytest.mark.django_db
def test_the_list_page_separates_active_pending_and_history(envelopes, operator_client):
    response = operator_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    active = section(html, "envelopes-active")
    assert 'data-envelope-id="OE-2"' in active and 'data-envelope-id="OE-4"' in active
    assert "ENFORCED" in active and "OPTIMUM_SHOWN" in active
    assert "180 kW" in active
    pending = section(html, "envelopes-pending")
    assert 'data-envelope-id="OE-3"' in pending and "pause" in pending
    history = section(html, "envelopes-history")
    assert 'data-envelope-id="OE-1"' in history and "SUPERSEDED" in history
    peers = section(html, "oscp-peers")
    assert "dso-north" in peers and "GRP-A" in peers and "online" in peers
    # the legacy value is shown beside the envelope it follows
    assert re.search(r'data-envelope-id="OE-2".*?CIR-101.*?180 kW', active, re.S)


@pytest.mark.django_db
def test_the_history_can_be_filtered_by_status(envelopes, operator_client):
    html = operator_client.get(PAGE, {"status": "PENDING"}).content.decode()
    history = section(html, "envelopes-history")
    assert 'data-envelope-id="OE-3"' in history
    assert 'data-envelope-id="OE-1"' not in history
    bad = operator_client.get(PAGE, {"status": "SOMETIME"})
    assert bad.status_code == 200
    assert "FIELD_INVALID" in bad.content.decode()


@pytest.mark.django_db
def test_the_detail_page_shows_source_metadata_and_history(envelopes, operator_client):
    html = operator_client.get(PAGE + "OE-1/").content.decode()
    source = section(html, "envelope-source")
    envelope = OperatingEnvelope.objects.select_related("message").get(envelope_id="OE-1")
    assert envelope.message.request_id in source
    assert "corr-1" in source and "GRP-A" in source and "dso-north" in source
    assert "UPDATE_GROUP_CAPACITY_FORECAST" in source
    detail = section(html, "envelope-detail")
    assert "SUPERSEDED" in detail and 'href="../OE-2/"' in detail
    timeline = section(html, "envelope-history")
    assert [m for m in re.findall(r'data-change="(\w+)"', timeline)] == ["RECEIVED", "SUPERSEDED"]
    # operators read, they do not withdraw
    assert "withdraw-form" not in html


@pytest.mark.django_db
def test_support_staff_withdraw_from_the_detail_page(envelopes, support_client):
    page = support_client.get(PAGE + "OE-2/").content.decode()
    assert 'data-testid="withdraw-form"' in page
    response = support_client.post(PAGE + "OE-2/withdraw/", {"reason": "grid fault over"})
    assert response.status_code == 302
    envelope = OperatingEnvelope.objects.get(envelope_id="OE-2")
    assert (envelope.state, envelope.withdraw_reason) == ("WITHDRAWN", "grid fault over")
    followed = support_client.get(response["Location"]).content.decode()
    assert "withdrawn" in followed and "WITHDRAWN" in followed
    # a second try says why it cannot, and changes nothing
    again = support_client.post(PAGE + "OE-2/withdraw/", follow=True).content.decode()
    assert "ENVELOPE_NOT_WITHDRAWABLE" in again


@pytest.mark.django_db
def test_operators_cannot_withdraw_from_the_page(envelopes, operator_client):
    response = operator_client.post(PAGE + "OE-2/withdraw/")
    assert response.status_code == 403
    assert OperatingEnvelope.objects.get(envelope_id="OE-2").state == "RECEIVED"


@pytest.mark.django_db
def test_an_unknown_envelope_shows_the_not_found_page(envelopes, operator_client):
    response = operator_client.get(PAGE + "OE-404/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Operating envelope not found" in html
    assert "ENVELOPE_NOT_FOUND" in html


@pytest.mark.django_db
def test_the_microgrid_card_page_lists_the_active_envelopes(envelopes, operator_client):
    html = operator_client.get("/manage/microgrids/MG.NORTH-1/").content.decode()
    card = section(html, "card-envelopes")
    assert 'data-envelope-id="OE-2"' in card and 'data-envelope-id="OE-3"' not in card
    assert 'href="/manage/microgrids/MG.NORTH-1/envelopes/"' in html  # the tab


@pytest.mark.django_db
def test_the_list_page_reads_in_a_constant_number_of_queries(
    bound, receive, operator_client, now, django_assert_max_num_queries
):
    for i in range(20):
        start = now + (i - 10) * H
        receive(forecast_body(group_id=("GRP-N", "GRP-A")[i % 2], blocks=[block(start, start + H)]))
    with django_assert_max_num_queries(14):
        response = operator_client.get(PAGE)
    assert response.content.decode().count("data-envelope-id=") == 20


@pytest.mark.django_db
def test_a_part_left_by_a_partial_revision_links_to_its_origin(
    bound, receive, now, operator_client
):
    receive(forecast_body(blocks=[block(now - H, now + H, 200)]), now=now - H)  # OE-1
    receive(forecast_body(blocks=[block(now + H / 2, now + H, 90)]), now=now)  # OE-2, part OE-3
    part = operator_client.get(f"{PAGE}OE-3/").content.decode()
    assert 'data-testid="split-from"' in part and 'href="../OE-1/"' in part
    origin = operator_client.get(f"{PAGE}OE-1/").content.decode()
    assert re.search(r'data-testid="parts">.*OE-3', origin)
