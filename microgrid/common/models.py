"""API tokens, stored hashed so a database leak reveals no usable key."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords


def hash_token(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    key_prefix = models.CharField(max_length=8, help_text="First characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords(excluded_fields=["key_hash", "last_used_at"])

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.key_prefix}… ({self.user})"

    @classmethod
    def issue(cls, *, user, name: str = "") -> tuple[ApiToken, str]:
        """Create a token; the clear key is returned once and never stored."""
        key = secrets.token_hex(20)
        token = cls.objects.create(
            user=user, name=name, key_prefix=key[:8], key_hash=hash_token(key)
        )
        return token, key


class IdempotencyRecord(models.Model):
    """The answer to a canonical POST sent with an Idempotency-Key, replayed for a repeat.

    No history: it is a cache of answers, kept for IDEMPOTENCY_TTL_HOURS.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    body_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "key", "method", "path"], name="idempotency_key_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.method} {self.path} {self.key}"


class AccessRefusal(models.Model):
    """A request refused because the microgrid (or legacy circuit) it named is outside the
    caller's memberships (spec 6, access). The caller got the same 404 as for an unknown id;
    support reads these rows in admin. Append-only, so no history."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    username = models.CharField(max_length=150, help_text="kept when the user is deleted")
    microgrid_id = models.CharField(max_length=64, blank=True, default="")
    circuit_id = models.CharField(max_length=200, blank=True, default="")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    code = models.CharField(max_length=40, help_text="the not-found code the caller got")
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        what = self.microgrid_id or f"circuit {self.circuit_id}"
        return f"{self.username} {self.method} {self.path} ({what})"
