"""How a cycle reads and writes: a constant number of queries, the row written once, whole,
the trigger recorded in the cycle's own transaction, and worker connections kept."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from balancing.inputs import assets_with_readings
from balancing.models import Breach, Cycle, CycleTrigger
from balancing.services import cycle_request, trigger_of
from microgrid.telemetry.selectors import latest_readings
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.selectors import asset_rows

pytestmark = pytest.mark.django_db


def _readings(now, grid_kw=900.0):
    at = now.isoformat()
    out = [
        {
            "asset_id": c,
            "power_kw": 0,
            "observed_at": at,
            "connected": True,
            "requested_kw": 150,
        }
        for c in ("CH-01", "CH-02", "CH-03")
    ]
    out += [
        {"asset_id": "SITE", "power_kw": 50, "observed_at": at},
        {"asset_id": "M-GRID", "power_kw": grid_kw, "observed_at": at},
    ]
    return out


def _cycle(microgrid):
    return cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle


def test_a_cycle_with_a_breach_is_written_once_with_the_breach_in_its_document(microgrid):
    now = timezone.now()
    telemetry_ingest(microgrid=microgrid, now=now, readings=_readings(now, grid_kw=900.0))
    with CaptureQueriesContext(connection) as ctx:
        cycle = _cycle(microgrid)
    writes = [q["sql"] for q in ctx.captured_queries if 'balancing_cycle"' in q["sql"]]
    assert [w.split()[0] for w in writes if not w.startswith("SELECT")] == ["INSERT"]
    breach = Breach.objects.get()
    assert breach.cycle == cycle
    stored = Cycle.objects.get(pk=cycle.pk).document["breaches"]
    assert [b["breach_id"] for b in stored] == [breach.breach_id]
    assert stored[0]["new"] is True


def test_a_later_cycle_resolves_the_breach_and_says_so_in_its_own_document(microgrid):
    now = timezone.now()
    telemetry_ingest(microgrid=microgrid, now=now, readings=_readings(now, grid_kw=900.0))
    _cycle(microgrid)
    later = timezone.now()
    telemetry_ingest(microgrid=microgrid, now=later, readings=_readings(later, grid_kw=100.0))
    second = _cycle(microgrid)
    breach = Breach.objects.get()
    assert breach.status == "RESOLVED"
    assert breach.resolved_by == second
    assert Cycle.objects.get(pk=second.pk).document["breaches"] == []


def test_a_cycle_takes_as_many_queries_for_two_hundred_chargers_as_for_three(microgrid):
    from benchtools.benchmarks import _drop, materialise
    from benchtools.synthetic import build_engine_input

    now = timezone.now()
    telemetry_ingest(microgrid=microgrid, now=now, readings=_readings(now))
    big = materialise(build_engine_input(200, 40, depth=4, seed=3), "MG.BIG")
    counts = []
    for mg in (microgrid, big):
        _cycle(mg)  # the first cycle of a microgrid may compile its reads
        with CaptureQueriesContext(connection) as ctx:
            _cycle(mg)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    # 16 for the cycle, 4 for its outbox (dispatch settings, OCPP-mapped chargers, supersede,
    # one INSERT).
    assert counts[0] <= 20
    _drop(big)


def test_a_trigger_that_found_the_microgrid_free_is_stored_served_by_its_cycle(microgrid):
    cycle = _cycle(microgrid)
    trigger = CycleTrigger.objects.get()
    assert trigger.served_by == cycle
    assert trigger.trigger == {"type": "API"}
    assert trigger.requested_at <= cycle.started_at


def test_a_refused_cycle_request_leaves_no_trigger_behind(empty_microgrid):
    from microgrid.common.errors import DomainError

    with pytest.raises(DomainError):
        _cycle(empty_microgrid)
    assert CycleTrigger.objects.count() == 0


def test_assets_and_readings_read_together_match_the_two_selectors(microgrid):
    now = timezone.now()
    telemetry_ingest(microgrid=microgrid, now=now, readings=_readings(now))
    assets, latest = assets_with_readings(microgrid)
    fields = ("asset_id", "node_id", "kind", "max_power_kw", "min_power_kw", "priority")
    expected = asset_rows(microgrid)
    assert [a["asset_id"] for a in assets] == [a["asset_id"] for a in expected]
    for got, want in zip(assets, expected, strict=True):
        for field in fields:
            assert got[field] == want.get(field)
        assert got["fallback_kw"] == want.get("fallback_kw")
    assert latest == latest_readings(microgrid)
    assert "PV-1" not in latest  # no reading: absent, as the selector has it


def test_an_eager_task_never_closes_its_callers_connection():
    from types import SimpleNamespace

    from microgrid.celery import _close_old_connections

    connection.ensure_connection()
    connection.close_at = 0  # long past: obsolete
    eager = SimpleNamespace(request=SimpleNamespace(is_eager=True))
    _close_old_connections(task=eager)
    assert connection.connection is not None  # an eager task runs inside its caller
