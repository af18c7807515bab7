"""The schedule: which microgrids are due, claimed once, and when their cycles were asked for."""

from datetime import timedelta

import pytest
from django.utils import timezone

from balancing.models import Cycle, CycleSchedule, CycleTrigger
from microgrid.topology.api.serializers import microgrid_input

pytestmark = pytest.mark.django_db


@pytest.fixture
def t0():
    return timezone.now().replace(microsecond=0)


def test_a_new_microgrid_is_due_at_once_and_claimed_once(microgrid, t0):
    assert CycleSchedule.claim_due(t0) == [("MG.NORTH-1", 15)]
    assert CycleSchedule.claim_due(t0) == []
    assert CycleSchedule.objects.get(microgrid=microgrid).last_enqueued_at == t0


def test_a_microgrid_is_due_again_half_a_second_before_its_interval_has_passed(microgrid, t0):
    CycleSchedule.claim_due(t0)
    assert CycleSchedule.claim_due(t0 + timedelta(seconds=14.4)) == []
    assert CycleSchedule.claim_due(t0 + timedelta(seconds=14.5)) == [("MG.NORTH-1", 15)]


def test_each_microgrid_follows_its_own_interval(microgrid, small_topology, t0):
    from microgrid.topology.services import microgrid_create

    slow = microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": "MG.SLOW",
                "name": "Slow",
                "depot": {"depot_id": "DEPOT-SLOW", "name": "Slow", "timezone": "UTC"},
            }
        )
    )
    slow.cycle_interval_s = 60
    slow.save()
    assert sorted(CycleSchedule.claim_due(t0)) == [("MG.NORTH-1", 15), ("MG.SLOW", 60)]
    assert CycleSchedule.claim_due(t0 + timedelta(seconds=20)) == [("MG.NORTH-1", 15)]
    assert CycleSchedule.claim_due(t0 + timedelta(seconds=60)) == [
        ("MG.NORTH-1", 15),
        ("MG.SLOW", 60),
    ]


def test_a_disabled_microgrid_is_never_claimed(microgrid, t0):
    microgrid.enabled = False
    microgrid.save()
    assert CycleSchedule.claim_due(t0) == []
    assert CycleSchedule.claim_due(t0 + timedelta(hours=1)) == []


def test_claiming_a_thousand_microgrids_takes_the_same_few_queries_as_one(
    microgrid, t0, django_assert_max_num_queries
):
    from microgrid.topology.models import Depot, Microgrid

    depots = Depot.objects.bulk_create(
        [Depot(depot_id=f"D-{i}", name=str(i), timezone="UTC") for i in range(1000)]
    )
    Microgrid.objects.bulk_create(
        [Microgrid(microgrid_id=f"MG-{i}", depot=d, name=str(i)) for i, d in enumerate(depots)]
    )
    CycleSchedule.claim_due(t0)
    later = t0 + timedelta(seconds=15)
    with django_assert_max_num_queries(6):
        due = CycleSchedule.claim_due(later)
    assert len(due) == 1001


def test_a_scheduled_cycle_records_when_the_schedule_asked_for_it(microgrid, t0):
    from balancing.tasks import run_cycle

    asked = timezone.now() - timedelta(seconds=3)
    run_cycle.run("MG.NORTH-1", {"type": "SCHEDULED"}, None, asked.isoformat())
    cycle = Cycle.objects.get()
    trigger = CycleTrigger.objects.get()
    assert trigger.served_by == cycle
    assert trigger.requested_at == asked
    assert cycle.started_at > trigger.requested_at


def test_the_beat_task_passes_the_instant_it_claimed_the_microgrid(microgrid):
    from balancing.tasks import enqueue_due_cycles

    assert enqueue_due_cycles() == 1  # Celery runs eagerly in tests: the cycle ran
    claimed = CycleSchedule.objects.get(microgrid=microgrid).last_enqueued_at
    assert CycleTrigger.objects.get().requested_at == claimed


def test_a_requested_at_that_is_not_a_time_or_in_the_future_is_replaced_by_now(microgrid):
    from balancing.tasks import run_cycle

    before = timezone.now()
    run_cycle.run("MG.NORTH-1", {"type": "SCHEDULED"}, None, "yesterday-ish")
    run_cycle.run(
        "MG.NORTH-1", {"type": "SCHEDULED"}, None, (before + timedelta(hours=1)).isoformat()
    )
    for trigger in CycleTrigger.objects.all():
        assert before <= trigger.requested_at <= timezone.now()


def test_due_microgrids_go_out_in_batches_that_share_an_interval():
    from balancing.tasks import _batches

    due = [(f"MG-{i}", 15) for i in range(23)] + [("SLOW-1", 60), ("SLOW-2", 60)]
    batches = _batches(due, 10)
    assert [(len(ids), interval) for ids, interval in batches] == [
        (10, 15),
        (10, 15),
        (3, 15),
        (2, 60),
    ]
    assert [m for ids, _ in batches for m in ids] == [m for m, _ in due]
    assert _batches([], 10) == []


def test_the_beat_task_sends_one_task_per_batch(microgrid, small_topology, settings, monkeypatch):
    from balancing import tasks
    from microgrid.topology.services import microgrid_create

    for i in range(2):
        microgrid_create(
            **microgrid_input(
                {
                    "microgrid_id": f"MG.B{i}",
                    "name": f"B{i}",
                    "depot": {"depot_id": f"DEPOT-B{i}", "name": "B", "timezone": "UTC"},
                }
            )
        )
    sent = []
    monkeypatch.setattr(
        tasks.run_scheduled_cycles,
        "apply_async",
        lambda args, expires: sent.append((args, expires)),
    )
    settings.BALANCING_SCHEDULE_BATCH = 2
    assert tasks.enqueue_due_cycles() == 3
    assert [(args[0], args[2], expires) for args, expires in sent] == [
        (["MG.B0", "MG.B1"], 15, 15),
        (["MG.NORTH-1"], 15, 15),
    ]
    claimed = CycleSchedule.objects.get(microgrid=microgrid).last_enqueued_at
    assert {args[1] for args, _ in sent} == {claimed.isoformat()}


def test_a_failing_microgrid_does_not_hold_back_the_rest_of_its_batch(
    microgrid, small_topology, monkeypatch
):
    """The batch fails whole (nothing of it is stored), then each member is cycled on its
    own: the one that fails again is logged, the others get their cycle."""
    from balancing import batch, tasks

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    real = tasks._run_one
    calls = []

    def flaky(microgrid_id, *args):
        calls.append(microgrid_id)
        if microgrid_id == "MG.BROKEN":
            raise RuntimeError("boom")
        return real(microgrid_id, *args)

    monkeypatch.setattr(batch, "plan_locked", broken)
    monkeypatch.setattr(tasks, "_run_one", flaky)
    asked = timezone.now().isoformat()
    assert tasks.run_scheduled_cycles.run(["MG.BROKEN", "MG.NORTH-1"], asked, 15) == 2
    assert calls == ["MG.BROKEN", "MG.NORTH-1"]
    assert Cycle.objects.filter(microgrid=microgrid, trigger_type="SCHEDULED").count() == 1


def test_a_batch_cycles_its_members_in_one_go_and_the_others_alone(
    microgrid, small_topology, monkeypatch
):
    """Members the batch could not take (here: one that does not exist, as one whose lock
    another transaction holds) are cycled one by one after it."""
    from balancing import tasks

    calls = []
    monkeypatch.setattr(tasks, "_run_one", lambda microgrid_id, *args: calls.append(microgrid_id))
    asked = timezone.now().isoformat()
    assert tasks.run_scheduled_cycles.run(["MG.GONE", "MG.NORTH-1"], asked, 15) == 2
    assert calls == ["MG.GONE"]
    cycle = Cycle.objects.get(microgrid=microgrid, trigger_type="SCHEDULED")
    assert CycleTrigger.objects.get(served_by=cycle).requested_at.isoformat() == asked


def test_a_database_error_hands_the_microgrid_to_its_own_retrying_task(
    microgrid, small_topology, monkeypatch
):
    from django.db import OperationalError

    from balancing import tasks

    def down(*args, **kwargs):
        raise OperationalError("server closed the connection")

    retried = []
    monkeypatch.setattr(tasks, "cycle_batch", down)
    monkeypatch.setattr(tasks, "_run_one", down)
    monkeypatch.setattr(
        tasks.run_cycle, "apply_async", lambda args, expires: retried.append((args, expires))
    )
    asked = timezone.now().isoformat()
    tasks.run_scheduled_cycles.run(["MG.NORTH-1"], asked, 15)
    assert retried == [(["MG.NORTH-1", {"type": "SCHEDULED"}, None, asked], 15)]


def test_a_batch_older_than_its_interval_leaves_the_rest_to_the_next_round(
    microgrid, small_topology
):
    from balancing import tasks

    stale = (timezone.now() - timedelta(seconds=16)).isoformat()
    assert tasks.run_scheduled_cycles.run(["MG.NORTH-1"], stale, 15) == 0
    assert not Cycle.objects.exists()
