"""One row per microgrid: its latest cycle's state, kept by the cycle's own transaction."""

from django.db import models

from microgrid.fleet.choices import FleetState
from microgrid.topology.models import Microgrid


class MicrogridState(models.Model):
    """The latest cycle of one microgrid, flattened for the fleet overview.

    Derived data (no history): written in the transaction that stores the cycle,
    so that it never disagrees with the cycles list. A microgrid without a row
    has had no cycle yet.
    """

    microgrid = models.OneToOneField(
        Microgrid, on_delete=models.CASCADE, primary_key=True, related_name="fleet_state"
    )
    cycle_id = models.CharField(max_length=40)
    cycle_seq = models.PositiveIntegerField()
    completed_at = models.DateTimeField()
    trigger_type = models.CharField(max_length=20)
    outcome = models.CharField(max_length=12, choices=FleetState.choices)
    source_mode = models.CharField(max_length=20)
    reason_codes = models.JSONField(default=list)
    root_node_id = models.CharField(max_length=64, blank=True, default="")
    root_load_kw = models.FloatField(null=True, blank=True)
    root_limit_kw = models.FloatField(null=True, blank=True)
    root_load_pct = models.FloatField(
        null=True, blank=True, help_text="root load as a percentage of its effective limit"
    )
    vehicles_at_risk = models.PositiveIntegerField(
        default=0, help_text="vehicles that cannot finish by their departure (spec 4.3)"
    )

    class Meta:
        verbose_name = "microgrid state"
        indexes = [
            models.Index(fields=["outcome"], name="fleet_state_outcome"),
            models.Index(fields=["root_load_pct"], name="fleet_state_load_pct"),
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} cycle {self.cycle_seq} ({self.outcome})"
