"""Support staff see and fix limit policies here, with history; every write goes through the services.

The change form is a ModelForm whose clean() runs the same validation as the
API (errors land on the fields they name) and whose save calls the create
or update service; deletes call the delete service. Schedule activations and
the bookkeeping rows are read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from simple_history.admin import SimpleHistoryAdmin

from microgrid.common.errors import DomainError
from microgrid.limits.api.serializers import policy_input
from microgrid.limits.choices import LimitScope
from microgrid.limits.models import LimitPolicy, LimitState, ScheduleActivation
from microgrid.limits.schedules import DAYS
from microgrid.limits.services import (
    limit_policy_create,
    limit_policy_delete,
    limit_policy_update,
    limit_policy_validate,
)

# Service field -> admin form field.
_FORM_FIELD = {
    "scope": "scope",
    "node_id": "node_id",
    "limit_kw": "limit_kw",
    "limit_a": "limit_a",
    "source": "source",
    "schedule.days": "days",
    "schedule.start": "start",
    "schedule.end": "end",
}


class LimitPolicyAdminForm(forms.ModelForm):
    node_id = forms.CharField(
        label="Microgrid Node id",
        required=False,
        help_text="For a Node Limit; empty for a Microgrid limit",
    )
    days = forms.MultipleChoiceField(
        choices=[(d, d) for d in DAYS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Days a window starts on; leave days, start and end empty for the non-scheduled cap",
    )
    start = forms.CharField(required=False, help_text="HH:MM, depot time zone")
    end = forms.CharField(required=False, help_text="HH:MM, exclusive; before start = next day")

    class Meta:
        model = LimitPolicy
        fields = ("microgrid", "scope", "limit_kw", "limit_a", "source")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        policy = self.instance
        if policy.pk:
            schedule = policy.schedule
            self.initial.setdefault("node_id", policy.node.node_id if policy.node_id else "")
            self.initial.setdefault("days", list(schedule.days) if schedule else [])
            self.initial.setdefault("start", schedule.start_text if schedule else "")
            self.initial.setdefault("end", schedule.end_text if schedule else "")

    def service_data(self) -> dict:
        data = self.cleaned_data
        out = {
            "scope": data.get("scope"),
            "limit_kw": data.get("limit_kw"),
            "limit_a": data.get("limit_a"),
            "source": data.get("source"),
        }
        if data.get("scope") != LimitScope.MICROGRID:
            out["node_id"] = data.get("node_id") or None
        days, start, end = data.get("days") or [], data.get("start"), data.get("end")
        if days or start or end:
            schedule = {"days": list(days)}
            if start:
                schedule["start"] = start.strip()
            if end:
                schedule["end"] = end.strip()
            out["schedule"] = schedule
        return out

    def clean(self):
        cleaned = super().clean()
        microgrid = cleaned.get("microgrid") or (
            self.instance.microgrid if self.instance.pk else None
        )
        if microgrid is None or self.errors:
            return cleaned
        try:
            policy = self.instance if self.instance.pk else None
            values = policy_input(
                self.service_data(), policy_id=policy.policy_id if policy else None
            )
            limit_policy_validate(microgrid=microgrid, **values, policy=policy)
        except DomainError as exc:
            items = exc.errors or []
            if not items:
                raise ValidationError(f"{exc.code}: {exc.message}") from None
            for item in items:
                name = _FORM_FIELD.get(item.field or "")
                where = f" (Microgrid Node {item.node_id})" if item.node_id else ""
                self.add_error(name, f"{item.code}: {item.message}{where}")
        return cleaned

    def _post_clean(self):
        # The service validated and will write the row; the model's own
        # checks of a half-filled instance would only repeat it less well.
        pass


@admin.register(LimitPolicy)
class LimitPolicyAdmin(SimpleHistoryAdmin):
    form = LimitPolicyAdminForm
    list_display = (
        "policy_id",
        "microgrid",
        "scope",
        "target",
        "limit_kw",
        "limit_a",
        "schedule_text",
        "source",
        "updated_at",
        "updated_by",
    )
    list_filter = ("scope", "source", "microgrid")
    search_fields = ("policy_id", "node__node_id", "microgrid__microgrid_id")
    list_select_related = ("microgrid", "node", "updated_by")
    fieldsets = (
        (None, {"fields": ("microgrid", "scope", "node_id", "limit_kw", "limit_a", "source")}),
        ("Schedule (TOU)", {"fields": ("days", "start", "end")}),
    )

    def get_readonly_fields(self, request, obj=None):
        return ("microgrid",) if obj is not None else ()

    @admin.display(description="Target")
    def target(self, obj):
        return obj.node.node_id if obj.node_id else "Microgrid"

    @admin.display(description="Schedule")
    def schedule_text(self, obj):
        schedule = obj.schedule
        return schedule.describe() if schedule else "—"

    def save_model(self, request, obj, form, change):
        if change:
            policy = LimitPolicy.objects.select_related("microgrid").get(pk=obj.pk)
            values = policy_input(form.service_data(), policy_id=policy.policy_id)
            saved = limit_policy_update(policy=policy, **values, user=request.user)
        else:
            values = policy_input(form.service_data())
            saved = limit_policy_create(
                microgrid=form.cleaned_data["microgrid"], **values, user=request.user
            )
        for field in LimitPolicy._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))

    def delete_model(self, request, obj):
        limit_policy_delete(policy=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for policy in queryset.select_related("microgrid"):
            try:
                limit_policy_delete(policy=policy, user=request.user)
            except DomainError as exc:
                self.message_user(request, f"{policy}: {exc.code} {exc.message}", messages.ERROR)


@admin.register(ScheduleActivation)
class ScheduleActivationAdmin(admin.ModelAdmin):
    list_display = (
        "at",
        "microgrid",
        "policy_id",
        "transition",
        "scope",
        "node_id",
        "limit_kw",
        "recorded_at",
    )
    list_filter = ("transition", "scope", "microgrid")
    search_fields = ("policy_id", "node_id", "microgrid__microgrid_id")
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LimitState)
class LimitStateAdmin(admin.ModelAdmin):
    list_display = ("microgrid", "policies_created", "transitions_checked_until")
    readonly_fields = ("microgrid", "policies_created", "transitions_checked_until")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
