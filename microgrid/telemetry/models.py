"""Telemetry readings and the latest reading per asset.

Readings are an append-only log (kept for a retention window), so they carry
no simple-history table: the log is its own history. `LatestReading` is what
cycles read: one row per asset, only ever moved forward in time.
"""

from django.db import models

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
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["microgrid"], name="latest_mg")]

    def __str__(self) -> str:
        return f"{self.asset_id} latest"
