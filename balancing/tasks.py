"""Celery tasks: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

from balancing.models import CycleSchedule
from balancing.services import cycle_request, trigger_of
from microgrid.topology.models import Microgrid

log = logging.getLogger(__name__)


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
    microgrid_id: str, trigger: dict | None = None, scope: dict | None = None
) -> str | None:
    microgrid = Microgrid.objects.filter(microgrid_id=microgrid_id, enabled=True).first()
    if microgrid is None or microgrid.topology_version == 0:
        return None  # nothing to balance yet; not an error for the schedule
    outcome = cycle_request(
        microgrid=microgrid, trigger=trigger or trigger_of("SCHEDULED"), scope=scope
    )
    return outcome.cycle.cycle_id


@shared_task(name="balancing.enqueue_due_cycles", ignore_result=True)
def enqueue_due_cycles() -> int:
    """Beat calls this every second; it enqueues run_cycle for every microgrid whose interval has passed."""
    now = timezone.now()
    due = CycleSchedule.claim_due(now)
    for microgrid_id, interval in due:
        # A scheduled cycle that could not start within its interval is superseded by the next one.
        run_cycle.apply_async(args=[microgrid_id, trigger_of("SCHEDULED")], expires=interval)
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
