"""Support staff configure each microgrid's dispatch and follow its deliveries here.

The settings form validates with the same checks as the profile section and the
service (`check_config`: FIELD_INVALID beside the field) and saves the row itself;
changes are kept in history (the secret is left out of history rows).
Delivery batches (the webhook's and the simulator's: one per cycle, its
targets shown with their derived statuses), per-charger deliveries (OCPP) and
their send attempts are read-only: the outbox and its history. So are the
state the change-only rule compares with (what each pushed receiver holds,
each OCPP charger's last accepted setpoint) and how far settled rows were
pruned (spec 4.7, Lifecycle). Fixing is done at the source (the settings,
the receiver); a newer cycle supersedes what an older one could not deliver.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from dispatch.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryBatch,
    DispatchConfig,
    DispatchPruned,
    LastAccepted,
    ReceiverState,
)
from dispatch.services import check_config
from microgrid.common.admin_site import ReadOnlyMixin


class DispatchConfigForm(forms.ModelForm):
    webhook_secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=True),
        help_text="Signs every POST (HMAC-SHA256). Needed with a webhook URL.",
    )

    class Meta:
        model = DispatchConfig
        fields = ("microgrid", "webhook_url", "webhook_secret", "deadband_kw", "refresh_s")

    def clean(self):
        cleaned = super().clean()
        data: dict = {}
        if cleaned.get("webhook_url") or cleaned.get("webhook_secret"):
            data["webhook"] = {
                "url": cleaned.get("webhook_url") or "",
                "secret": cleaned.get("webhook_secret") or "",
            }
        for name in ("deadband_kw", "refresh_s"):
            if cleaned.get(name) is not None:
                data[name] = cleaned[name]
        _, errors = check_config(data)
        for item in errors:
            field = {"webhook.url": "webhook_url", "webhook.secret": "webhook_secret"}.get(
                item.field or "", item.field if item.field in self.fields else None
            )
            self.add_error(field, f"{item.code}: {item.message}")
        return cleaned


@admin.register(DispatchConfig)
class DispatchConfigAdmin(SimpleHistoryAdmin):
    form = DispatchConfigForm
    list_display = ("microgrid", "webhook_url", "deadband_kw", "refresh_s", "updated_at")
    search_fields = ("microgrid__microgrid_id", "webhook_url")
    list_select_related = ("microgrid",)


class SinceFilter(admin.SimpleListFilter):
    title = "since"
    parameter_name = "since"
    _choices = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

    def lookups(self, request, model_admin):
        return [("1h", "the last hour"), ("24h", "the last 24 hours"), ("7d", "the last 7 days")]

    def queryset(self, request, queryset):
        span = self._choices.get(self.value() or "")
        if span is None:
            return queryset
        return queryset.filter(created_at__gte=timezone.now() - span)


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    pass


def _history(batch_id: str):
    from django.utils.html import format_html_join

    rows = DeliveryAttempt.objects.filter(batch_id=batch_id).order_by("started_at")
    return (
        format_html_join(
            "",
            "<div>#{} {} · {} → {} {} {}</div>",
            (
                (
                    a.attempt,
                    a.started_at.isoformat(),
                    a.channel,
                    a.outcome,
                    a.http_status or "",
                    a.error,
                )
                for a in rows
            ),
        )
        or "no attempt yet"
    )


@admin.register(DeliveryBatch)
class DeliveryBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "microgrid",
        "cycle_seq",
        "channel",
        "status",
        "full",
        "sent_count",
        "unchanged_count",
        "attempts",
        "valid_until",
        "last_error",
    )
    list_filter = ("microgrid", "status", "channel", SinceFilter, "full")
    search_fields = ("batch_id", "cycle__cycle_id")
    list_select_related = ("microgrid",)
    exclude = ("targets",)
    readonly_fields = [f.name for f in DeliveryBatch._meta.fields if f.name != "targets"] + [
        "history",
        "target_list",
    ]
    show_full_result_count = False

    @admin.display(description="cycle", ordering="seq")
    def cycle_seq(self, obj):
        return obj.seq

    @admin.display(description="history (send attempts)")
    def history(self, obj):
        return _history(obj.batch_id)

    @admin.display(description="targets (status derived: sent ones have the batch's)")
    def target_list(self, obj):
        from django.utils.html import format_html, format_html_join

        from dispatch.selectors import batch_targets

        targets = batch_targets(
            {
                "channel": obj.channel,
                "targets": obj.targets,
                "full": obj.full,
                "valid_until": obj.valid_until,
                "status": obj.status,
            }
        )
        return format_html(
            "<table><thead><tr><th>target</th><th>limit kW</th><th>status</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((t.target_id, t.limit_kw, t.status) for t in targets),
            ),
        )


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "microgrid",
        "target_type",
        "target_id",
        "limit_kw",
        "channel",
        "status",
        "attempts",
        "valid_until",
        "last_error",
    )
    list_filter = ("microgrid", "status", "channel", SinceFilter, "target_type")
    search_fields = ("target_id", "delivery_id", "batch_id", "cycle__cycle_id")
    list_select_related = ("microgrid",)
    readonly_fields = [f.name for f in Delivery._meta.fields] + ["history"]
    show_full_result_count = False

    @admin.display(description="history (send attempts of its batch)")
    def history(self, obj):
        return _history(obj.batch_id)


class AttemptSinceFilter(SinceFilter):
    def queryset(self, request, queryset):
        span = self._choices.get(self.value() or "")
        if span is None:
            return queryset
        return queryset.filter(started_at__gte=timezone.now() - span)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "microgrid",
        "channel",
        "batch_id",
        "attempt",
        "targets",
        "outcome",
        "http_status",
        "error",
    )
    list_filter = ("microgrid", "outcome", "channel", AttemptSinceFilter)
    search_fields = ("batch_id", "cycle__cycle_id")
    list_select_related = ("microgrid",)


@admin.register(ReceiverState)
class ReceiverStateAdmin(ReadOnlyAdmin):
    list_display = ("microgrid", "channel", "endpoint", "seq", "valid_until", "updated_at")
    list_filter = ("channel",)
    search_fields = ("microgrid__microgrid_id", "endpoint", "batch_id")
    list_select_related = ("microgrid",)


@admin.register(LastAccepted)
class LastAcceptedAdmin(ReadOnlyAdmin):
    list_display = ("microgrid", "target_type", "target_id", "limit_kw", "valid_until")
    list_filter = ("microgrid", "target_type")
    search_fields = ("target_id", "delivery_id")
    list_select_related = ("microgrid",)


@admin.register(DispatchPruned)
class DispatchPrunedAdmin(ReadOnlyAdmin):
    list_display = ("microgrid", "through_seq", "pruned_at")
    search_fields = ("microgrid__microgrid_id",)
    list_select_related = ("microgrid",)
