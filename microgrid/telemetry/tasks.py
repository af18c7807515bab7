from celery import shared_task
from django.utils import timezone

from microgrid.telemetry.services import telemetry_maintain


@shared_task(name="telemetry.prune", ignore_result=True)
def prune_telemetry() -> dict[str, int]:
    return telemetry_maintain(now=timezone.now())
