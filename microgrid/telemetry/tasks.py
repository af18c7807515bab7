from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from microgrid.telemetry.services import telemetry_prune


@shared_task(name="telemetry.prune", ignore_result=True)
def prune_telemetry() -> int:
    return telemetry_prune(
        older_than=timezone.now() - timedelta(hours=settings.TELEMETRY_RETENTION_HOURS)
    )
