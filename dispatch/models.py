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


class DeliveryBatch(models.Model):
    """One cycle's setpoints on one pushed channel that answers for all of them at once (the
    webhook, the simulator), packed in one row: one POST answers for every target it carries,
    so the batch's status is each sent target's; an UNCHANGED target is not sent, only renewed
    (spec 4.7). Per-target statuses are derived when read (`selectors.cycle_targets`)."""

    batch_id = models.CharField(max_length=40, unique=True)
    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    cycle = models.ForeignKey(Cycle, on_delete=models.CASCADE, related_name="delivery_batches")
    seq = models.PositiveIntegerField(help_text="the cycle's seq: receivers apply newer ones only")
    channel = models.CharField(max_length=12, choices=Channel.choices)
    # Packed by dispatch.packing: {"ids": [asset_id...], "kw": [limit_kw...], "send": "1001..."
    # (1 sent, 0 unchanged: renewed), "budgets": [[scope, budget_kw], ...]}, in asset_id order.
    targets = models.TextField()
    full = models.BooleanField(
        default=False, help_text="every setpoint is sent; the receiver drops any other it holds"
    )
    sent_count = models.PositiveIntegerField(help_text="charger setpoints in the message")
    unchanged_count = models.PositiveIntegerField(help_text="held setpoints it only renews")
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
        verbose_name = "delivery batch"
        verbose_name_plural = "delivery batches"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["microgrid", "status"], name="batch_mg_status"),
            models.Index(fields=["status", "next_attempt_at"], name="batch_due"),
            models.Index(fields=["microgrid", "seq"], name="batch_mg_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.cycle_id} ({self.status})"


class ReceiverState(models.Model):
    """What a pushed channel's receiver holds for one microgrid, as far as its answers say: the
    setpoints of the chargers it accepted and the expiry the last accepted message gave them
    all. The change-only rule compares each cycle with it; read and written once per message."""

    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=12, choices=Channel.choices)
    endpoint = models.CharField(max_length=500, blank=True, help_text="the webhook URL it is for")
    held = models.TextField(default="{}", help_text="{asset_id: limit_kw} (dispatch.packing)")
    valid_until = models.DateTimeField(null=True, blank=True)
    seq = models.PositiveIntegerField(default=0, help_text="the last applied cycle's seq")
    batch_id = models.CharField(max_length=40, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["microgrid", "channel"], name="receiver_state_unique")
        ]

    def __str__(self) -> str:
        from dispatch.packing import unpack_held

        return f"{self.microgrid_id} {self.channel}: {len(unpack_held(self.held))} held"


class Delivery(models.Model):
    """One OCPP charger's setpoint of one cycle, and what became of it (each station answers
    for its own EVSE; the gateway claims per station). No simple-history rows; its send
    attempts are `DeliveryAttempt`. Webhook and simulator setpoints are `DeliveryBatch`es."""

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
    """Per OCPP charger, the last setpoint its station accepted: what the change-only rule
    compares to (the batched channels keep `ReceiverState`)."""

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


class DispatchPruned(models.Model):
    """How far a microgrid's settled dispatch rows were pruned (dispatch/lifecycle.py): the
    highest seq of a cycle whose rows went. A cycle at or below it with no rows left shows
    its dispatch as pruned rather than as pulled (spec 4.7, Lifecycle). One row per
    microgrid, written once per pruning run."""

    microgrid = models.OneToOneField(
        Microgrid, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    through_seq = models.PositiveIntegerField()
    pruned_at = models.DateTimeField()

    class Meta:
        verbose_name = "dispatch pruning mark"

    def __str__(self) -> str:
        return f"{self.microgrid_id} dispatch pruned through seq {self.through_seq}"
