"""Writes of the access room: revoking API tokens (admin action and `revoke_api_token`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from microgrid.common.models import ApiToken


def api_tokens_revoke(
    *, tokens: Iterable[ApiToken], now: datetime | None = None, user=None
) -> list[ApiToken]:
    """Revoke the given tokens that are still active; the revoked ones, each with a history row.

    A revoked token is refused at once (the authentication reads `revoked_at` on every
    request) and stays listed, so admin shows who had which key and until when.
    """
    now = now or timezone.now()
    revoked = []
    with transaction.atomic():
        pks = [t.pk for t in tokens]
        for token in (
            ApiToken.objects.select_for_update()
            .select_related("user")
            .filter(pk__in=pks, revoked_at__isnull=True)
            .order_by("pk")
        ):
            token.revoked_at = now
            token._history_user = user
            token.save(update_fields=["revoked_at"])
            revoked.append(token)
    return revoked
