"""Support staff see and fix peers, bindings and envelopes in admin, through the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.envelopes.models import OperatingEnvelope, OscpGroupBinding, OscpPeer

from .conftest import block, forecast_body

H = timedelta(hours=1)
NO_INLINES = {"groups-TOTAL_FORMS": "0", "groups-INITIAL_FORMS": "0"}


@pytest.mark.django_db
def test_every_envelope_admin_page_opens_for_support(bound, receive, support_client):
    now = timezone.now()
    receive(forecast_body(blocks=[block(now - H, now + H)]), now=now)
    envelope = OperatingEnvelope.objects.get()
    for url in (
        "/admin/envelopes/oscppeer/",
        f"/admin/envelopes/oscppeer/{envelope.peer_id}/change/",
        "/admin/envelopes/oscpgroupbinding/",
        "/admin/envelopes/oscpgroupbinding/add/",
        "/admin/envelopes/operatingenvelope/",
        f"/admin/envelopes/operatingenvelope/{envelope.pk}/change/",
        f"/admin/envelopes/operatingenvelope/{envelope.pk}/history/",
        "/admin/envelopes/oscpmessage/",
        "/admin/envelopes/envelopetransition/",
        "/admin/envelopes/peermodechange/",
    ):
        assert support_client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_support_adds_a_peer_whose_token_is_stored_hashed(db, support_client, oscp_client):
    data = {"name": "dso-west", "heartbeat_interval_s": "30", "active": "on",
            "new_token": "west-token-0123456789", **NO_INLINES}  # fmt: skip
    response = support_client.post("/admin/envelopes/oscppeer/add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    peer = OscpPeer.objects.get(name="dso-west")
    assert (peer.heartbeat_interval_s, peer.token_prefix) == (30, "west-tok")
    assert peer.history.get().history_user.username == "support-user"
    response = oscp_client(
        "/oscp/fp/2.0/heartbeat", {"offline_mode_at": timezone.now().isoformat()},
        token="west-token-0123456789",
    )  # fmt: skip
    assert response.status_code == 204


@pytest.mark.django_db
def test_admin_refuses_a_peer_without_a_usable_token(db, support_client):
    data = {"name": "dso-west", "heartbeat_interval_s": "30", "new_token": "short", **NO_INLINES}
    response = support_client.post("/admin/envelopes/oscppeer/add/", data)
    assert response.status_code == 200
    assert "new_token" in response.context["adminform"].form.errors
    assert not OscpPeer.objects.exists()


@pytest.mark.django_db
def test_admin_binds_a_group_and_refuses_an_unknown_node(microgrid, peer, support_client):
    url = "/admin/envelopes/oscpgroupbinding/add/"
    base = {"peer": peer.pk, "group_id": "GRP-X", "microgrid": microgrid.pk, "scope_type": "NODE"}
    refused = support_client.post(url, {**base, "node_id": "nowhere"})
    assert refused.status_code == 200
    assert "NODE_NOT_FOUND" in str(refused.context["adminform"].form.errors["node_id"])
    assert not OscpGroupBinding.objects.exists()
    accepted = support_client.post(url, {**base, "node_id": "sb-1"})
    assert accepted.status_code == 302
    binding = OscpGroupBinding.objects.get()
    assert binding.scope_dict() == {"type": "NODE", "node_id": "sb-1"}


@pytest.mark.django_db
def test_the_withdraw_action_withdraws_live_envelopes_and_reports_the_others(
    bound, receive, support_client, oscp_client
):
    now = timezone.now()
    receive(forecast_body(blocks=[block(now - H, now + H)]), now=now)
    receive(forecast_body(group_id="GRP-A", blocks=[block(now - 3 * H, now - 2 * H)]), now=now)
    ids = list(OperatingEnvelope.objects.order_by("number").values_list("pk", flat=True))
    response = support_client.post(
        "/admin/envelopes/operatingenvelope/",
        {"action": "withdraw_envelopes", "_selected_action": ids},
        follow=True,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Withdrew 1 operating envelope" in html
    assert "ENVELOPE_NOT_WITHDRAWABLE" in html
    states = list(OperatingEnvelope.objects.order_by("number").values_list("state", flat=True))
    assert states == ["WITHDRAWN", "RECEIVED"]


@pytest.mark.django_db
def test_operators_have_no_admin(bound, operator_client):
    response = operator_client.get("/admin/envelopes/operatingenvelope/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


@pytest.mark.django_db
def test_peer_tokens_never_reach_the_history(bound, peer):
    fields = {f.name for f in OscpPeer.history.model._meta.fields}
    assert "token_hash" not in fields
    assert "token_prefix" in fields
