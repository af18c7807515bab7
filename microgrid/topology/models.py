"""Depot, Microgrid, Microgrid Node, Asset and the saved topology revisions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from microgrid.topology.choices import AssetKind, HeadroomMode, NodeKind, PhaseRotation


class Depot(models.Model):
    depot_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA zone, e.g. Europe/Amsterdam"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["depot_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.depot_id})"


class Microgrid(models.Model):
    microgrid_id = models.CharField(max_length=64, unique=True)
    depot = models.OneToOneField(Depot, on_delete=models.PROTECT, related_name="microgrid")
    name = models.CharField(max_length=200)
    topology_version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    telemetry_stale_after_s = models.PositiveIntegerField(default=60)
    cycle_interval_s = models.PositiveIntegerField(default=15)
    enabled = models.BooleanField(default=True)
    headroom_mode = models.CharField(
        max_length=10,
        choices=HeadroomMode.choices,
        default=HeadroomMode.OFF,
        help_text="margin kept back on every node with uncontrolled load below it (spec 4.3)",
    )
    headroom_static_kw = models.FloatField(
        default=0.0,
        help_text="kW kept back per node in static mode; the floor of the adaptive margin",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["microgrid_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(telemetry_stale_after_s__gte=1), name="microgrid_stale_after_positive"
            ),
            models.CheckConstraint(
                condition=Q(cycle_interval_s__gte=1), name="microgrid_interval_positive"
            ),
            models.CheckConstraint(
                condition=Q(headroom_static_kw__gte=0) & Q(headroom_static_kw__lte=100000),
                name="microgrid_headroom_static_range",
            ),
        ]

    def __str__(self) -> str:
        return self.microgrid_id


class MicrogridNode(models.Model):
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.CharField(max_length=64)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    kind = models.CharField(max_length=20, choices=NodeKind.choices)
    name = models.CharField(max_length=200)
    physical_rating_kw = models.FloatField()
    voltage_v = models.FloatField(default=230.0)
    phases = models.PositiveSmallIntegerField(default=3)
    # The per-phase current rating (A) of the node's protective device; None = not known.
    rating_a = models.FloatField("rating per phase (A)", null=True, blank=True)
    # The largest current difference (A) allowed between two of the node's phases (grid codes
    # cap it at a customer connection, e.g. 16 A or 20 A); None = no such limit.
    max_unbalance_a = models.FloatField("max unbalance (A)", null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "Microgrid Node"
        ordering = ["microgrid_id", "node_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "node_id"], name="node_id_unique_per_microgrid"
            ),
            models.CheckConstraint(
                condition=Q(physical_rating_kw__gt=0), name="node_rating_positive"
            ),
            models.CheckConstraint(condition=Q(voltage_v__gt=0), name="node_voltage_positive"),
            models.CheckConstraint(condition=Q(phases__in=[1, 3]), name="node_phases_1_or_3"),
            models.CheckConstraint(
                condition=Q(rating_a__isnull=True) | Q(rating_a__gt=0),
                name="node_rating_a_positive",
            ),
            models.CheckConstraint(
                condition=Q(max_unbalance_a__isnull=True) | Q(max_unbalance_a__gte=0),
                name="node_max_unbalance_a_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.node_id})"


class Asset(models.Model):
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="assets")
    asset_id = models.CharField(max_length=64)
    node = models.ForeignKey(MicrogridNode, on_delete=models.PROTECT, related_name="assets")
    kind = models.CharField(max_length=20, choices=AssetKind.choices)
    name = models.CharField(max_length=200)
    # CHARGER
    max_power_kw = models.FloatField(null=True, blank=True)
    min_power_kw = models.FloatField(null=True, blank=True)
    priority = models.IntegerField(null=True, blank=True)
    failsafe_power_kw = models.FloatField(null=True, blank=True)
    phases = models.PositiveSmallIntegerField(null=True, blank=True)
    phase_rotation = models.CharField(
        max_length=6, blank=True, default="", choices=PhaseRotation.choices
    )
    min_current_a = models.FloatField("min current per phase (A)", null=True, blank=True)
    max_current_a = models.FloatField("max current per phase (A)", null=True, blank=True)
    # CHARGER on OCPP: its charging station and EVSE (the connector id on OCPP 1.6); both or
    # neither. The pair is unique within the microgrid (checked by the topology validator:
    # a database constraint would refuse a swap of two chargers' EVSEs in one save).
    station_id = models.CharField(max_length=64, null=True, blank=True)
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    # SITE_LOAD, BATTERY, PV
    rated_power_kw = models.FloatField(null=True, blank=True)
    fallback_kw = models.FloatField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["microgrid_id", "asset_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "asset_id"], name="asset_id_unique_per_microgrid"
            ),
            models.CheckConstraint(
                condition=Q(phases__isnull=True) | Q(phases__in=[1, 3]),
                name="asset_phases_1_or_3",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.asset_id})"


class TopologyRevision(models.Model):
    """The full topology as saved at one version, so any version can be shown and diffed."""

    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    summary = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["microgrid_id", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "version"], name="revision_version_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} v{self.version}"


class MicrogridMembership(models.Model):
    """A user's access to one microgrid, or to every microgrid (`all_microgrids`, for a fleet
    system). Operators and integration clients reach only the microgrids they are members of;
    support staff reach every microgrid without a membership (spec 6, access)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="microgrid_memberships"
    )
    microgrid = models.ForeignKey(
        Microgrid,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="memberships",
        help_text="empty only for an all-microgrids membership",
    )
    all_microgrids = models.BooleanField(
        default=False, help_text="fleet-wide: every microgrid, present and future"
    )
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["user_id", "microgrid_id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(all_microgrids=True, microgrid__isnull=True)
                    | Q(all_microgrids=False, microgrid__isnull=False)
                ),
                name="membership_one_microgrid_or_all",
            ),
            models.UniqueConstraint(
                fields=["user", "microgrid"], name="membership_once_per_microgrid"
            ),
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(all_microgrids=True),
                name="membership_all_once",
            ),
        ]

    def __str__(self) -> str:
        target = "every microgrid" if self.all_microgrids else self.microgrid.microgrid_id
        return f"{self.user} -> {target}"
