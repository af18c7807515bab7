"""Support staff see every topology row with its history; edits go through the validator.

Nodes and assets are read-only here: a single-row edit could break the tree,
so changes are made on the microgrid's "Edit topology" page, which saves the
whole topology through `topology_replace` like every other writer.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from microgrid.common.admin_site import ReadOnlyMixin
from microgrid.common.errors import DomainError
from microgrid.topology.choices import ASSET_FIELDS
from microgrid.topology.models import (
    Asset,
    Depot,
    Microgrid,
    MicrogridMembership,
    MicrogridNode,
    TopologyRevision,
)
from microgrid.topology.selectors import topology_document
from microgrid.topology.services import topology_replace


class ReadOnlyAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    pass


@admin.register(Depot)
class DepotAdmin(SimpleHistoryAdmin):
    list_display = ("depot_id", "name", "timezone")
    search_fields = ("depot_id", "name")


class TopologyJsonForm(forms.Form):
    base_version = forms.IntegerField(widget=forms.HiddenInput)
    document = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 30, "cols": 120, "class": "vLargeTextField"})
    )

    def clean_document(self):
        try:
            data = json.loads(self.cleaned_data["document"])
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise forms.ValidationError("The document must be a JSON object with nodes and assets")
        return data


@admin.register(Microgrid)
class MicrogridAdmin(SimpleHistoryAdmin):
    list_display = (
        "microgrid_id",
        "name",
        "depot",
        "topology_version",
        "enabled",
        "cycle_interval_s",
        "telemetry_stale_after_s",
        "headroom_mode",
        "headroom_static_kw",
        "updated_at",
        "updated_by",
        "edit_topology_link",
    )
    list_filter = ("enabled", "headroom_mode")
    search_fields = ("microgrid_id", "name", "depot__depot_id")
    readonly_fields = ("topology_version", "updated_at", "updated_by")
    list_editable = ("enabled", "cycle_interval_s", "telemetry_stale_after_s")

    @admin.display(description="Topology")
    def edit_topology_link(self, obj):
        return format_html(
            '<a href="{}">Edit topology</a>', reverse("admin:topology_edit", args=[obj.pk])
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/topology/",
                self.admin_site.admin_view(self.edit_topology_view),
                name="topology_edit",
            )
        ] + super().get_urls()

    def edit_topology_view(self, request, pk: int):
        microgrid = get_object_or_404(
            Microgrid.objects.select_related("depot", "updated_by"), pk=pk
        )
        if not self.has_change_permission(request, microgrid):
            return redirect("admin:index")
        errors = None
        if request.method == "POST":
            form = TopologyJsonForm(request.POST)
            if form.is_valid():
                doc = form.cleaned_data["document"]
                try:
                    topology_replace(
                        microgrid=microgrid,
                        base_version=form.cleaned_data["base_version"],
                        nodes=doc.get("nodes"),
                        assets=doc.get("assets"),
                        user=request.user,
                    )
                except DomainError as exc:
                    errors = exc
                else:
                    self.message_user(
                        request,
                        f"Saved topology version {microgrid.topology_version}",
                        messages.SUCCESS,
                    )
                    return redirect("admin:topology_microgrid_change", microgrid.pk)
        else:
            doc = topology_document(microgrid)
            form = TopologyJsonForm(
                initial={
                    "base_version": microgrid.topology_version,
                    "document": json.dumps(
                        {"nodes": doc["nodes"], "assets": doc["assets"]}, indent=2
                    ),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Edit topology of {microgrid.microgrid_id} (version {microgrid.topology_version})",
            "microgrid": microgrid,
            "form": form,
            "error": errors,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/topology_edit.html", context)


@admin.register(MicrogridNode)
class MicrogridNodeAdmin(ReadOnlyAdmin):
    list_display = (
        "node_id",
        "microgrid",
        "kind",
        "name",
        "parent",
        "physical_rating_kw",
        "voltage_v",
        "phases",
        "rating_a",
        "max_unbalance_a",
    )
    list_filter = ("kind", "microgrid")
    search_fields = ("node_id", "name", "microgrid__microgrid_id")
    list_select_related = ("microgrid", "parent")


@admin.register(Asset)
class AssetAdmin(ReadOnlyAdmin):
    list_display = ("asset_id", "microgrid", "kind", "name", "node", *ASSET_FIELDS)
    list_filter = ("kind", "microgrid")
    search_fields = ("asset_id", "name", "microgrid__microgrid_id", "station_id")
    list_select_related = ("microgrid", "node")


@admin.register(TopologyRevision)
class TopologyRevisionAdmin(ReadOnlyAdmin):
    list_display = ("microgrid", "version", "created_at", "created_by", "summary")
    list_filter = ("microgrid",)
    readonly_fields = ("microgrid", "version", "created_at", "created_by", "summary", "snapshot")


@admin.register(MicrogridMembership)
class MicrogridMembershipAdmin(SimpleHistoryAdmin):
    """Who reaches which microgrid (spec 6, access): a change counts from the next request."""

    list_display = ("user", "microgrid", "all_microgrids", "created_at")
    list_filter = ("all_microgrids", "microgrid")
    list_select_related = ("user", "microgrid")
    search_fields = ("user__username", "microgrid__microgrid_id")
    fields = ("user", "microgrid", "all_microgrids", "created_at")
    readonly_fields = ("created_at",)
