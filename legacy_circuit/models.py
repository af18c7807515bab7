"""The pre-microgrid circuit concept, kept alive as aliases of canonical scopes.

This app is the only place that says "circuit". A circuit id resolves through
exactly one active alias to a microgrid and a scope (the whole microgrid, a
Microgrid Node's subtree, or one charger). Aliases name their target by id, so
an alias whose target was never there (or was set up wrong in admin) is
visible as TARGET_MISSING instead of being impossible to store.
"""

from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from legacy_circuit.choices import AliasScope
from microgrid.topology.models import Depot, Microgrid


class LegacyCircuit(models.Model):
    circuit_id = models.CharField(max_length=64, unique=True)
    depot = models.ForeignKey(
        Depot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=200)
    configured_capacity_kw = models.FloatField()
    available_capacity_kw = models.FloatField(
        help_text="what legacy clients read; follows an active operating envelope on the interim path"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["circuit_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(configured_capacity_kw__gte=0), name="circuit_configured_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.circuit_id})"


class CircuitAlias(models.Model):
    circuit = models.ForeignKey(LegacyCircuit, on_delete=models.CASCADE, related_name="aliases")
    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="circuit_aliases"
    )
    scope_type = models.CharField(max_length=10, choices=AliasScope.choices)
    node_id = models.CharField(max_length=64, blank=True, default="")
    asset_id = models.CharField(max_length=64, blank=True, default="")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["circuit_id", "pk"]
        verbose_name_plural = "circuit aliases"
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope_type="MICROGRID", node_id="", asset_id="")
                    | (Q(scope_type="NODE", asset_id="") & ~Q(node_id=""))
                    | (Q(scope_type="ASSET", node_id="") & ~Q(asset_id=""))
                ),
                name="alias_scope_fields_match_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.circuit_id} -> {self.microgrid_id} {self.scope_dict()}"

    def scope_dict(self) -> dict:
        if self.scope_type == AliasScope.NODE:
            return {"type": "NODE", "node_id": self.node_id}
        if self.scope_type == AliasScope.ASSET:
            return {"type": "ASSET", "asset_id": self.asset_id}
        return {"type": "MICROGRID"}


class AliasUsage(models.Model):
    """One row per legacy call, resolved or not: the migration audit trail (append-only)."""

    circuit_id = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=100)
    method = models.CharField(max_length=10)
    client = models.CharField(max_length=150, help_text="the API user that called")
    microgrid_id = models.CharField(max_length=64, blank=True, default="")
    scope = models.JSONField(null=True, blank=True)
    failure_code = models.CharField(max_length=40, blank=True, default="")
    failure_reason = models.CharField(max_length=40, blank=True, default="")
    status_code = models.PositiveSmallIntegerField()
    cycle_id = models.CharField(max_length=40, blank=True, default="")
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["circuit_id", "-at"], name="usage_circuit"),
            models.Index(fields=["client", "-at"], name="usage_client"),
        ]
        verbose_name_plural = "alias usage"

    def __str__(self) -> str:
        return f"{self.client} {self.method} {self.endpoint} {self.circuit_id} ({self.status_code})"
