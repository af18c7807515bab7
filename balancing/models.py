"""Cycles (one document per run), the triggers they served, and breaches."""

from django.db import models
from simple_history.models import HistoricalRecords

from balancing.choices import BreachStatus, Outcome, SourceMode, TriggerType
from microgrid.topology.models import Microgrid


class Cycle(models.Model):
    """One run of the balancing engine, stored whole: indexed columns plus the full document."""

    cycle_id = models.CharField(max_length=40, unique=True)
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="cycles")
    seq = models.PositiveIntegerField(help_text="1, 2, 3... per microgrid")
    trigger_type = models.CharField(max_length=20, choices=TriggerType.choices)
    scope = models.JSONField()
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField()
    topology_version = models.PositiveIntegerField()
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    source_mode = models.CharField(max_length=20, choices=SourceMode.choices)
    reason_codes = models.JSONField(default=list)
    document = models.JSONField(help_text="the cycle as the API returns it")
    snapshot = models.JSONField(help_text="every input, so replay_cycle can recompute it")

    class Meta:
        ordering = ["-started_at", "-seq"]
        constraints = [
            models.UniqueConstraint(fields=["microgrid", "seq"], name="cycle_seq_unique")
        ]
        indexes = [
            models.Index(fields=["microgrid", "-started_at"], name="cycle_mg_started"),
            models.Index(fields=["microgrid", "trigger_type"], name="cycle_mg_trigger"),
            models.Index(fields=["microgrid", "outcome"], name="cycle_mg_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} cycle {self.seq} ({self.outcome})"


class CycleTrigger(models.Model):
    """A request for a cycle; many may be served by one cycle (coalescing), none is lost."""

    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    trigger = models.JSONField()
    scope = models.JSONField()
    requested_at = models.DateTimeField()
    served_by = models.ForeignKey(
        Cycle, null=True, blank=True, on_delete=models.SET_NULL, related_name="triggers"
    )

    class Meta:
        indexes = [models.Index(fields=["microgrid", "served_by"], name="trigger_pending")]

    def __str__(self) -> str:
        return f"{self.microgrid_id} {self.trigger.get('type')} at {self.requested_at.isoformat()}"


class Breach(models.Model):
    breach_id = models.CharField(max_length=40, unique=True)
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="breaches")
    cycle = models.ForeignKey(Cycle, on_delete=models.CASCADE, related_name="breaches")
    node_id = models.CharField(max_length=64)
    measured_kw = models.FloatField()
    limit_kw = models.FloatField()
    excess_kw = models.FloatField()
    exceeded = models.JSONField()
    primary_reason_code = models.CharField(max_length=40)
    status = models.CharField(
        max_length=10, choices=BreachStatus.choices, default=BreachStatus.OPEN
    )
    detected_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        Cycle, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "breaches"  # not Django's "Breachs"
        ordering = ["-detected_at", "node_id"]
        indexes = [models.Index(fields=["microgrid", "status"], name="breach_mg_status")]
        constraints = [
            # At most one open breach per node: later cycles update the open one.
            models.UniqueConstraint(
                fields=["microgrid", "node_id"],
                condition=models.Q(status="OPEN"),
                name="one_open_breach_per_node",
            )
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} {self.node_id} {self.primary_reason_code} ({self.status})"

    def to_dict(self) -> dict:
        return {
            "breach_id": self.breach_id,
            "cycle_id": self.cycle.cycle_id if self.cycle_id else None,
            "node_id": self.node_id,
            "measured_kw": self.measured_kw,
            "limit_kw": self.limit_kw,
            "excess_kw": self.excess_kw,
            "exceeded": self.exceeded,
            "primary_reason_code": self.primary_reason_code,
            "status": self.status,
            "detected_at": self.detected_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


class CycleSchedule(models.Model):
    """When each microgrid's scheduled cycle was last enqueued (no history: a clock, not a fact)."""

    microgrid = models.OneToOneField(
        Microgrid, on_delete=models.CASCADE, related_name="cycle_schedule"
    )
    last_enqueued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.microgrid_id} last enqueued {self.last_enqueued_at}"

    @classmethod
    def claim_due(cls, now) -> list[tuple[str, int]]:
        """Mark every due microgrid as enqueued now and return (microgrid_id, interval) pairs.

        One transaction whatever the fleet size: the due schedule rows are read
        with FOR UPDATE SKIP LOCKED and claimed with one UPDATE, so two beat
        processes (or a restarted one, or two enqueue tasks on two workers)
        enqueue each due cycle once: the second skips the rows the first holds
        and, once the first has committed, no longer finds them due. On SQLite
        the IMMEDIATE transaction serialises the claims instead. Only the
        schedule rows are locked (`of=("self",)`), never the microgrid rows a
        running cycle holds.
        """
        from datetime import timedelta

        from django.db import transaction

        missing = Microgrid.objects.filter(enabled=True, cycle_schedule__isnull=True).values_list(
            "pk", flat=True
        )
        new = [cls(microgrid_id=pk) for pk in missing]
        if new:
            cls.objects.bulk_create(new, ignore_conflicts=True)
        with transaction.atomic():
            rows = list(
                cls.objects.select_for_update(of=("self",), skip_locked=True)
                .filter(microgrid__enabled=True)
                .order_by("microgrid__microgrid_id")
                .values_list(
                    "pk",
                    "microgrid__microgrid_id",
                    "microgrid__cycle_interval_s",
                    "last_enqueued_at",
                )
            )
            # Half a second of slack: beat ticks every second and must not skip a beat.
            due = [
                (pk, microgrid_id, interval)
                for pk, microgrid_id, interval, last in rows
                if last is None or last <= now - timedelta(seconds=interval - 0.5)
            ]
            if due:
                cls.objects.filter(pk__in=[pk for pk, _, _ in due]).update(last_enqueued_at=now)
        return [(microgrid_id, interval) for _, microgrid_id, interval in due]
