"""The TOU beat task: schedule starts and ends are recorded once, in the depot's time zone."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from microgrid.limits import signals
from microgrid.limits.api.serializers import policy_input
from microgrid.limits.models import LimitState, ScheduleActivation
from microgrid.limits.services import limit_policy_create, schedule_transitions_record
from microgrid.limits.tasks import record_schedule_transitions
from microgrid.topology.api.serializers import microgrid_input

AMS = ZoneInfo("Europe/Amsterdam")
EVENING = {"days": ["MON"], "start": "17:00", "end": "21:00"}


def rows():
    return [
        (a.policy_id, a.transition, a.at, a.node_id, a.limit_kw)
        for a in ScheduleActivation.objects.order_by("at", "transition")
    ]


@pytest.fixture
def scheduled(microgrid):
    """A policy written before the times the tests run the task at."""

    def make(data, written_at):
        policy = limit_policy_create(microgrid=microgrid, **policy_input(data))
        type(policy).objects.filter(pk=policy.pk).update(updated_at=written_at)
        return policy

    return make


def run_every_minute(start: datetime, end: datetime):
    at = start
    while at <= end:
        schedule_transitions_record(now=at)
        at += timedelta(minutes=1)


@pytest.mark.django_db
def test_a_start_and_an_end_are_recorded_at_the_window_boundaries(scheduled):
    scheduled(
        {"scope": "NODE", "node_id": "sb-1", "limit_kw": 200, "schedule": EVENING},
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    schedule_transitions_record(now=datetime(2026, 3, 2, 16, 58, 30, tzinfo=AMS))
    schedule_transitions_record(now=datetime(2026, 3, 2, 16, 59, 59, tzinfo=AMS))
    assert rows() == []
    schedule_transitions_record(now=datetime(2026, 3, 2, 17, 0, 0, tzinfo=AMS))
    assert rows() == [("LP-1", "START", datetime(2026, 3, 2, 16, 0, tzinfo=UTC), "sb-1", 200.0)]
    schedule_transitions_record(now=datetime(2026, 3, 2, 20, 59, tzinfo=AMS))
    assert len(rows()) == 1
    schedule_transitions_record(now=datetime(2026, 3, 2, 21, 0, 5, tzinfo=AMS))
    assert rows()[-1] == ("LP-1", "END", datetime(2026, 3, 2, 20, 0, tzinfo=UTC), "sb-1", 200.0)


@pytest.mark.django_db
def test_running_twice_for_the_same_instant_writes_nothing_new(scheduled):
    scheduled(
        {"scope": "MICROGRID", "limit_kw": 500, "schedule": EVENING},
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    first_run = datetime(2026, 3, 2, 16, 59, tzinfo=AMS)
    schedule_transitions_record(now=first_run)
    at = datetime(2026, 3, 2, 17, 0, 1, tzinfo=AMS)
    assert schedule_transitions_record(now=at) == 1
    assert schedule_transitions_record(now=at) == 0
    # even a watermark moved back by hand records nothing twice
    LimitState.objects.update(transitions_checked_until=first_run)
    assert schedule_transitions_record(now=at) == 0
    assert rows() == [("LP-1", "START", datetime(2026, 3, 2, 16, 0, tzinfo=UTC), None, 500.0)]


@pytest.mark.django_db
def test_a_midnight_crossing_window_ends_the_next_day(scheduled):
    scheduled(
        {
            "scope": "NODE",
            "node_id": "grp-a",
            "limit_kw": 100,
            "schedule": {"days": ["FRI"], "start": "22:00", "end": "06:00"},
        },
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    run_every_minute(
        datetime(2026, 3, 6, 21, 58, tzinfo=AMS), datetime(2026, 3, 6, 22, 1, tzinfo=AMS)
    )
    run_every_minute(
        datetime(2026, 3, 7, 5, 58, tzinfo=AMS), datetime(2026, 3, 7, 6, 1, tzinfo=AMS)
    )
    assert [(r[1], r[2]) for r in rows()] == [
        ("START", datetime(2026, 3, 6, 21, 0, tzinfo=UTC)),
        ("END", datetime(2026, 3, 7, 5, 0, tzinfo=UTC)),
    ]


@pytest.mark.django_db
def test_transitions_follow_the_depot_time_zone_across_the_spring_dst_change(scheduled):
    # Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST. 02:30 does not exist that day.
    scheduled(
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": 300,
            "schedule": {"days": ["SAT", "SUN"], "start": "02:30", "end": "08:00"},
        },
        datetime(2026, 3, 27, tzinfo=UTC),
    )
    run_every_minute(
        datetime(2026, 3, 28, 1, 0, tzinfo=UTC), datetime(2026, 3, 28, 1, 45, tzinfo=UTC)
    )
    run_every_minute(
        datetime(2026, 3, 29, 0, 50, tzinfo=UTC), datetime(2026, 3, 29, 1, 5, tzinfo=UTC)
    )
    run_every_minute(
        datetime(2026, 3, 29, 5, 55, tzinfo=UTC), datetime(2026, 3, 29, 6, 5, tzinfo=UTC)
    )
    assert [(r[1], r[2]) for r in rows()] == [
        ("START", datetime(2026, 3, 28, 1, 30, tzinfo=UTC)),  # Saturday 02:30 CET
        ("END", datetime(2026, 3, 28, 7, 0, tzinfo=UTC)),  # Saturday 08:00 CET (caught up later)
        (
            "START",
            datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        ),  # Sunday: 03:00 CEST, the first valid instant
        ("END", datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),  # 08:00 CEST
    ]


@pytest.mark.django_db
def test_transitions_follow_the_depot_time_zone_across_the_autumn_dst_change(scheduled):
    # Sunday 2026-10-25: 03:00 CEST becomes 02:00 CET.
    scheduled(
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": 300,
            "schedule": {"days": ["SUN"], "start": "01:00", "end": "04:00"},
        },
        datetime(2026, 10, 20, tzinfo=UTC),
    )
    run_every_minute(
        datetime(2026, 10, 24, 22, 55, tzinfo=UTC), datetime(2026, 10, 25, 3, 5, tzinfo=UTC)
    )
    assert [(r[1], r[2]) for r in rows()] == [
        ("START", datetime(2026, 10, 24, 23, 0, tzinfo=UTC)),  # 01:00 CEST
        ("END", datetime(2026, 10, 25, 3, 0, tzinfo=UTC)),  # 04:00 CET: a four-hour window
    ]


@pytest.mark.django_db
def test_the_first_run_looks_back_one_minute_and_a_long_gap_at_most_a_day(scheduled):
    scheduled(
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": 300,
            "schedule": {
                "days": ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"],
                "start": "12:00",
                "end": "13:00",
            },
        },
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    schedule_transitions_record(now=datetime(2026, 3, 2, 12, 0, 30, tzinfo=AMS))
    assert [r[1] for r in rows()] == ["START"]
    # the worker was down for three days: only the last day is recorded
    schedule_transitions_record(now=datetime(2026, 3, 5, 12, 30, tzinfo=AMS))
    assert [(r[1], r[2].astimezone(AMS).day) for r in rows()[1:]] == [("END", 4), ("START", 5)]


@pytest.mark.django_db
def test_a_policy_written_inside_its_window_records_no_start_before_it_existed(scheduled):
    scheduled(
        {"scope": "NODE", "node_id": "sb-1", "limit_kw": 200, "schedule": EVENING},
        datetime(2026, 3, 2, 16, 30, tzinfo=UTC),
    )
    schedule_transitions_record(now=datetime(2026, 3, 2, 16, 20, tzinfo=UTC))
    schedule_transitions_record(now=datetime(2026, 3, 2, 16, 31, tzinfo=UTC))
    schedule_transitions_record(now=datetime(2026, 3, 2, 20, 0, tzinfo=UTC))
    assert [r[1] for r in rows()] == ["END"]


@pytest.mark.django_db(transaction=True)
def test_balancing_hooks_hear_each_microgrids_transitions_after_commit(scheduled):
    scheduled(
        {"scope": "NODE", "node_id": "sb-1", "limit_kw": 200, "schedule": EVENING},
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    heard = []

    def hook(microgrid_id, transitions):
        heard.append(
            (microgrid_id, [(t.policy_id, t.transition, t.at, t.node_id) for t in transitions])
        )

    def broken(microgrid_id, transitions):
        raise RuntimeError("a broken hook does not stop the others")

    signals.on_schedule_transition(broken)
    signals.on_schedule_transition(hook)
    try:
        schedule_transitions_record(now=datetime(2026, 3, 2, 16, 59, tzinfo=AMS))
        schedule_transitions_record(now=datetime(2026, 3, 2, 17, 0, tzinfo=AMS))
        schedule_transitions_record(now=datetime(2026, 3, 2, 17, 1, tzinfo=AMS))
    finally:
        signals.unregister(broken)
        signals.unregister(hook)
    assert heard == [
        ("MG.NORTH-1", [("LP-1", "START", datetime(2026, 3, 2, 16, 0, tzinfo=UTC), "sb-1")])
    ]
    assert ScheduleActivation.objects.count() == 1


@pytest.mark.django_db
def test_the_celery_task_runs_the_service(scheduled, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "microgrid.limits.tasks.schedule_transitions_record", lambda: calls.append(1) or 0
    )
    assert record_schedule_transitions.apply().get() == 0
    assert calls == [1]


def test_the_beat_schedule_runs_the_task_every_minute_and_lets_stale_runs_expire():
    entry = settings.CELERY_BEAT_SCHEDULE["limits-schedule-transitions"]
    assert entry["task"] == record_schedule_transitions.name
    assert entry["options"]["expires"] < 60
    assert entry["schedule"].minute == set(range(60))


@pytest.mark.django_db
def test_a_run_scoped_to_one_microgrid_leaves_the_others_watermarks_alone(scheduled, microgrid):
    from microgrid.topology.services import microgrid_create

    scheduled(
        {"scope": "NODE", "node_id": "sb-1", "limit_kw": 200, "schedule": EVENING},
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    other = microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": "MG.OTHER-1",
                "name": "Another depot",
                "depot": {"depot_id": "DEPOT-O", "name": "Other", "timezone": "Europe/Amsterdam"},
            }
        )
    )
    five_pm = datetime(2026, 3, 2, 17, 0, tzinfo=AMS)
    schedule_transitions_record(now=five_pm, microgrid=other)
    assert rows() == []
    state = LimitState.objects.filter(microgrid=microgrid).first()
    assert state is None or state.transitions_checked_until is None
    schedule_transitions_record(now=five_pm, microgrid=microgrid)
    assert [r[:2] for r in rows()] == [("LP-1", "START")]
