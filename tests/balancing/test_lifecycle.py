"""Cycle data lifecycle: 15-minute aggregates, pruning past the retention, bounded runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings

from balancing.lifecycle import (
    bucket_of,
    cycle_aggregate,
    cycle_aggregate_prune,
    cycle_prune,
)
from balancing.models import (
    Breach,
    Cycle,
    CycleAggregate,
    CycleRecordPart,
    CycleTrigger,
)
from balancing.services import cycle_request, trigger_of
from microgrid.telemetry.services import telemetry_ingest

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _readings(at: datetime, grid_kw: float = 100.0) -> list[dict]:
    out = [
        {
            "asset_id": c,
            "power_kw": 0,
            "observed_at": at.isoformat(),
            "connected": True,
            "requested_kw": 150,
        }
        for c in ("CH-01", "CH-02", "CH-03")
    ]
    out += [
        {"asset_id": "SITE", "power_kw": 50, "observed_at": at.isoformat()},
        {"asset_id": "M-GRID", "power_kw": grid_kw, "observed_at": at.isoformat()},
    ]
    return out


def _cycles(microgrid, times: list[datetime], grid_kw: float = 100.0) -> list[Cycle]:
    out = []
    for at in times:
        telemetry_ingest(microgrid=microgrid, now=at, readings=_readings(at, grid_kw))
        out.append(
            cycle_request(
                microgrid=microgrid, trigger=trigger_of("API"), now=lambda at=at: at
            ).cycle
        )
    return out


def _sums(microgrid) -> dict:
    return {
        (a.node_id, a.bucket_start): (
            a.cycles,
            round(a.load_kw_sum, 6),
            a.load_kw_max,
            round(a.limit_kw_sum, 6),
            a.limit_kw_min,
            round(a.allocated_kw_sum, 6),
            round(a.requested_kw_sum, 6),
            a.reason_codes,
            a.outcomes,
        )
        for a in CycleAggregate.objects.filter(microgrid=microgrid)
    }


def test_buckets_are_quarter_hours():
    assert bucket_of(datetime(2026, 3, 2, 9, 14, 59, tzinfo=UTC)) == T0
    assert bucket_of(datetime(2026, 3, 2, 9, 15, tzinfo=UTC)) == T0 + timedelta(minutes=15)


def test_closed_buckets_are_aggregated_per_node_once(microgrid):
    times = [T0 + timedelta(minutes=m) for m in (1, 5, 16, 40)]
    cycles = _cycles(microgrid, times)
    # At 09:40:30 only the 09:00 and 09:15 buckets have closed (with a minute of slack).
    assert cycle_aggregate(now=T0 + timedelta(minutes=40, seconds=30)) == 3
    sums = _sums(microgrid)
    assert {b for _, b in sums} == {T0, T0 + timedelta(minutes=15)}
    first = cycles[0].document
    grid = next(n for n in first["nodes"] if n["node_id"] == "grid")
    cycles_in, load_sum, load_max, limit_sum, *_, outcomes = sums[("grid", T0)]
    assert cycles_in == 2
    assert load_max >= grid["uncontrolled_load_kw"] + grid["allocated_kw"] - 1e-9
    assert outcomes == {cycles[0].outcome: 1, cycles[1].outcome: 1} or sum(outcomes.values()) == 2
    requested = sum(c["requested_kw"] for c in first["chargers"] if c["node_id"] == "grp-a")
    assert sums[("grp-a", T0)][6] == pytest.approx(
        requested
        + sum(c["requested_kw"] for c in cycles[1].document["chargers"] if c["node_id"] == "grp-a")
    )
    # Nothing is counted twice: a second run adds nothing until the next bucket closes.
    assert cycle_aggregate(now=T0 + timedelta(minutes=44)) == 0
    assert _sums(microgrid) == sums
    assert cycle_aggregate(now=T0 + timedelta(hours=1)) == 1


def test_a_bucket_filled_over_several_bounded_runs_adds_up_to_one_run(microgrid):
    times = [T0 + timedelta(minutes=m) for m in (1, 2, 3, 4, 5)]
    _cycles(microgrid, times)
    later = T0 + timedelta(hours=1)
    assert cycle_aggregate(now=later) == 5
    whole = _sums(microgrid)
    CycleAggregate.objects.all().delete()
    from balancing.models import CycleAggregateCursor

    CycleAggregateCursor.objects.all().delete()
    runs = []
    while True:
        done = cycle_aggregate(now=later, limit=2)
        if not done:
            break
        runs.append(done)
    assert runs == [2, 2, 1]
    assert _sums(microgrid) == whole


@override_settings(CYCLE_RETENTION_DAYS=14)
def test_full_cycles_past_retention_go_aggregated_and_their_breaches_stay(microgrid):
    old = _cycles(microgrid, [T0, T0 + timedelta(minutes=1)], grid_kw=900.0)  # a breach opens
    recent = _cycles(microgrid, [T0 + timedelta(days=20)])
    breach = Breach.objects.get()
    assert breach.cycle == old[0]
    now = T0 + timedelta(days=20, hours=1)
    # Not aggregated yet: nothing may go.
    assert cycle_prune(now=now) == 0
    cycle_aggregate(now=now)
    assert cycle_prune(now=now) == 2
    assert list(Cycle.objects.values_list("pk", flat=True)) == [recent[0].pk]
    breach.refresh_from_db()
    assert breach.cycle is None and breach.to_dict()["cycle_id"] is None
    assert not CycleTrigger.objects.filter(served_by__isnull=True).exists()
    assert CycleTrigger.objects.count() == 1
    assert CycleAggregate.objects.filter(bucket_start=T0).exists()  # what is left of them
    # Every part still in use is kept; the kept cycle reads whole and replays.
    assert set(CycleRecordPart.objects.values_list("digest", flat=True)) >= {
        recent[0].record_part_id
    }
    kept = Cycle.objects.get()
    assert kept.document["cycle_id"] == recent[0].cycle_id
    call_command("replay_cycle", kept.cycle_id)


@override_settings(CYCLE_RETENTION_DAYS=14)
def test_the_newest_cycle_of_a_microgrid_is_kept_so_its_sequence_goes_on(microgrid):
    _cycles(microgrid, [T0, T0 + timedelta(minutes=1)])
    now = T0 + timedelta(days=30)
    cycle_aggregate(now=now)
    assert cycle_prune(now=now) == 1
    kept = Cycle.objects.get()
    assert kept.seq == 2
    nxt = _cycles(microgrid, [now])[0]
    assert nxt.seq == 3


@override_settings(CYCLE_AGGREGATE_RETENTION_DAYS=400)
def test_aggregates_past_their_retention_are_pruned_in_bounded_runs(microgrid):
    CycleAggregate.objects.bulk_create(
        [
            CycleAggregate(
                microgrid=microgrid,
                node_id="grid",
                bucket_start=T0 + timedelta(minutes=15 * i),
                cycles=1,
            )
            for i in range(5)
        ]
    )
    now = T0 + timedelta(days=401)
    assert cycle_aggregate_prune(now=now, limit=3) == 3
    assert cycle_aggregate_prune(now=now, limit=3) == 2
    assert cycle_aggregate_prune(now=now, limit=3) == 0


def test_aggregation_takes_the_same_queries_for_many_cycles_as_for_few(microgrid):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from balancing.models import CycleAggregateCursor

    _cycles(microgrid, [T0 + timedelta(seconds=15 * i) for i in range(12)])
    counts = []
    for limit in (3, 12):
        CycleAggregate.objects.all().delete()
        CycleAggregateCursor.objects.all().delete()
        with CaptureQueriesContext(connection) as ctx:
            assert cycle_aggregate(now=T0 + timedelta(hours=1), limit=limit) == limit
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 12, counts


def test_the_cycles_page_charts_long_ranges_from_the_aggregates(microgrid, operator_client):
    from django.utils import timezone

    now = timezone.now()
    _cycles(microgrid, [now - timedelta(hours=2), now - timedelta(hours=1, minutes=50)])
    cycle_aggregate(now=now)
    base = f"/manage/microgrids/{microgrid.microgrid_id}/cycles/"
    page = operator_client.get(base + "?range=7d")
    assert page.status_code == 200
    text = page.content.decode()
    assert "last 7d (15-minute averages)" in text
    assert 'data-testid="chart-node-grid"' in text
    # An unknown range is the default view, never an error.
    assert operator_client.get(base + "?range=forever").status_code == 200
