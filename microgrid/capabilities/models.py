"""External capability bindings (who owns which capability for which scope) and their status events."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from microgrid.capabilities.choices import BindingEnd, CapabilityState, CapabilityType, ScopeType
from microgrid.topology.models import Microgrid


class CapabilityBinding(models.Model):
    """One external source device bound to one capability for the whole microgrid or one subtree.

    `binding_id` is the public id, "CB-<n>" numbered per microgrid from 1 in
    creation order (`seq`) and never reused. A binding is never deleted:
    release and transfer end it (`active` false, `released_at`, `ended_by`),
    and a transfer starts a new binding that names the old one in
    `transferred_from`. The scope names its Microgrid Node by id rather than
    by foreign key so that an ended binding outlives the node; while a
    binding is active the node cannot be removed (references.py).
    """

    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="capability_bindings"
    )
    seq = models.PositiveIntegerField(editable=False)
    binding_id = models.CharField(max_length=64, editable=False)
    capability_type = models.CharField(max_length=24, choices=CapabilityType.choices)
    scope_type = models.CharField("scope", max_length=10, choices=ScopeType.choices)
    node_id = models.CharField(
        "Microgrid Node", max_length=64, null=True, blank=True, help_text="for a NODE scope"
    )
    source_device_id = models.CharField(max_length=64)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_by = models.CharField(max_length=12, choices=BindingEnd.choices, blank=True, default="")
    transferred_from = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="transferred_to",
        help_text="the binding this one took over by transfer",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["microgrid_id", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "seq"], name="capability_binding_seq_unique"
            ),
            models.UniqueConstraint(
                fields=["microgrid", "binding_id"], name="capability_binding_id_unique"
            ),
            models.CheckConstraint(
                condition=Q(capability_type__in=CapabilityType.values),
                name="capability_binding_type_valid",
            ),
            models.CheckConstraint(
                condition=(Q(scope_type=ScopeType.NODE) & Q(node_id__isnull=False))
                | (Q(scope_type=ScopeType.MICROGRID) & Q(node_id__isnull=True)),
                name="capability_binding_scope_matches_node",
            ),
            models.CheckConstraint(
                condition=(Q(active=True) & Q(released_at__isnull=True) & Q(ended_by=""))
                | (Q(active=False) & Q(released_at__isnull=False) & ~Q(ended_by="")),
                name="capability_binding_active_or_ended",
            ),
            # The overlap rule (spec 3.4) needs the tree, so the services hold it under the
            # microgrid's row lock; these two are the part of it a database can state.
            models.UniqueConstraint(
                fields=["microgrid", "capability_type"],
                condition=Q(active=True, scope_type=ScopeType.MICROGRID),
                name="one_active_microgrid_capability_source",
            ),
            models.UniqueConstraint(
                fields=["microgrid", "capability_type", "node_id"],
                condition=Q(active=True, scope_type=ScopeType.NODE),
                name="one_active_node_capability_source",
            ),
        ]

    def __str__(self) -> str:
        target = f"Microgrid Node {self.node_id}" if self.node_id else "whole microgrid"
        return f"{self.binding_id} {self.capability_type} {target} <- {self.source_device_id}"

    @property
    def scope(self) -> dict[str, str]:
        if self.scope_type == ScopeType.NODE:
            return {"type": ScopeType.NODE, "node_id": self.node_id}
        return {"type": ScopeType.MICROGRID}


class CapabilityStatusEvent(models.Model):
    """One status report of a binding's source, as received.

    Append-only: a row is never changed, so it needs no history of its own
    (the binding carries the history of who owns what). `(binding, event_ref)`
    is unique: a repeated report is answered with the stored one.
    """

    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="capability_events"
    )
    binding = models.ForeignKey(CapabilityBinding, on_delete=models.CASCADE, related_name="events")
    event_ref = models.CharField(max_length=128)
    state = models.CharField(max_length=12, choices=CapabilityState.choices)
    observed_at = models.DateTimeField()
    received_at = models.DateTimeField()
    detail = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = "capability status event"
        ordering = ["microgrid_id", "-observed_at", "-event_ref"]
        constraints = [
            models.UniqueConstraint(
                fields=["binding", "event_ref"], name="capability_event_ref_once_per_binding"
            ),
            models.CheckConstraint(
                condition=Q(state__in=CapabilityState.values), name="capability_event_state_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["binding", "observed_at"], name="capability_event_latest"),
            models.Index(fields=["microgrid", "received_at"], name="capability_event_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.binding.binding_id} {self.state} at {self.observed_at.isoformat()}"
