import json

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from balancing import blocks
from balancing.choices import BreachStatus
from balancing.models import Breach, Cycle, CycleBlock, CycleSchedule, CycleTrigger, part_columns


@admin.register(Cycle)
class CycleAdmin(admin.ModelAdmin):
    list_display = (
        "microgrid",
        "seq",
        "trigger_type",
        "outcome",
        "source_mode",
        "started_at",
        "cycle_id",
    )
    list_filter = ("microgrid", "trigger_type", "outcome", "source_mode")
    search_fields = ("cycle_id", "microgrid__microgrid_id")
    date_hierarchy = "started_at"
    list_select_related = ("microgrid",)
    exclude = ("record", "record_part")
    readonly_fields = ("cycle_id", "microgrid", *blocks.COLUMNS, "pretty_document")

    @admin.display(description="document")
    def pretty_document(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.document, indent=2))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CycleBlock)
class CycleBlockAdmin(admin.ModelAdmin):
    """Compacted cycles (balancing/blocks.py): support staff see every cycle of a block, its
    row values, the triggers it served and its document, as the cycle admin shows a row's."""

    list_display = ("microgrid", "first_seq", "last_seq", "cycles", "started_from", "started_to")
    list_filter = ("microgrid",)
    search_fields = ("microgrid__microgrid_id",)
    date_hierarchy = "started_from"
    list_select_related = ("microgrid",)
    exclude = ("summary", "records", "record_part")
    readonly_fields = (
        "microgrid",
        "first_seq",
        "last_seq",
        "cycles",
        "started_from",
        "started_to",
        "cycle_documents",
    )

    @admin.display(description="cycles")
    def cycle_documents(self, obj):
        encoded = blocks.unpack_records(obj.records, part_columns(obj.record_part_id))
        parts = []
        for i, row in enumerate(blocks.unpack_summary(obj.summary)):
            cycle = blocks.virtual_cycle(obj.microgrid, row, obj.record_part_id, encoded[i])
            parts.append(
                format_html(
                    "<details><summary>#{} {} {} {} {} {}</summary><pre>{}</pre></details>",
                    cycle.seq,
                    cycle.cycle_id,
                    cycle.started_at.isoformat(),
                    cycle.trigger_type,
                    cycle.outcome,
                    cycle.source_mode,
                    json.dumps(
                        {"served_triggers": cycle.served_trigger_list, **cycle.document}, indent=2
                    ),
                )
            )
        return format_html_join("", "{}", ((part,) for part in parts))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Breach)
class BreachAdmin(SimpleHistoryAdmin):
    list_display = (
        "microgrid",
        "node_id",
        "primary_reason_code",
        "measured_kw",
        "limit_kw",
        "status",
        "detected_at",
        "resolved_at",
    )
    list_filter = ("microgrid", "status", "primary_reason_code")
    search_fields = ("breach_id", "node_id")
    readonly_fields = (
        "breach_id",
        "microgrid",
        "cycle",
        "node_id",
        "measured_kw",
        "limit_kw",
        "excess_kw",
        "exceeded",
        "primary_reason_code",
        "detected_at",
        "resolved_by",
    )
    actions = ["resolve"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Mark selected open breaches resolved (support decision)")
    def resolve(self, request, queryset):
        count = 0
        for breach in queryset.filter(status=BreachStatus.OPEN):
            breach.status = BreachStatus.RESOLVED
            breach.resolved_at = timezone.now()
            breach._change_reason = f"resolved by {request.user.get_username()} in admin"
            breach.save()
            count += 1
        self.message_user(request, f"Resolved {count} breach(es)", messages.SUCCESS)


@admin.register(CycleTrigger)
class CycleTriggerAdmin(admin.ModelAdmin):
    list_display = ("microgrid", "trigger", "scope", "requested_at", "served_by")
    list_filter = ("microgrid",)
    list_select_related = ("microgrid", "served_by")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CycleSchedule)
class CycleScheduleAdmin(admin.ModelAdmin):
    list_display = ("microgrid", "last_enqueued_at")
    readonly_fields = ("microgrid", "last_enqueued_at")
