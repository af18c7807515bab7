"""Telemetry readings and the latest reading per asset.

Readings are an append-only log (kept for a retention window), so they carry
no simple-history table: the log is its own history. `LatestReading` is what
cycles read: one row per asset, only ever moved forward in time.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from microgrid.telemetry.choices import EnergySource
from microgrid.topology.models import Asset, Microgrid


class TelemetryReading(models.Model):
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="readings")
    power_kw = models.FloatField()
    observed_at = models.DateTimeField()
    received_at = models.DateTimeField()
    connected = models.BooleanField(null=True, blank=True)
    requested_kw = models.FloatField(null=True, blank=True)
    # Optional per-phase currents (A) of the asset's own L1, L2, L3 (spec 3.5, issue 19).
    current_l1_a = models.FloatField(null=True, blank=True)
    current_l2_a = models.FloatField(null=True, blank=True)
    current_l3_a = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            # A repeated reading (same point, same timestamp) is stored once.
            models.UniqueConstraint(
                fields=["asset", "observed_at"], name="reading_once_per_asset_and_time"
            ),
        ]
        indexes = [models.Index(fields=["microgrid", "observed_at"], name="reading_mg_time")]
        ordering = ["asset_id", "observed_at"]

    def __str__(self) -> str:
        return f"{self.asset_id} {self.power_kw} kW @ {self.observed_at.isoformat()}"


class LatestReading(models.Model):
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    asset = models.OneToOneField(Asset, on_delete=models.CASCADE, related_name="latest_reading")
    power_kw = models.FloatField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    connected = models.BooleanField(null=True, blank=True)
    requested_kw = models.FloatField(null=True, blank=True)
    current_l1_a = models.FloatField(null=True, blank=True)
    current_l2_a = models.FloatField(null=True, blank=True)
    current_l3_a = models.FloatField(null=True, blank=True)
    plugged_in_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="observed_at of the first reading of the current connection",
    )
    session_energy_kwh = models.FloatField(
        null=True,
        blank=True,
        help_text="energy the charger delivered in its current connection, integrated from "
        "its readings (power_kw as the average since its previous reading)",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["microgrid"], name="latest_mg")]

    def __str__(self) -> str:
        return f"{self.asset_id} latest"


class ChargerSession(models.Model):
    """What is known of the vehicle on a charger now: when it leaves and the energy it needs.

    One row per charger, for one connection (`plugged_in_at`, copied from the latest reading
    when it was written): a later connection makes it stale, and cycles ignore it. The row
    is replaced by each PUT and deleted by DELETE; its history keeps every session.
    """

    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    asset = models.OneToOneField(Asset, on_delete=models.CASCADE, related_name="session")
    plugged_in_at = models.DateTimeField(help_text="the connection this session belongs to")
    departure_at = models.DateTimeField()
    energy_needed_kwh = models.FloatField(
        null=True, blank=True, help_text="energy the vehicle needs in this connection"
    )
    energy_source = models.CharField(
        max_length=12, choices=EnergySource.choices, null=True, blank=True
    )
    target_soc_percent = models.FloatField(null=True, blank=True)
    arrival_soc_percent = models.FloatField(null=True, blank=True)
    battery_capacity_kwh = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField()
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        indexes = [models.Index(fields=["microgrid"], name="session_mg")]
        constraints = [
            models.CheckConstraint(
                condition=Q(energy_needed_kwh__isnull=True) | Q(energy_needed_kwh__gt=0),
                name="session_energy_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.asset_id} session until {self.departure_at.isoformat()}"


# A default dwell's bounds: checked by the database, the admin and the profile section alike.
MIN_DWELL_S = 60
MAX_DWELL_S = 7 * 86400


class SessionDefault(models.Model):
    """Support's default for the vehicles of a charger group that nobody describes: how long
    they stay (and, optionally, how much energy they need). Keyed by node_id, not by the node
    row, so that a topology save (which may recreate rows) keeps it."""

    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    node_id = models.CharField(max_length=64, help_text="a CHARGER_GROUP of the microgrid")
    default_dwell_s = models.PositiveIntegerField(
        help_text="a connected vehicle without a session leaves this long after it plugged in"
    )
    default_energy_kwh = models.FloatField(
        null=True, blank=True, help_text="the energy such a vehicle needs (blank: unknown)"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["microgrid_id", "node_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "node_id"], name="session_default_once_per_node"
            ),
            models.CheckConstraint(
                condition=Q(default_dwell_s__gte=MIN_DWELL_S) & Q(default_dwell_s__lte=MAX_DWELL_S),
                name="session_default_dwell_range",
            ),
            models.CheckConstraint(
                condition=Q(default_energy_kwh__isnull=True) | Q(default_energy_kwh__gt=0),
                name="session_default_energy_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.node_id}: {self.default_dwell_s} s"
