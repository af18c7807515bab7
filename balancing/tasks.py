"""Celery tasks: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

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
    found = _enabled_microgrid(microgrid_id=microgrid_id)
    if not found or found[0][1] == 0:
        return None  # nothing to balance yet; not an error for the schedule
    microgrid = Microgrid(pk=found[0][0], microgrid_id=microgrid_id)
    asked = None
    if requested_at:
        try:
            asked = datetime.fromisoformat(requested_at)
        except ValueError:
            log.warning("run_cycle for %s: ignoring requested_at %r", microgrid_id, requested_at)
    outcome = cycle_request(
        microgrid=microgrid,
        trigger=trigger or trigger_of("SCHEDULED"),
        scope=scope,
        requested_at=asked if asked and asked.tzinfo else None,
    )
    return outcome.cycle.cycle_id


@shared_task(name="balancing.enqueue_due_cycles", ignore_result=True)
def enqueue_due_cycles() -> int:
    """Beat calls this every second; it enqueues run_cycle for every microgrid whose interval has passed."""
    now = timezone.now()
    due = CycleSchedule.claim_due(now)
    for microgrid_id, interval in due:
        # A scheduled cycle that could not start within its interval is superseded by the next one.
        run_cycle.apply_async(
            args=[microgrid_id, trigger_of("SCHEDULED"), None, now.isoformat()], expires=interval
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
