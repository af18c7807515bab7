"""OCPP charging stations, the state of their EVSEs, and the gateway's refused connection
attempts. A charger asset names its station and EVSE (topology, spec 3.1)."""

from __future__ import annotations

from django.db import models
from simple_history.models import HistoricalRecords

from microgrid.topology.models import Microgrid
from stations.choices import AuthRefusal, Protocol


class ChargingStation(models.Model):
    station_id = models.CharField(max_length=64, unique=True)
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    password_hash = models.CharField(max_length=200, blank=True)
    protocol = models.CharField(max_length=12, choices=Protocol.choices, blank=True)
    vendor = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=50, blank=True)
    firmware = models.CharField(max_length=50, blank=True)
    connected = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    gateway = models.CharField(max_length=200, blank=True, help_text="host:port of its gateway")
    charging_rate_unit = models.CharField(
        max_length=1,
        choices=[("W", "W"), ("A", "A")],
        default="W",
        help_text="A: the station only takes limits in amperes",
    )
    history = HistoricalRecords(excluded_fields=["password_hash", "last_seen_at"])

    class Meta:
        ordering = ["station_id"]

    def __str__(self) -> str:
        return self.station_id


class StationEvse(models.Model):
    """What one EVSE of a station (the connector id on OCPP 1.6) last said and was answered.

    Which charger it is lives on the charger asset (`station_id`, `evse_id`, spec 3.1), so
    the topology, its history and its revisions hold the mapping; this row is created by the
    first StatusNotification or profile of the EVSE."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="evses")
    evse_id = models.PositiveIntegerField()
    status = models.CharField(max_length=20, blank=True, help_text="last StatusNotification")
    status_at = models.DateTimeField(null=True, blank=True)
    profile_status = models.CharField(max_length=40, blank=True, help_text="last setpoint profile")
    failsafe_status = models.CharField(max_length=40, blank=True, help_text="stack level 0")
    failsafe_kw = models.FloatField(null=True, blank=True, help_text="what level 0 was for")
    soc_pct = models.FloatField(null=True, blank=True, help_text="last SoC meter value, %")
    soc_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["station_id", "evse_id"]
        verbose_name = "station EVSE"
        constraints = [models.UniqueConstraint(fields=["station", "evse_id"], name="evse_unique")]

    def __str__(self) -> str:
        return f"{self.station_id}/{self.evse_id}"


class StationTransaction(models.Model):
    """A charging transaction a station reported (1.6 Start/StopTransaction, 2.0.1
    TransactionEvent): recorded, never refused (drivers are authorised elsewhere)."""

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="transactions"
    )
    transaction_id = models.CharField(max_length=36, help_text="1.6: ours; 2.0.1: the station's")
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    id_token = models.CharField(max_length=36, blank=True, help_text="as the station sent it")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    meter_start_wh = models.FloatField(null=True, blank=True)
    meter_stop_wh = models.FloatField(null=True, blank=True)
    stop_reason = models.CharField(max_length=40, blank=True)
    last_event = models.CharField(max_length=40, blank=True, help_text="2.0.1 trigger reason")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "transaction_id"], name="station_transaction_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.station_id}: {self.transaction_id}"


class StationAuthAttempt(models.Model):
    """A connection the gateway refused with 401 before any WebSocket existed."""

    station_id = models.CharField(max_length=64)
    remote_address = models.CharField(max_length=64)
    reason = models.CharField(max_length=20, choices=AuthRefusal.choices)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.station_id} from {self.remote_address}: {self.reason}"
