"""Celery tasks of the dispatch app: thin, by id, the same on the filesystem broker and Redis."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from dispatch.services import deliveries_send, deliveries_sweep


@shared_task(
    name="dispatch.deliver",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    max_retries=5,
)
def deliver(microgrid_id: str) -> int:
    """Send what is due for one microgrid. Routed to the `dispatch` queue (settings), so a
    slow receiver holds a dispatch worker slot, never a cycle or another microgrid's send."""
    return deliveries_send(microgrid_id=microgrid_id)


@shared_task(name="dispatch.sweep", ignore_result=True)
def sweep() -> int:
    """Beat, every DISPATCH_SWEEP_S: expiries, retries whose backoff has passed, deliveries
    left by a broker outage or a dead worker."""
    return len(deliveries_sweep())
