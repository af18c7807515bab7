from django import forms
from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from microgrid.telemetry.models import (
    ChargerSession,
    LatestReading,
    SessionDefault,
    TelemetryReading,
)
from microgrid.topology.choices import NodeKind
from microgrid.topology.models import MicrogridNode


@admin.register(LatestReading)
class LatestReadingAdmin(admin.ModelAdmin):
    list_display = (
        "asset",
        "microgrid",
        "power_kw",
        "observed_at",
        "connected",
        "requested_kw",
        "plugged_in_at",
        "session_energy_kwh",
    )
    list_filter = ("microgrid", "connected")
    search_fields = ("asset__asset_id",)
    list_select_related = ("asset", "microgrid")
    readonly_fields = [f.name for f in LatestReading._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(TelemetryReading)
class TelemetryReadingAdmin(admin.ModelAdmin):
    list_display = (
        "asset",
        "microgrid",
        "power_kw",
        "observed_at",
        "received_at",
        "connected",
        "requested_kw",
    )
    list_filter = ("microgrid",)
    search_fields = ("asset__asset_id",)
    date_hierarchy = "observed_at"
    list_select_related = ("asset", "microgrid")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class SessionDefaultForm(forms.ModelForm):
    class Meta:
        model = SessionDefault
        fields = ("microgrid", "node_id", "default_dwell_s", "default_energy_kwh")

    def clean(self):
        data = super().clean()
        microgrid, node_id = data.get("microgrid"), data.get("node_id")
        if microgrid is not None and node_id:
            kind = (
                MicrogridNode.objects.filter(microgrid=microgrid, node_id=node_id)
                .values_list("kind", flat=True)
                .first()
            )
            if kind != NodeKind.CHARGER_GROUP:
                self.add_error("node_id", f"{node_id!r} is not a charger group of {microgrid}")
        return data


@admin.register(SessionDefault)
class SessionDefaultAdmin(SimpleHistoryAdmin):
    """Support sets each charger group's default dwell (spec 4.3, "Departures")."""

    form = SessionDefaultForm
    list_display = ("microgrid", "node_id", "default_dwell_s", "default_energy_kwh")
    list_filter = ("microgrid",)
    search_fields = ("node_id", "microgrid__microgrid_id")


@admin.register(ChargerSession)
class ChargerSessionAdmin(SimpleHistoryAdmin):
    """Sessions arrive through the API; admin shows them and their history."""

    list_display = (
        "asset",
        "microgrid",
        "plugged_in_at",
        "departure_at",
        "energy_needed_kwh",
        "energy_source",
        "updated_at",
        "updated_by",
    )
    list_filter = ("microgrid",)
    search_fields = ("asset__asset_id",)
    list_select_related = ("asset", "microgrid", "updated_by")
    readonly_fields = [f.name for f in ChargerSession._meta.fields]

    def has_add_permission(self, request):
        return False
