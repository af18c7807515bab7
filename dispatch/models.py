"""The dispatch outbox: each cycle's setpoints as deliveries, their send attempts, and each
microgrid's channel settings."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from balancing.models import Cycle
from dispatch.choices import Channel, DeliveryStatus, TargetType
from microgrid.topology.models import Microgrid

DEFAULT_DEADBAND_KW = 0.5
DEFAULT_REFRESH_S = 30


class DispatchConfig(models.Model):
    """How a microgrid's setpoints leave: its webhook (if any) and the change-only rule."""

    microgrid = models.OneToOneField(
        Microgrid, on_delete=models.CASCADE, related_name="dispatch_config"
    )
    webhook_url = models.CharField(
        max_length=500, blank=True, help_text="http:// or https://; empty: no webhook"
    )
    # Kept as given: the HMAC needs the secret itself, not a hash of it.
    webhook_secret = models.CharField(max_length=200, blank=True)
    deadband_kw = models.FloatField(default=DEFAULT_DEADBAND_KW)
    refresh_s = models.PositiveIntegerField(default=DEFAULT_REFRESH_S)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["webhook_secret"])

    class Meta:
        verbose_name = "dispatch configuration"
        constraints = [
            models.CheckConstraint(condition=Q(deadband_kw__gte=0), name="dispatch_deadband_ge0"),
            models.CheckConstraint(
                condition=Q(webhook_url="") | ~Q(webhook_secret=""),
                name="dispatch_webhook_has_secret",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} dispatch ({'webhook' if self.webhook_url else 'pull'})"


class Delivery(models.Model):
    """One target's setpoint of one cycle, and what became of it (no simple-history rows:
    a 2,000-charger cycle writes 2,000 of these; its send attempts are `DeliveryAttempt`)."""

    delivery_id = models.CharField(max_length=40, unique=True)
    # Every delivery of one cycle on one channel travels in one message with this id.
    batch_id = models.CharField(max_length=40)
    # Few indexes: every cycle inserts a row per charger (the composite ones lead with it).
    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    cycle = models.ForeignKey(Cycle, on_delete=models.CASCADE, related_name="deliveries")
    target_type = models.CharField(max_length=10, choices=TargetType.choices)
    target_id = models.CharField(max_length=64, help_text="asset_id, or the scope's node_id")
    scope = models.JSONField(null=True, blank=True)
    channel = models.CharField(max_length=12, choices=Channel.choices)
    limit_kw = models.FloatField()
    valid_until = models.DateTimeField()
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "target_type", "target_id"]
        indexes = [
            models.Index(fields=["microgrid", "status"], name="delivery_mg_status"),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.target_id} {self.limit_kw} kW ({self.status})"


class LastAccepted(models.Model):
    """Per target, the last setpoint a receiver accepted: what the change-only rule compares to."""

    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    target_type = models.CharField(max_length=10, choices=TargetType.choices)
    target_id = models.CharField(max_length=64)
    limit_kw = models.FloatField()
    valid_until = models.DateTimeField()
    delivery_id = models.CharField(max_length=40)
    accepted_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "target_type", "target_id"], name="last_accepted_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.target_id} {self.limit_kw} kW until {self.valid_until.isoformat()}"


class DeliveryAttempt(models.Model):
    """One send of one batch (a webhook POST, a simulator hand-over): the deliveries' history."""

    batch_id = models.CharField(max_length=40, db_index=True)
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    cycle = models.ForeignKey(Cycle, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=12, choices=Channel.choices)
    attempt = models.PositiveIntegerField()
    targets = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=12, choices=DeliveryStatus.choices)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["microgrid", "-started_at"], name="attempt_mg_started")]

    def __str__(self) -> str:
        return f"{self.channel} {self.batch_id} #{self.attempt}: {self.outcome}"
