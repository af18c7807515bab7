from django.contrib import admin

from microgrid.telemetry.models import LatestReading, TelemetryReading


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
