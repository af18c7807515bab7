from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from microgrid.common.models import IdempotencyRecord


@shared_task(name="common.prune_idempotency", ignore_result=True)
def prune_idempotency() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
