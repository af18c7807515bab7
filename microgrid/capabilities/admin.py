"""Support staff see every binding (with history) and every status event, and fix ownership here.

Adding a binding goes through the bind service (a conflict is shown on the
form); an existing binding is read-only: it changes only by the "Release"
and "Transfer" actions, which call the same services as the API. Bindings
are never deleted (they are the ownership history); events are read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from simple_history.admin import SimpleHistoryAdmin

from microgrid.capabilities.api.serializers import CapabilityBind
from microgrid.capabilities.choices import ScopeType
from microgrid.capabilities.models import CapabilityBinding, CapabilityStatusEvent
from microgrid.capabilities.scopes import Scope
from microgrid.capabilities.services import (
    capability_binding_create,
    capability_binding_release,
    capability_binding_transfer,
    capability_binding_validate,
)
from microgrid.common.errors import DomainError
from microgrid.common.fields import ID_RE
from microgrid.common.serializers import validated

_FORM_FIELD = {
    "capability_type": "capability_type",
    "scope": "scope_type",
    "scope.node_id": "node_id",
    "source_device_id": "source_device_id",
}


def describe(exc: DomainError) -> str:
    return f"{exc.code}: {exc.message}"


def target_of(binding: CapabilityBinding) -> str:
    return "Whole microgrid" if binding.node_id is None else f"Microgrid Node {binding.node_id}"


class CapabilityBindingAdminForm(forms.ModelForm):
    class Meta:
        model = CapabilityBinding
        fields = ("microgrid", "capability_type", "scope_type", "node_id", "source_device_id")

    def service_data(self) -> dict:
        data = self.cleaned_data
        scope: dict = {"type": data.get("scope_type")}
        if data.get("scope_type") == ScopeType.NODE:
            scope["node_id"] = data.get("node_id") or None
        return {
            "capability_type": data.get("capability_type"),
            "scope": scope,
            "source_device_id": data.get("source_device_id"),
        }

    def clean(self):
        cleaned = super().clean()
        microgrid = cleaned.get("microgrid")
        if microgrid is None or self.errors:
            return cleaned
        try:
            values = validated(CapabilityBind, self.service_data())
            capability_binding_validate(microgrid=microgrid, **values)
        except DomainError as exc:
            if not exc.errors:
                raise ValidationError(describe(exc)) from None
            for item in exc.errors:
                self.add_error(_FORM_FIELD.get(item.field or ""), f"{item.code}: {item.message}")
        return cleaned

    def _post_clean(self):
        # The service validates and writes the row (seq, id, timestamps).
        pass


class TransferForm(forms.Form):
    new_source_device_id = forms.RegexField(
        regex=ID_RE,
        label="New source device id",
        help_text="The device that takes over this capability and scope",
    )


@admin.register(CapabilityBinding)
class CapabilityBindingAdmin(SimpleHistoryAdmin):
    form = CapabilityBindingAdminForm
    list_display = (
        "binding_id",
        "microgrid",
        "capability_type",
        "target",
        "source_device_id",
        "active",
        "created_at",
        "released_at",
        "ended_by",
    )
    list_filter = ("active", "capability_type", "scope_type", "ended_by", "microgrid")
    search_fields = ("binding_id", "source_device_id", "node_id", "microgrid__microgrid_id")
    list_select_related = ("microgrid",)
    actions = ["release", "transfer"]
    readonly_fields_on_change = (
        "binding_id",
        "microgrid",
        "capability_type",
        "scope_type",
        "node_id",
        "source_device_id",
        "active",
        "created_at",
        "created_by",
        "released_at",
        "released_by",
        "ended_by",
        "transferred_from",
    )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("microgrid", "capability_type", "scope_type", "node_id", "source_device_id")
        return self.readonly_fields_on_change

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields_on_change if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Target scope")
    def target(self, obj):
        return target_of(obj)

    def save_model(self, request, obj, form, change):
        if change:
            return  # read-only: release and transfer are actions
        values = validated(CapabilityBind, form.service_data())
        outcome = capability_binding_create(
            microgrid=form.cleaned_data["microgrid"], **values, user=request.user
        )
        for field in CapabilityBinding._meta.concrete_fields:
            setattr(obj, field.attname, getattr(outcome.binding, field.attname))
        obj._state.adding = False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # A bind that lost a race after the form was validated: say so rather than fail.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            self.message_user(request, describe(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    @admin.action(description="Release selected bindings")
    def release(self, request, queryset):
        for binding in queryset.select_related("microgrid").order_by("microgrid_id", "seq"):
            try:
                capability_binding_release(
                    microgrid=binding.microgrid, binding_id=binding.binding_id, user=request.user
                )
            except DomainError as exc:
                self.message_user(request, f"{binding.binding_id}: {describe(exc)}", messages.ERROR)
            else:
                self.message_user(request, f"{binding.binding_id} released", messages.SUCCESS)

    @admin.action(description="Transfer the selected binding to another source")
    def transfer(self, request, queryset):
        bindings = list(queryset.select_related("microgrid")[:2])
        if len(bindings) != 1:
            self.message_user(request, "Select exactly one binding to transfer", messages.ERROR)
            return None
        binding = bindings[0]
        form = TransferForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                outcome = capability_binding_transfer(
                    microgrid=binding.microgrid,
                    capability_type=binding.capability_type,
                    scope=Scope.of(binding),
                    expected_source_device_id=binding.source_device_id,
                    new_source_device_id=form.cleaned_data["new_source_device_id"],
                    user=request.user,
                )
            except DomainError as exc:
                self.message_user(request, f"{binding.binding_id}: {describe(exc)}", messages.ERROR)
                return None
            new = outcome.binding
            self.message_user(
                request,
                f"{binding.binding_id} transferred: {new.binding_id} now binds "
                f"{new.source_device_id}"
                if outcome.transferred
                else f"{new.source_device_id} already was the active source ({new.binding_id})",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/capabilities/transfer.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Transfer {binding.binding_id}",
                "binding": binding,
                "scope_label": target_of(binding),
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(CapabilityStatusEvent)
class CapabilityStatusEventAdmin(admin.ModelAdmin):
    list_display = (
        "observed_at",
        "microgrid",
        "binding_ref",
        "capability_type",
        "target",
        "source_device_id",
        "state",
        "event_ref",
        "received_at",
    )
    list_filter = ("state", "binding__capability_type", "microgrid")
    search_fields = (
        "event_ref",
        "binding__binding_id",
        "binding__source_device_id",
        "microgrid__microgrid_id",
    )
    list_select_related = ("microgrid", "binding")
    date_hierarchy = "observed_at"
    readonly_fields = (
        "microgrid",
        "binding",
        "event_ref",
        "state",
        "observed_at",
        "received_at",
        "detail",
    )

    @admin.display(description="Binding", ordering="binding__seq")
    def binding_ref(self, obj):
        return obj.binding.binding_id

    @admin.display(description="Capability")
    def capability_type(self, obj):
        return obj.binding.capability_type

    @admin.display(description="Target scope")
    def target(self, obj):
        return target_of(obj.binding)

    @admin.display(description="Source device")
    def source_device_id(self, obj):
        return obj.binding.source_device_id

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
