"""Celery tasks of the envelopes app: thin, idempotent, calling services."""

from celery import shared_task

from microgrid.envelopes.services import envelope_transitions_record


@shared_task(name="envelopes.record_transitions", ignore_result=True)
def record_transitions() -> int:
    """Every few seconds (beat): envelopes that became ACTIVE or EXPIRED, peers gone offline."""
    return envelope_transitions_record()


@shared_task(name="envelopes.oscp_tick", ignore_result=True)
def oscp_tick() -> None:
    """Every few seconds (beat): heartbeats and measurements due, retries due, segment sets
    timed out. Each due message is delivered by its own task, so one unreachable CP holds up
    nothing else."""
    from microgrid.envelopes.outbound import oscp_tick_run

    for pk in oscp_tick_run()["due"]:
        deliver_oscp.delay(pk)


@shared_task(name="envelopes.deliver_oscp", ignore_result=True)
def deliver_oscp(pk: int) -> str | None:
    """One attempt at one outbound OSCP message (a no-op when it is not due or is done)."""
    from microgrid.envelopes.outbox import outbound_deliver

    return outbound_deliver(pk=pk)
