"""The fleet benchmark's parts: the synthetic fleet, the judgement of a run, the refusals."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from benchtools.fleet import CycleRow, analyse, build_fleet, percentile, wipe_fleet

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def rounds(microgrids, *, count, interval=15, lag=0.2, took=0.05, skip=(), overlap=()):
    """Cycles of `microgrids` claimed every `interval` s from T0; (mg, round) pairs in `skip`
    are left out, those in `overlap` start before the previous cycle completed."""
    rows = []
    for k in range(count):
        claimed = T0 + timedelta(seconds=k * interval)
        for i, mid in enumerate(microgrids):
            if (mid, k) in skip:
                continue
            start = claimed + timedelta(seconds=lag + 0.01 * i)
            if (mid, k) in overlap:
                start = rows[-len(microgrids)].completed_at - timedelta(seconds=0.01)
            rows.append(
                CycleRow(mid, start, start + timedelta(seconds=took), claimed, "MEASURED", "OK")
            )
    return rows


def judge(rows, microgrids, count=3, interval=15):
    return analyse(
        rows,
        microgrid_ids=microgrids,
        interval_s=interval,
        stopped_at=T0 + timedelta(seconds=count * interval - 0.5),
    )


def test_a_run_where_every_microgrid_cycles_every_interval_passes():
    mgs = ["A", "B", "C"]
    report = judge(rounds(mgs, count=3), mgs)
    assert report["ok"] is True
    assert report["cycles"] == 9
    assert report["skipped"] == report["overlaps"] == report["without_cycle"] == 0
    assert [r["cycles"] for r in report["rounds"]] == [3, 3, 3]
    assert report["offered_cycles_per_s"] == 0.2
    assert report["source_mode"] == {"MEASURED": 9}


def test_a_missed_interval_is_a_skip_and_fails_the_run():
    mgs = ["A", "B", "C"]
    report = judge(rounds(mgs, count=3, skip={("B", 1)}), mgs)
    assert report["ok"] is False
    assert report["skipped"] == 1
    assert report["skipped_examples"][0]["microgrid_id"] == "B"
    assert report["skipped_examples"][0]["gap_s"] == pytest.approx(30.0)


def test_a_microgrid_that_stops_being_cycled_before_the_end_is_a_skip():
    mgs = ["A", "B"]
    report = judge(rounds(mgs, count=3, skip={("A", 2)}), mgs)
    assert report["skipped"] == 1


def test_a_microgrid_never_cycled_and_an_overlap_both_fail_the_run():
    mgs = ["A", "B"]
    never = judge(rounds(["A"], count=3), mgs)
    assert never["ok"] is False and never["without_cycle"] == 1
    overlapping = judge(rounds(mgs, count=3, overlap={("A", 1)}), mgs)
    assert overlapping["ok"] is False and overlapping["overlaps"] == 1


def test_cycle_time_and_lag_percentiles_are_nearest_rank():
    mgs = [f"M{i}" for i in range(100)]
    report = judge(rounds(mgs, count=3, lag=0.5, took=0.02), mgs)
    assert report["cycle_time"]["p50_ms"] == pytest.approx(20.0)
    # lags are 0.5 s plus 10 ms per place in the round: 500 .. 1490 ms
    assert report["lag"]["p50_ms"] == pytest.approx(990.0)
    assert report["lag"]["p99_ms"] == pytest.approx(1480.0)
    assert percentile([3, 1, 2, 4], 0.5) == 2
    assert percentile([], 0.5) is None


def test_a_round_that_takes_longer_than_the_interval_shows_in_its_makespan():
    mgs = [f"M{i}" for i in range(10)]
    report = judge(rounds(mgs, count=3, lag=14.0), mgs)
    assert report["max_makespan_s"] > 14.0
    assert report["busy_cycles_per_s"] < report["offered_cycles_per_s"] * 2


@pytest.mark.django_db
def test_a_built_fleet_cycles_on_fresh_measured_telemetry_with_binding_limits():
    from balancing.models import Cycle
    from balancing.tasks import run_cycle
    from microgrid.topology.models import Asset, Microgrid, MicrogridNode

    ids = build_fleet(microgrids=3, chargers=20, interval_s=15, prefix="TFLEET")
    assert ids == ["TFLEET-0000", "TFLEET-0001", "TFLEET-0002"]
    first, last = (Microgrid.objects.get(microgrid_id=i) for i in (ids[0], ids[-1]))
    assert last.topology_version == first.topology_version == 1
    assert last.telemetry_stale_after_s == 3600 and last.cycle_interval_s == 15
    assert sorted(
        MicrogridNode.objects.filter(microgrid=last).values_list("node_id", "parent__node_id")
    ) == sorted(
        MicrogridNode.objects.filter(microgrid=first).values_list("node_id", "parent__node_id")
    )
    assert (
        Asset.objects.filter(microgrid=last).count()
        == Asset.objects.filter(microgrid=first).count()
    )
    for mid in ids:
        run_cycle.run(mid)
    cycles = Cycle.objects.filter(microgrid__microgrid_id__startswith="TFLEET-")
    assert {(c.source_mode, c.outcome) for c in cycles} == {("MEASURED", "CONSTRAINED")}
    assert wipe_fleet("TFLEET") == 3
    assert not Microgrid.objects.filter(microgrid_id__startswith="TFLEET-").exists()
    assert not Cycle.objects.exists()


@pytest.mark.django_db
def test_bench_fleet_refuses_without_redis_and_postgresql():
    with pytest.raises(CommandError, match="CELERY_BROKER_URL=redis://"):
        call_command("bench", "fleet", "--microgrids", "2")


@pytest.mark.django_db
def test_a_96_block_day_ahead_forecast_is_accepted_whole_and_pending(microgrid):
    from django.utils import timezone

    from benchtools.benchmarks import forecast_blocks
    from microgrid.envelopes.models import OperatingEnvelope
    from microgrid.envelopes.services import (
        oscp_group_binding_save,
        oscp_message_receive,
        oscp_peer_save,
    )

    peer, _ = oscp_peer_save(name="dso", token="bench-token-0123456789", heartbeat_interval_s=60)
    oscp_group_binding_save(
        peer=peer, group_id="G", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    tomorrow = (timezone.now() + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    receipt = oscp_message_receive(
        peer=peer,
        message_type="UPDATE_GROUP_CAPACITY_FORECAST",
        request_id="r-1",
        body=json.dumps(
            {"group_id": "G", "type": "CONSUMPTION", "forecasted_blocks": forecast_blocks(tomorrow)}
        ),
    )
    assert len(receipt.envelopes) == 96
    assert receipt.changed == set()  # nothing in force yet: no cycle asked for
    envelopes = list(OperatingEnvelope.objects.order_by("valid_from"))
    assert envelopes[0].valid_from == tomorrow
    assert envelopes[-1].valid_until == tomorrow + timedelta(days=1)


@pytest.mark.django_db(transaction=True)
def test_bench_without_arguments_measures_everything_that_runs_in_process(tmp_path):
    import json
    from io import StringIO

    out = StringIO()
    call_command("bench", "--quick", "--repeat", "1", "--out", str(tmp_path / "b.json"), stdout=out)
    report = json.loads((tmp_path / "b.json").read_text())
    assert {"engine", "cycle", "ingest", "oscp"} <= set(report)
    assert "fleet" not in report
    assert [r["chargers"] for r in report["engine"]] == [10, 100]
    assert all(
        r["engine_total_kw_no_minimums"] <= r["lp_total_kw"] + 0.01 for r in report["engine"]
    )
    assert "Full cycle" in out.getvalue()
