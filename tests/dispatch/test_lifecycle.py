"""Dispatch rows have a lifecycle (issue 18, spec 4.7 Lifecycle): the settled rows of cycles
older than DISPATCH_RETENTION_HOURS are pruned, a cycle's all at once, never an open one, never
the newest cycle's, never so that the change-only rule trusts a state it no longer knows; the
push channel's cycles then compact in the same maintenance run, and every reader of such a
cycle says its deliveries were pruned. On SQLite and, with DATABASE_URL=postgres://...,
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from balancing import selectors as balancing_selectors
from balancing.lifecycle import cycle_maintain
from balancing.models import Cycle, CycleBlock, cycle_id_of
from balancing.services import cycle_request, trigger_of
from dispatch.choices import DeliveryStatus
from dispatch.lifecycle import dispatch_prune
from dispatch.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryBatch,
    DispatchPruned,
    ReceiverState,
)
from dispatch.packing import pack_held, unpack_held
from dispatch.selectors import cycle_dispatch, cycle_targets
from dispatch.services import dispatch_config_input, dispatch_config_set
from microgrid.telemetry.services import telemetry_ingest
from tests.dispatch.conftest import SECRET

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STEP = timedelta(seconds=15)
# Nothing listens there (the lead's port range for this work): on_commit sends do not run in
# these tests, the rows stay as the cycles wrote them until a test settles them.
HOOK = "http://127.0.0.1:24999/hook"


def _webhook(microgrid):
    dispatch_config_set(
        microgrid=microgrid,
        **dispatch_config_input({"webhook": {"url": HOOK, "secret": SECRET}}),
    )


def _run(microgrid, start: datetime, n: int) -> list[Cycle]:
    out = []
    for i in range(n):
        at = start + STEP * i
        readings = [
            {
                "asset_id": c,
                "power_kw": 0,
                "observed_at": at.isoformat(),
                "connected": True,
                "requested_kw": 20 + (i * 7 + k * 13) % 130,
            }
            for k, c in enumerate(("CH-01", "CH-02", "CH-03"))
        ]
        readings.append({"asset_id": "SITE", "power_kw": 50, "observed_at": at.isoformat()})
        telemetry_ingest(microgrid=microgrid, now=at, readings=readings)
        out.append(
            cycle_request(
                microgrid=microgrid, trigger=trigger_of("SCHEDULED"), now=lambda at=at: at
            ).cycle
        )
    return out


def _settle(cycle, status, attempts=1):
    DeliveryBatch.objects.filter(cycle=cycle).update(status=status, attempts=attempts)


def _attempt(cycle, outcome):
    batch = DeliveryBatch.objects.get(cycle=cycle)
    DeliveryAttempt.objects.create(
        batch_id=batch.batch_id,
        microgrid_id=cycle.microgrid_id,
        cycle=cycle,
        channel=batch.channel,
        attempt=1,
        targets=3,
        started_at=batch.created_at,
        finished_at=batch.created_at,
        outcome=outcome,
    )


def _state(microgrid, seq, until):
    return ReceiverState.objects.create(
        microgrid=microgrid,
        channel="WEBHOOK",
        endpoint=HOOK,
        held=pack_held({"CH-01": 10.0}),
        valid_until=until,
        seq=seq,
        updated_at=T0,
    )


def test_settled_rows_past_retention_go_open_newest_and_recent_ones_stay(microgrid):
    _webhook(microgrid)
    cycles = _run(microgrid, T0, 6)
    # Each cycle superseded the one before, unsent; now as the sends would have left them.
    _settle(cycles[0], DeliveryStatus.ACCEPTED)
    _attempt(cycles[0], DeliveryStatus.ACCEPTED)
    _settle(cycles[1], DeliveryStatus.FAILED)  # still retried: open
    _attempt(cycles[1], DeliveryStatus.FAILED)
    _settle(cycles[2], DeliveryStatus.REJECTED)
    _attempt(cycles[2], DeliveryStatus.REJECTED)
    _settle(cycles[3], DeliveryStatus.SUPERSEDED, attempts=0)
    _settle(cycles[4], DeliveryStatus.EXPIRED, attempts=0)
    _settle(cycles[5], DeliveryStatus.ACCEPTED)  # the newest: the card reads it
    state = _state(microgrid, 1, T0 + timedelta(days=30))
    # Inside the retention nothing goes.
    assert dispatch_prune(now=T0 + timedelta(hours=5, minutes=59)) == 0
    assert DeliveryBatch.objects.count() == 6
    assert dispatch_prune(now=T0 + timedelta(hours=7)) == 4
    kept = sorted(DeliveryBatch.objects.values_list("seq", flat=True))
    assert kept == [2, 6]
    assert list(DeliveryAttempt.objects.values_list("cycle__seq", flat=True)) == [2]
    assert DispatchPruned.objects.get(microgrid=microgrid).through_seq == 5
    # The pruned ones were accepted, rejected or never sent: what the receiver holds is
    # still known, and the state is as it was.
    state.refresh_from_db()
    assert unpack_held(state.held) == {"CH-01": 10.0} and state.valid_until is not None
    # The open one, once settled, goes in a later run; the newest never.
    _settle(cycles[1], DeliveryStatus.EXPIRED)
    assert dispatch_prune(now=T0 + timedelta(hours=7)) == 1
    assert list(DeliveryBatch.objects.values_list("seq", flat=True)) == [6]
    assert dispatch_prune(now=T0 + timedelta(days=30)) == 0
    # That one was sent after the last accepted message and expired: its outcome is unknown,
    # so pruning it makes the state forget what it held (the next message is full).
    state.refresh_from_db()
    assert unpack_held(state.held) == {} and state.valid_until is None
    assert DispatchPruned.objects.get(microgrid=microgrid).through_seq == 5


def test_a_cycle_with_an_open_delivery_keeps_all_its_rows(microgrid):
    """OCPP chargers have a row each: a cycle's go together, once all are settled."""
    cycles = _run(microgrid, T0, 3)

    def rows(cycle, statuses):
        return [
            Delivery(
                delivery_id=f"{cycle.seq}-{i}",
                batch_id=f"b{cycle.seq}",
                microgrid_id=cycle.microgrid_id,
                cycle=cycle,
                target_type="CHARGER",
                target_id=f"CH-0{i + 1}",
                channel="OCPP",
                limit_kw=11.0,
                valid_until=cycle.completed_at + timedelta(seconds=45),
                status=status,
                created_at=cycle.completed_at,
            )
            for i, status in enumerate(statuses)
        ]

    Delivery.objects.bulk_create(
        rows(cycles[0], ["ACCEPTED", "UNCHANGED", "EXPIRED"])
        + rows(cycles[1], ["ACCEPTED", "SENT", "REJECTED"])
        + rows(cycles[2], ["ACCEPTED", "ACCEPTED", "ACCEPTED"])
    )
    assert dispatch_prune(now=T0 + timedelta(hours=7)) == 1
    left = Delivery.objects.values_list("cycle__seq", "status")
    assert sorted(left) == sorted(
        [(2, "ACCEPTED"), (2, "SENT"), (2, "REJECTED")] + [(3, "ACCEPTED")] * 3
    )
    # What the cycles say: the pruned one, pruned; the one with rows, its rows.
    summary, statuses = cycle_dispatch(cycles[0])
    assert summary == {"channels": [], "counts": {}, "pruned": True}
    assert statuses == {}
    summary, _ = cycle_dispatch(cycles[1])
    assert summary["counts"] == {"ACCEPTED": 1, "REJECTED": 1, "SENT": 1}
    assert "pruned" not in summary


def test_pruning_takes_a_fixed_number_of_statements_whatever_the_batch(microgrid):
    _webhook(microgrid)
    few = _run(microgrid, T0, 3)
    for c in few:
        _attempt(c, DeliveryStatus.SUPERSEDED)
    with CaptureQueriesContext(connection) as small:
        assert dispatch_prune(now=T0 + timedelta(hours=7)) == 2
    many = _run(microgrid, T0 + timedelta(minutes=5), 30)
    for c in many:
        _attempt(c, DeliveryStatus.SUPERSEDED)
    with CaptureQueriesContext(connection) as large:
        assert dispatch_prune(now=T0 + timedelta(hours=7)) == 30
    assert len(large.captured_queries) == len(small.captured_queries)
    # Bounded: `limit` cycles per run.
    _run(microgrid, T0 + timedelta(minutes=20), 5)
    assert dispatch_prune(now=T0 + timedelta(hours=7), limit=2) == 2


def test_a_push_channels_old_quarter_hour_compacts_in_the_same_maintenance_run(
    microgrid, operator_client, support_api
):
    _webhook(microgrid)
    cycles = _run(microgrid, T0, 70)  # 60 in 09:00-09:15, 10 after
    assert DeliveryBatch.objects.count() == 70
    # Within the retention, the batches keep every cycle a row, and nothing compacts.
    done = cycle_maintain(now=T0 + timedelta(hours=1))
    assert done["dispatch_pruned"] == 0 and done["compacted"] == 0
    done = cycle_maintain(now=T0 + timedelta(hours=7))
    # Every cycle's batch but the newest's (PENDING) went, and the closed quarter hour moved.
    assert done["dispatch_pruned"] == 69 and done["compacted"] == 60
    assert list(DeliveryBatch.objects.values_list("seq", flat=True)) == [70]
    assert CycleBlock.objects.get().cycles == 60
    assert sorted(Cycle.objects.values_list("seq", flat=True)) == list(range(61, 71))
    # Every reader of a pruned cycle, compacted or still a row, says so; none fails.
    for seq in (5, 65):
        cycle = balancing_selectors.cycle_get(microgrid, cycle_id_of(microgrid.microgrid_id, seq))
        assert (cycle.pk is None) == (seq <= 60)
        assert cycle_targets(cycle) == []
        answer = support_api.get(
            f"/api/microgrids/{microgrid.microgrid_id}/cycles/{cycles[seq - 1].cycle_id}/"
        )
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert body["dispatch"] == {"channels": [], "counts": {}, "pruned": True}
        assert {c["dispatch_status"] for c in body["chargers"]} == {None}
        page = operator_client.get(
            f"/manage/microgrids/{microgrid.microgrid_id}/cycles/{cycles[seq - 1].cycle_id}/"
        )
        assert page.status_code == 200
        assert b'data-testid="dispatch-pruned"' in page.content
    # The newest still shows its delivery.
    summary, _ = cycle_dispatch(cycles[-1])
    assert summary["channels"] == ["WEBHOOK"] and "pruned" not in summary


def test_a_pull_microgrid_is_not_marked_and_its_compacted_cycles_read_as_pulled(microgrid):
    cycles = _run(microgrid, T0, 70)
    done = cycle_maintain(now=T0 + timedelta(hours=7))
    assert done["dispatch_pruned"] == 0 and done["compacted"] == 60
    assert not DispatchPruned.objects.exists()
    cycle = balancing_selectors.cycle_get(microgrid, cycles[4].cycle_id)
    summary, _ = cycle_dispatch(cycle)
    assert summary["channels"] == ["PULL"] and summary["counts"] == {"SUPERSEDED": 3}
