"""Celery tasks of the limits app: thin, idempotent, calling services."""

from celery import shared_task

from microgrid.limits.services import schedule_transitions_record


@shared_task(name="limits.record_schedule_transitions", ignore_result=True)
def record_schedule_transitions() -> int:
    """Each minute (beat): record TOU schedule starts and ends, tell balancing."""
    return schedule_transitions_record()
