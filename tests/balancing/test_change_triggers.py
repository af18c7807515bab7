"""One subscriber (balancing/receivers.py) asks for a cycle after every change that moves an
effective limit or who controls a scope: requested on commit, coalesced, in the cycle list."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from balancing.models import Cycle, CycleTrigger
from microgrid.limits.services import limit_policy_create

CYCLES = "/api/microgrids/MG.NORTH-1/cycles/"
LIMITS = "/api/microgrids/MG.NORTH-1/limits/"
BINDINGS = "/api/microgrids/MG.NORTH-1/capabilities/bindings/"
EVENTS = "/api/microgrids/MG.NORTH-1/capabilities/events/"


def triggers():
    return list(Cycle.objects.order_by("seq").values_list("trigger_type", flat=True))


@pytest.mark.django_db
def test_a_limit_edit_produces_a_limit_change_cycle_in_the_cycle_list(
    operator_api, microgrid, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as asked:
        created = operator_api.post(
            LIMITS, {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350}, format="json"
        )
    assert created.status_code == 201
    assert not Cycle.objects.exists()  # nothing before the commit ...
    for callback in asked:
        callback()
    assert Cycle.objects.count() == 1  # ... the cycle is asked for on commit
    policy_id = created.json()["policy_id"]
    with django_capture_on_commit_callbacks(execute=True):
        edited = operator_api.put(
            f"{LIMITS}{policy_id}/",
            {"scope": "NODE", "node_id": "sb-1", "limit_kw": 120},
            format="json",
        )
    assert edited.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        deleted = operator_api.delete(f"{LIMITS}{policy_id}/")
    assert deleted.status_code == 204

    assert triggers() == ["LIMIT_CHANGE", "LIMIT_CHANGE", "LIMIT_CHANGE"]
    listed = operator_api.get(f"{CYCLES}?trigger=LIMIT_CHANGE").json()["cycles"]
    assert [c["trigger"] for c in listed] == [{"type": "LIMIT_CHANGE"}] * 3
    # The edit's cycle already applied the lowered limit to the switchboard.
    edit_cycle = Cycle.objects.get(seq=2)
    sb1 = next(n for n in edit_cycle.document["nodes"] if n["node_id"] == "sb-1")
    assert sb1["effective_limit_kw"] == 120.0


@pytest.mark.django_db(transaction=True)
def test_the_limit_change_cycle_is_requested_on_commit_only(microgrid):
    with pytest.raises(RuntimeError), transaction.atomic():
        limit_policy_create(microgrid=microgrid, scope="NODE", node_id="sb-1", limit_kw=300)
        raise RuntimeError("rolled back")
    assert triggers() == []
    with transaction.atomic():
        limit_policy_create(microgrid=microgrid, scope="NODE", node_id="sb-1", limit_kw=300)
        assert triggers() == []  # not before the commit
    assert triggers() == ["LIMIT_CHANGE"]
    assert CycleTrigger.objects.get().served_by == Cycle.objects.get()


@pytest.mark.django_db
def test_binding_and_status_changes_produce_capability_change_cycles(
    support_api, integration_api, microgrid, django_capture_on_commit_callbacks
):
    scope = {"type": "NODE", "node_id": "grp-a"}
    with django_capture_on_commit_callbacks(execute=True):
        bound = support_api.post(
            BINDINGS,
            {"capability_type": "LOAD_MANAGEMENT", "scope": scope, "source_device_id": "plc-a"},
            format="json",
        )
    assert bound.status_code == 201, bound.json()
    assert triggers() == ["CAPABILITY_CHANGE"]

    def event(ref, state, ago_s):
        observed = timezone.now() - timedelta(seconds=ago_s)
        body = {
            "capability_type": "LOAD_MANAGEMENT",
            "scope": scope,
            "source_device_id": "plc-a",
            "event_ref": ref,
            "state": state,
            "observed_at": observed.isoformat(),
        }
        with django_capture_on_commit_callbacks(execute=True):
            response = integration_api.post(EVENTS, body, format="json")
        assert response.status_code == 201, response.json()

    event("ev-1", "AVAILABLE", 5)  # the first status: control moves to the device
    event("ev-2", "AVAILABLE", 3)  # the same state, still fresh: nothing moves
    event("ev-0", "UNAVAILABLE", 9)  # older than the latest: the status stays AVAILABLE
    event("ev-3", "UNAVAILABLE", 1)  # the device gives control back
    assert triggers() == ["CAPABILITY_CHANGE"] * 3
    latest = Cycle.objects.order_by("-seq").first()
    assert latest.document["trigger"] == {"type": "CAPABILITY_CHANGE", "binding_ids": ["CB-1"]}

    with django_capture_on_commit_callbacks(execute=True):
        released = support_api.post(f"{BINDINGS}CB-1/release/", {}, format="json")
    assert released.status_code == 200, released.json()
    assert triggers() == ["CAPABILITY_CHANGE"] * 4


@pytest.mark.django_db
def test_a_session_change_produces_a_session_change_cycle_and_a_repeat_none(
    integration_api, microgrid, django_capture_on_commit_callbacks
):
    now = timezone.now().replace(microsecond=0)
    mg = "/api/microgrids/MG.NORTH-1/"
    reading = {
        "asset_id": "CH-01",
        "power_kw": 0.0,
        "observed_at": (now - timedelta(seconds=5)).isoformat(),
        "connected": True,
        "requested_kw": 50,
    }
    with django_capture_on_commit_callbacks(execute=True):
        sent = integration_api.post(mg + "telemetry/", {"readings": [reading]}, format="json")
    assert sent.status_code == 202
    assert triggers() == []  # telemetry asks for no cycle
    url = mg + "chargers/CH-01/session/"
    body = {"departure_at": (now + timedelta(hours=1)).isoformat(), "energy_needed_kwh": 40}
    with django_capture_on_commit_callbacks(execute=False) as asked:
        assert integration_api.put(url, body, format="json").status_code == 200
    assert triggers() == []  # nothing before the commit ...
    for callback in asked:
        callback()
    assert triggers() == ["SESSION_CHANGE"]  # ... the cycle is asked for on commit
    cycle = Cycle.objects.get()
    assert cycle.document["trigger"] == {"type": "SESSION_CHANGE", "asset_id": "CH-01"}
    ch01 = next(c for c in cycle.document["chargers"] if c["asset_id"] == "CH-01")
    assert ch01["energy_needed_kwh"] == 40.0
    with django_capture_on_commit_callbacks(execute=True):
        assert integration_api.put(url, body, format="json").status_code == 200  # the same
    assert triggers() == ["SESSION_CHANGE"]
    with django_capture_on_commit_callbacks(execute=True):
        body["energy_needed_kwh"] = 60
        assert integration_api.put(url, body, format="json").status_code == 200
        assert integration_api.delete(url).status_code == 204
        assert integration_api.delete(url).status_code == 204  # nothing left to clear
    assert triggers() == ["SESSION_CHANGE"] * 3
