"""Enforcement in cycles: an active envelope binds chargers under its scope, cycles name it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from balancing.models import Cycle
from balancing.services import cycle_request, trigger_of
from microgrid.telemetry.services import telemetry_ingest

from .conftest import FORECAST, block, forecast_body

H = timedelta(hours=1)


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def demand(microgrid, now):
    """Fresh telemetry: every charger connected asking for 150 kW, no site load."""
    readings = [
        {"asset_id": a, "power_kw": 0, "observed_at": now.isoformat(), "connected": True,
         "requested_kw": 150}
        for a in ("CH-01", "CH-02", "CH-03")
    ] + [
        {"asset_id": "SITE", "power_kw": 0, "observed_at": now.isoformat()},
        {"asset_id": "PV-1", "power_kw": 0, "observed_at": now.isoformat()},
    ]  # fmt: skip
    telemetry_ingest(microgrid=microgrid, now=now, readings=readings)


def cycle(microgrid):
    return cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle.document


def chargers(doc):
    return {c["asset_id"]: c for c in doc["chargers"]}


@pytest.mark.django_db
def test_a_cycle_under_an_active_envelope_names_it_in_the_binding(bound, receive, demand, now):
    receive(forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 100)]), now=now)
    doc = cycle(bound)
    ch = chargers(doc)
    assert ch["CH-01"]["allocated_kw"] == ch["CH-02"]["allocated_kw"] == 50.0
    assert ch["CH-01"]["reason_codes"] == ["OPERATING_ENVELOPE_LIMIT"]
    assert ch["CH-01"]["binding"] == {
        "node_id": "grp-a",
        "limit_source": "OPERATING_ENVELOPE",
        "limit_kw": 100.0,
        "envelope_id": "OE-1",
    }
    assert ch["CH-03"]["binding"] is None  # grp-b: CH-03 got all it asked for
    assert "OPERATING_ENVELOPE_LIMIT" in doc["reason_codes"]
    node = next(n for n in doc["nodes"] if n["node_id"] == "grp-a")
    assert (node["effective_limit_kw"], node["limit_source"]) == (100.0, "OPERATING_ENVELOPE")


@pytest.mark.django_db
def test_the_smallest_active_envelope_on_the_node_is_the_binding_one(
    bound, peer, receive, demand, now
):
    from microgrid.envelopes.services import oscp_group_binding_save

    oscp_group_binding_save(
        peer=peer, group_id="GRP-G2", microgrid=bound, scope={"type": "NODE", "node_id": "grp-a"}
    )
    receive(forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 100)]), now=now)
    receive(forecast_body(group_id="GRP-G2", blocks=[block(now - H, now + H, 80)]), now=now)
    binding = chargers(cycle(bound))["CH-01"]["binding"]
    assert (binding["envelope_id"], binding["limit_kw"]) == ("OE-2", 80.0)


@pytest.mark.django_db
def test_a_zero_envelope_pauses_the_chargers_under_its_scope(bound, receive, demand, now):
    receive(forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 0)]), now=now)
    doc = cycle(bound)
    ch = chargers(doc)
    assert ch["CH-01"]["allocated_kw"] == ch["CH-02"]["allocated_kw"] == 0.0
    assert ch["CH-03"]["allocated_kw"] == 150.0  # grp-b is not under the envelope
    assert doc["outcome"] == "CONSTRAINED"  # a pause, not a failure
    node = next(n for n in doc["nodes"] if n["node_id"] == "grp-a")
    assert (node["effective_limit_kw"], node["limit_source"]) == (0.0, "OPERATING_ENVELOPE")


@pytest.mark.django_db
def test_a_microgrid_envelope_limits_the_root(bound, receive, demand, now):
    receive(forecast_body(group_id="GRP-N", blocks=[block(now - H, now + H, 90)]), now=now)
    doc = cycle(bound)
    root = doc["nodes"][0]
    assert (root["node_id"], root["effective_limit_kw"], root["limit_source"]) == (
        "grid",
        90.0,
        "OPERATING_ENVELOPE",
    )
    assert sum(c["allocated_kw"] for c in doc["chargers"]) == pytest.approx(90.0)
    assert {c["binding"]["envelope_id"] for c in doc["chargers"]} == {"OE-1"}


@pytest.mark.django_db
def test_a_fallback_applied_while_its_peer_is_offline_says_so_in_the_binding(
    bound, receive, demand, now
):
    receive(forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 200)]), now=now)
    receive(
        forecast_body(
            group_id="GRP-G", type="FALLBACK_CONSUMPTION", blocks=[block(now - H, now + H, 60)]
        ),
        now=now,
    )
    online = chargers(cycle(bound))["CH-01"]["binding"]
    assert (online["node_id"], online.get("envelope_id")) == ("grp-a", "OE-1")
    assert "peer_offline" not in online
    receive(
        {"offline_mode_at": (now - timedelta(seconds=1)).isoformat()},
        message_type="HEARTBEAT",
        now=now,
    )
    offline = chargers(cycle(bound))["CH-01"]["binding"]
    assert offline == {
        "node_id": "grp-a",
        "limit_source": "OPERATING_ENVELOPE",
        "limit_kw": 60.0,
        "envelope_id": "OE-2",
        "peer_offline": True,
    }


@pytest.mark.django_db
def test_receiving_an_active_envelope_runs_an_envelope_change_cycle_at_once(
    bound, oscp_client, demand, now, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = oscp_client(
            FORECAST, forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 100)])
        )
    assert response.status_code == 204
    run = Cycle.objects.get()
    assert run.document["trigger"] == {"type": "ENVELOPE_CHANGE", "envelope_ids": ["OE-1"]}
    assert run.document["scope"] == {"type": "NODE", "node_id": "grp-a"}
    assert chargers(run.document)["CH-01"]["binding"]["envelope_id"] == "OE-1"


@pytest.mark.django_db
def test_the_active_limits_list_the_envelopes_on_each_node(bound, receive, operator_api, now):
    receive(forecast_body(group_id="GRP-N", blocks=[block(now - H, now + H, 500)]), now=now)
    receive(forecast_body(group_id="GRP-A", blocks=[block(now - H, now + H, 300)]), now=now)
    receive(forecast_body(group_id="GRP-G", blocks=[block(now + H, now + 2 * H, 10)]), now=now)
    doc = operator_api.get("/api/microgrids/MG.NORTH-1/limits/active/").json()
    by_node = {n["node_id"]: n for n in doc["nodes"]}
    assert by_node["grid"]["envelope_ids"] == ["OE-1"]
    assert by_node["sb-1"]["envelope_ids"] == ["OE-2"]
    assert by_node["sb-1"]["limit_source"] == "OPERATING_ENVELOPE"
    assert by_node["grp-a"]["envelope_ids"] == []  # OE-3 is still pending
    assert doc["microgrid"]["limit_source"] == "OPERATING_ENVELOPE"
