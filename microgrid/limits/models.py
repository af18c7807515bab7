"""Limit policies (Node Limits and Microgrid limits, optionally TOU-scheduled) and their audit."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from microgrid.common.fields import MAX_A, MAX_KW
from microgrid.limits.choices import LimitScope, LimitSource, TransitionKind
from microgrid.limits.schedules import Schedule
from microgrid.topology.models import Microgrid, MicrogridNode

MAX_LIMIT_KW = MAX_KW


class LimitPolicy(models.Model):
    """A cap in kW on one Microgrid Node (NODE) or on the whole microgrid (MICROGRID).

    Without a schedule it is the target's non-scheduled cap; with one it is a
    TOU cap, active in its windows (depot time zone). `policy_id` is the
    public id, "LP-<n>" numbered per microgrid (spec 3.2).
    """

    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="limit_policies"
    )
    policy_id = models.CharField(max_length=64)
    scope = models.CharField(max_length=10, choices=LimitScope.choices)
    # RESTRICT: a node with a policy cannot be deleted on its own (the topology
    # validator reports NODE_IN_USE first); deleting the microgrid removes both.
    node = models.ForeignKey(
        MicrogridNode,
        null=True,
        blank=True,
        on_delete=models.RESTRICT,
        related_name="limit_policies",
        verbose_name="Microgrid Node",
    )
    limit_kw = models.FloatField("limit (kW)")
    # Optionally also a per-phase current cap (A) on every phase of the target (issue 19).
    limit_a = models.FloatField("limit per phase (A)", null=True, blank=True)
    schedule_days = models.CharField(
        max_length=27, blank=True, default="", help_text="e.g. MON,TUE,WED; empty = not scheduled"
    )
    schedule_start = models.TimeField(null=True, blank=True)
    schedule_end = models.TimeField(null=True, blank=True)
    source = models.CharField(
        max_length=12, choices=LimitSource.choices, default=LimitSource.MANUAL
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "limit policy"
        verbose_name_plural = "limit policies"
        ordering = ["microgrid_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "policy_id"], name="limit_policy_id_unique_per_microgrid"
            ),
            models.CheckConstraint(
                condition=Q(limit_kw__gt=0) & Q(limit_kw__lte=MAX_LIMIT_KW),
                name="limit_kw_positive_finite",
            ),
            models.CheckConstraint(
                condition=Q(limit_a__isnull=True) | (Q(limit_a__gt=0) & Q(limit_a__lte=MAX_A)),
                name="limit_a_positive_finite",
            ),
            models.CheckConstraint(
                condition=(Q(scope=LimitScope.NODE) & Q(node__isnull=False))
                | (Q(scope=LimitScope.MICROGRID) & Q(node__isnull=True)),
                name="limit_scope_matches_node",
            ),
            models.CheckConstraint(
                condition=Q(source__in=LimitSource.values), name="limit_source_valid"
            ),
            models.CheckConstraint(
                condition=(
                    Q(schedule_days="")
                    & Q(schedule_start__isnull=True)
                    & Q(schedule_end__isnull=True)
                )
                | (
                    ~Q(schedule_days="")
                    & Q(schedule_start__isnull=False)
                    & Q(schedule_end__isnull=False)
                    & ~Q(schedule_start=F("schedule_end"))
                ),
                name="limit_schedule_complete",
            ),
            # At most one non-scheduled cap per target (LIMIT_ALREADY_EXISTS).
            models.UniqueConstraint(
                fields=["node"],
                condition=Q(scope=LimitScope.NODE, schedule_start__isnull=True),
                name="one_unscheduled_node_limit",
            ),
            models.UniqueConstraint(
                fields=["microgrid"],
                condition=Q(scope=LimitScope.MICROGRID, schedule_start__isnull=True),
                name="one_unscheduled_microgrid_limit",
            ),
        ]

    def __str__(self) -> str:
        target = self.node.node_id if self.node_id else "microgrid"
        return f"{self.policy_id} {target} {self.limit_kw} kW"

    @property
    def schedule(self) -> Schedule | None:
        return schedule_from_columns(self.schedule_days, self.schedule_start, self.schedule_end)


def schedule_from_columns(days: str, start, end) -> Schedule | None:
    if not days or start is None or end is None:
        return None
    return Schedule(
        days=tuple(days.split(",")),
        start=start.hour * 60 + start.minute,
        end=end.hour * 60 + end.minute,
    )


class ScheduleActivation(models.Model):
    """One start or end of a scheduled policy's window, as detected by the beat task.

    Append-only audit: it keeps the policy's public id and values so that it
    outlives the policy, and needs no history of its own.
    """

    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="schedule_activations"
    )
    policy_id = models.CharField(max_length=64)
    scope = models.CharField(max_length=10, choices=LimitScope.choices)
    node_id = models.CharField("Microgrid Node", max_length=64, null=True, blank=True)
    transition = models.CharField(max_length=5, choices=TransitionKind.choices)
    at = models.DateTimeField(help_text="when the window started or ended")
    limit_kw = models.FloatField()
    schedule = models.JSONField()
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["microgrid_id", "-at", "policy_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "policy_id", "transition", "at"],
                name="schedule_activation_once",
            ),
        ]
        indexes = [models.Index(fields=["microgrid", "at"])]

    def __str__(self) -> str:
        return f"{self.policy_id} {self.transition} at {self.at.isoformat()}"


class LimitState(models.Model):
    """Per-microgrid bookkeeping of the limits app.

    `policies_created` numbers policy ids (never reused, also after a
    delete); `transitions_checked_until` is the beat task's watermark: every
    schedule start and end up to it is recorded. Both change through
    QuerySet.update(), so a minute-by-minute watermark writes no history.
    """

    microgrid = models.OneToOneField(
        Microgrid, on_delete=models.CASCADE, related_name="limit_state"
    )
    policies_created = models.PositiveIntegerField(default=0)
    transitions_checked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "limit bookkeeping"
        verbose_name_plural = "limit bookkeeping"

    def __str__(self) -> str:
        return f"{self.microgrid_id}: {self.policies_created} policies created"
