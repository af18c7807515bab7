"""Support staff see charging stations (with history), their EVSEs and refused connections.
Passwords are set with `manage.py set_station_password` and never shown."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from stations.models import ChargingStation, StationAuthAttempt, StationEvse, StationTransaction


class EvseInline(admin.TabularInline):
    model = StationEvse
    extra = 0
    # Which charger an EVSE is lives on the charger asset (topology: station_id, evse_id).
    fields = ("evse_id", "status", "status_at", "profile_status", "failsafe_status", "soc_pct")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ChargingStation)
class ChargingStationAdmin(SimpleHistoryAdmin):
    list_display = (
        "station_id",
        "microgrid",
        "connected",
        "last_seen_at",
        "protocol",
        "vendor",
        "model",
        "firmware",
        "gateway",
    )
    list_filter = ("microgrid", "connected", "protocol")
    search_fields = ("station_id",)
    fields = (
        "station_id",
        "microgrid",
        "protocol",
        "vendor",
        "model",
        "firmware",
        "connected",
        "last_seen_at",
        "gateway",
    )
    readonly_fields = (
        "protocol",
        "vendor",
        "model",
        "firmware",
        "connected",
        "last_seen_at",
        "gateway",
    )
    inlines = [EvseInline]


@admin.register(StationAuthAttempt)
class StationAuthAttemptAdmin(admin.ModelAdmin):
    list_display = ("at", "station_id", "remote_address", "reason")
    list_filter = ("reason",)
    search_fields = ("station_id", "remote_address")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(StationTransaction)
class StationTransactionAdmin(admin.ModelAdmin):
    """What stations reported; the product accepts every transaction (spec 4.8)."""

    list_display = (
        "station",
        "transaction_id",
        "evse_id",
        "id_token",
        "started_at",
        "ended_at",
        "meter_start_wh",
        "meter_stop_wh",
        "stop_reason",
    )
    list_filter = ("station__microgrid",)
    search_fields = ("station__station_id", "transaction_id", "id_token")
    list_select_related = ("station",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
