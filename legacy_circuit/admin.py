"""Support staff add, fix and deactivate circuit aliases here, with history, and read the usage audit.

Writes go through the services. Circuits with more than one active alias
(legacy calls get CIRCUIT_ALIAS_NOT_RESOLVABLE / AMBIGUOUS) are flagged in
the list and can be filtered; the change form shows how the circuit resolves
now. Aliases are never deleted here, only deactivated, so the mapping a
legacy call used stays explainable. The usage audit is read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from simple_history.admin import SimpleHistoryAdmin

from legacy_circuit.choices import ResolutionFailure
from legacy_circuit.models import AliasUsage, CircuitAlias, LegacyCircuit
from legacy_circuit.selectors import circuit_rows
from legacy_circuit.services import (
    alias_problems,
    circuit_alias_save,
    circuit_alias_set_active,
    legacy_circuit_save,
)
from microgrid.topology.access import SYSTEM


class AliasForm(forms.ModelForm):
    class Meta:
        model = CircuitAlias
        fields = ("circuit", "microgrid", "scope_type", "node_id", "asset_id", "active")
        labels = {"node_id": "Microgrid Node id", "asset_id": "Charger asset id"}
        help_texts = {
            "node_id": "For a NODE alias only",
            "asset_id": "For an ASSET alias only (a charger; its cycles run for its node)",
        }

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        for item in alias_problems(
            scope_type=cleaned.get("scope_type") or "",
            node_id=cleaned.get("node_id") or "",
            asset_id=cleaned.get("asset_id") or "",
        ):
            field = {"type": "scope_type"}.get(item.field, item.field)
            self.add_error(field, f"{item.code}: {item.message}")
        return cleaned


class AliasInline(admin.TabularInline):
    model = CircuitAlias
    form = AliasForm
    extra = 0
    can_delete = False
    fields = ("microgrid", "scope_type", "node_id", "asset_id", "active", "updated_at")
    readonly_fields = ("updated_at",)
    show_change_link = True


class AliasCountFilter(admin.SimpleListFilter):
    title = "active aliases"
    parameter_name = "aliases"

    def lookups(self, request, model_admin):
        return (
            ("none", "No active alias (NO_ALIAS)"),
            ("one", "Exactly one"),
            ("many", "More than one (AMBIGUOUS)"),
        )

    def queryset(self, request, queryset):
        value = self.value()
        if value == "none":
            return queryset.filter(active_alias_count=0)
        if value == "one":
            return queryset.filter(active_alias_count=1)
        if value == "many":
            return queryset.filter(active_alias_count__gt=1)
        return queryset


class LegacyCircuitForm(forms.ModelForm):
    class Meta:
        model = LegacyCircuit
        fields = ("circuit_id", "name", "depot", "configured_capacity_kw")


@admin.register(LegacyCircuit)
class LegacyCircuitAdmin(SimpleHistoryAdmin):
    form = LegacyCircuitForm
    inlines = [AliasInline]
    list_display = (
        "circuit_id",
        "name",
        "depot",
        "configured_capacity_kw",
        "available_capacity_kw",
        "active_aliases",
        "more_than_one_active_alias",
    )
    list_filter = (AliasCountFilter, "depot")
    search_fields = ("circuit_id", "name", "aliases__node_id", "aliases__asset_id")
    list_select_related = ("depot",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(active_alias_count=Count("aliases", filter=Q(aliases__active=True)))
        )

    def get_readonly_fields(self, request, obj=None):
        # The id is what legacy clients call: it is not renamed. Available
        # capacity follows operating envelopes (and starts at the configured value).
        if obj is None:
            return ("available_capacity_kw", "resolution")
        return ("circuit_id", "available_capacity_kw", "resolution")

    def get_fields(self, request, obj=None):
        fields = ["circuit_id", "name", "depot", "configured_capacity_kw", "available_capacity_kw"]
        return [*fields, "resolution"] if obj is not None else fields

    @admin.display(description="Active aliases", ordering="active_alias_count")
    def active_aliases(self, obj):
        return obj.active_alias_count

    @admin.display(description="More than one active alias", boolean=True)
    def more_than_one_active_alias(self, obj):
        return obj.active_alias_count > 1

    @admin.display(description="Resolution now")
    def resolution(self, obj):
        row = circuit_rows([obj], user=SYSTEM)[0]
        if row.failure:
            return f"not resolvable: {row.failure} ({row.failure_label})"
        alias = row.resolved.alias
        return f"resolves to {alias.microgrid.microgrid_id} {alias.scope_dict()}"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved, _ = legacy_circuit_save(
            circuit_id=obj.circuit_id,
            name=data["name"],
            configured_capacity_kw=data["configured_capacity_kw"],
            depot=data.get("depot"),
            user=request.user,
        )
        for field in LegacyCircuit._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))

    def save_formset(self, request, form, formset, change):
        for alias in formset.save(commit=False):
            circuit_alias_save(alias=alias, user=request.user)
        formset.save_m2m()

    def response_change(self, request, obj):
        self._warn_unresolvable(request, obj)
        return super().response_change(request, obj)

    def response_add(self, request, obj, post_url_continue=None):
        self._warn_unresolvable(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def _warn_unresolvable(self, request, obj):
        row = circuit_rows([obj], user=SYSTEM)[0]
        if row.failure == ResolutionFailure.AMBIGUOUS:
            self.message_user(
                request,
                f"{obj.circuit_id} has more than one active alias: legacy calls are refused "
                "(AMBIGUOUS) until all but one are deactivated.",
                messages.WARNING,
            )
        elif row.failure:
            self.message_user(
                request,
                f"{obj.circuit_id} does not resolve: {row.failure} ({row.failure_label}).",
                messages.WARNING,
            )


@admin.register(CircuitAlias)
class CircuitAliasAdmin(SimpleHistoryAdmin):
    form = AliasForm
    list_display = (
        "circuit",
        "microgrid",
        "scope_type",
        "node_id",
        "asset_id",
        "active",
        "updated_at",
    )
    list_filter = ("active", "scope_type", "microgrid")
    search_fields = ("circuit__circuit_id", "node_id", "asset_id", "microgrid__microgrid_id")
    list_select_related = ("circuit", "microgrid")
    actions = ["deactivate", "activate"]

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        circuit_alias_save(alias=obj, user=request.user)

    @admin.action(description="Deactivate selected aliases")
    def deactivate(self, request, queryset):
        count = sum(
            circuit_alias_set_active(alias=a, active=False, user=request.user) for a in queryset
        )
        self.message_user(request, f"Deactivated {count} alias(es)", messages.SUCCESS)

    @admin.action(description="Activate selected aliases")
    def activate(self, request, queryset):
        count = sum(
            circuit_alias_set_active(alias=a, active=True, user=request.user) for a in queryset
        )
        self.message_user(request, f"Activated {count} alias(es)", messages.SUCCESS)


@admin.register(AliasUsage)
class AliasUsageAdmin(admin.ModelAdmin):
    list_display = (
        "at",
        "client",
        "method",
        "endpoint",
        "circuit_id",
        "status_code",
        "microgrid_id",
        "scope",
        "failure_code",
        "failure_reason",
        "cycle_id",
    )
    list_filter = ("client", "endpoint", "method", "status_code", "failure_code", "failure_reason")
    search_fields = ("circuit_id", "client", "microgrid_id", "cycle_id")
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
