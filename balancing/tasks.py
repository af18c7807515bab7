"""Celery tasks: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from balancing.batch import cycle_batch
from balancing.models import CycleSchedule
from balancing.services import cycle_request, trigger_of
from microgrid.common.prepared import PreparedRead
from microgrid.topology.models import Microgrid

log = logging.getLogger(__name__)


# Only the key and the version: cycle_request reads the row itself, under the lock.
_enabled_microgrid = PreparedRead(
    lambda microgrid_id: (
        Microgrid.objects.filter(microgrid_id=microgrid_id, enabled=True)
        .order_by()
        .values_list("pk", "topology_version")[:1]
    ),
    microgrid_id=str,
)


def _asked_at(requested_at: str | None) -> datetime | None:
    """The ISO 8601 instant a cycle was asked for; None when absent, unreadable or naive."""
    if not requested_at:
        return None
    try:
        asked = datetime.fromisoformat(requested_at)
    except ValueError:
        log.warning("ignoring requested_at %r: not an ISO 8601 time", requested_at)
        return None
    return asked if asked.tzinfo else None


def _run_one(microgrid_id: str, trigger: dict, scope: dict | None, asked: datetime | None):
    """One cycle of an enabled microgrid with a topology; returns its cycle_id (else None)."""
    found = _enabled_microgrid(microgrid_id=microgrid_id)
    if not found or found[0][1] == 0:
        return None  # nothing to balance yet; not an error for the schedule
    microgrid = Microgrid(pk=found[0][0], microgrid_id=microgrid_id)
    outcome = cycle_request(microgrid=microgrid, trigger=trigger, scope=scope, requested_at=asked)
    return outcome.cycle.cycle_id


@shared_task(
    name="balancing.run_cycle",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=8,
    acks_late=True,
)
def run_cycle(
    microgrid_id: str,
    trigger: dict | None = None,
    scope: dict | None = None,
    requested_at: str | None = None,
) -> str | None:
    """`requested_at` (ISO 8601) is when the cycle was asked for; the schedule passes the
    instant it found the microgrid due, so the trigger records how long the cycle waited."""
    return _run_one(
        microgrid_id, trigger or trigger_of("SCHEDULED"), scope, _asked_at(requested_at)
    )


@shared_task(name="balancing.run_scheduled_cycles", ignore_result=True, acks_late=True)
def run_scheduled_cycles(microgrid_ids: list[str], requested_at: str, interval_s: int) -> int:
    """The scheduled cycles of a batch of microgrids, in one task and one transaction.

    At fleet scale the broker round trip, the pool hand-over and the acknowledgement of a
    task, and the dozen reads and the transaction of a cycle, cost more than a 50-charger
    cycle's engine; a batch pays them once for BALANCING_SCHEDULE_BATCH cycles
    (`balancing.batch.cycle_batch`: one lock query, one query per kind of input for all
    members, each member's cycle written by the single path's own code, one commit).
    Members another transaction holds are then cycled one by one, waiting for their lock;
    if the batch fails, every member is. On its own, a database error hands that microgrid
    to its own retrying `run_cycle`, anything else is logged. A batch, or a member, not
    started within the interval is left to the next round (the schedule has claimed them
    again by then), as the task's own `expires` does for a batch that waited too long.
    """
    trigger = trigger_of("SCHEDULED")
    asked = _asked_at(requested_at)
    if _superseded(asked, interval_s, microgrid_ids, 0):
        return 0
    try:
        alone = cycle_batch(microgrid_ids, trigger=trigger, requested_at=asked).busy
    except Exception as exc:  # the batch rolled back whole: each member on its own
        log.warning("batch of %d scheduled cycles failed (%r); one by one", len(microgrid_ids), exc)
        alone = list(microgrid_ids)
    done = len(microgrid_ids) - len(alone)
    for i, microgrid_id in enumerate(alone):
        if _superseded(asked, interval_s, alone, i):
            break
        try:
            _run_one(microgrid_id, trigger, None, asked)
        except OperationalError as exc:
            log.warning("scheduled cycle of %s: %s; retrying on its own", microgrid_id, exc)
            run_cycle.apply_async(
                args=[microgrid_id, trigger, None, requested_at], expires=interval_s
            )
        except Exception:
            log.exception("scheduled cycle of %s failed", microgrid_id)
        done += 1
    return done


def _superseded(asked: datetime | None, interval_s: int, ids: list[str], i: int) -> bool:
    """Whether the round asked at `asked` is older than its interval (then ids[i:] are left
    to the next round, which has claimed them again)."""
    if asked is None or (timezone.now() - asked).total_seconds() < interval_s:
        return False
    log.warning(
        "scheduled cycles of %s and %d more superseded: the round is older than %s s",
        ids[i],
        len(ids) - i - 1,
        interval_s,
    )
    return True


def _batches(due: list[tuple[str, int]], size: int) -> list[tuple[list[str], int]]:
    """Due (microgrid_id, interval) pairs in batches of at most `size` sharing one interval."""
    by_interval: dict[int, list[str]] = {}
    for microgrid_id, interval in due:
        by_interval.setdefault(interval, []).append(microgrid_id)
    return [
        (ids[i : i + size], interval)
        for interval, ids in sorted(by_interval.items())
        for i in range(0, len(ids), size)
    ]


@shared_task(name="balancing.enqueue_due_cycles", ignore_result=True)
def enqueue_due_cycles() -> int:
    """Beat calls this every second; it enqueues the scheduled cycles of every microgrid whose
    interval has passed, BALANCING_SCHEDULE_BATCH microgrids per task."""
    now = timezone.now()
    due = CycleSchedule.claim_due(now)
    size = max(1, settings.BALANCING_SCHEDULE_BATCH)
    for microgrid_ids, interval in _batches(due, size):
        # A batch that could not start within its interval is superseded by the next round.
        run_scheduled_cycles.apply_async(
            args=[microgrid_ids, now.isoformat(), interval], expires=interval
        )
    return len(due)


def enqueue_cycle(microgrid_id: str, trigger: dict, scope: dict | None = None) -> None:
    """Ask for a cycle soon; used by TOU and envelope changes.

    A new limit must not wait for the broker: when it cannot take the task
    (Redis down), the cycle runs here, in-process, under the same lock.
    """
    try:
        run_cycle.apply_async(args=[microgrid_id, trigger, scope], retry=True)
    except Exception as exc:  # kombu/redis connection errors have no common base class
        log.warning(
            "broker unavailable (%s); running the %s cycle for %s in-process",
            exc.__class__.__name__,
            trigger.get("type"),
            microgrid_id,
        )
        microgrid = Microgrid.objects.filter(microgrid_id=microgrid_id, enabled=True).first()
        if microgrid is not None:
            cycle_request(microgrid=microgrid, trigger=trigger, scope=scope)


@shared_task(name="balancing.maintain_cycles", ignore_result=True)
def maintain_cycles() -> dict[str, int]:
    """Aggregate closed 15-minute buckets, compact aggregated ones into blocks, prune full
    cycles and blocks past CYCLE_RETENTION_DAYS and aggregates past
    CYCLE_AGGREGATE_RETENTION_DAYS; bounded per run (balancing.lifecycle)."""
    from balancing.lifecycle import cycle_maintain

    done = cycle_maintain(now=timezone.now())
    if any(done.values()):
        log.info("cycle maintenance %s", done)
    return done
