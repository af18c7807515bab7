"""Celery tasks of the envelopes app: thin, idempotent, calling services."""

from celery import shared_task

from microgrid.envelopes.services import envelope_transitions_record


@shared_task(name="envelopes.record_transitions", ignore_result=True)
def record_transitions() -> int:
    """Every few seconds (beat): envelopes that became ACTIVE or EXPIRED, peers gone offline."""
    return envelope_transitions_record()
