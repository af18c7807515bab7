"""Support staff see and fix OSCP peers, group bindings and operating envelopes here.

Peers and bindings are written through the services (a token is only ever
stored hashed); envelopes are read-only apart from the "Withdraw" action,
which calls the same service as the API. Messages, transitions and peer mode
changes are the audit trail: read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from simple_history.admin import SimpleHistoryAdmin

from microgrid.common.admin_site import ReadOnlyMixin
from microgrid.common.errors import DomainError
from microgrid.envelopes.choices import ScopeType
from microgrid.envelopes.models import (
    EnvelopeTransition,
    OperatingEnvelope,
    OscpGroupBinding,
    OscpMessage,
    OscpOutbound,
    OscpPeer,
    OscpSegment,
    PeerModeChange,
)
from microgrid.envelopes.selectors import envelope_status
from microgrid.envelopes.services import (
    connection_problems,
    envelope_withdraw,
    oscp_group_binding_delete,
    oscp_group_binding_save,
    oscp_group_binding_validate,
    oscp_peer_save,
    oscp_register_start,
    peer_problems,
)


def _errors_to_form(form: forms.Form, exc: DomainError, fields: dict[str, str]) -> None:
    items = exc.errors or []
    if not items:
        raise ValidationError(f"{exc.code}: {exc.message}")
    for item in items:
        name = fields.get((item.field or "").split(".")[0])
        form.add_error(name, f"{item.code}: {item.message}")


class OscpPeerAdminForm(forms.ModelForm):
    new_token = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Set or replace the peer's token (at least 16 characters). It is stored "
        "hashed and cannot be shown again; leave empty to keep the current one.",
    )

    cp_base_url = forms.URLField(
        label="CP base URL",
        required=False,
        max_length=300,
        assume_scheme="https",
        help_text="The capacity provider's OSCP 2.0 base URL, e.g. https://cp.example/oscp/cp/2.0",
    )
    new_cp_token = forms.CharField(
        label="New CP token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="The token the capacity provider gave us (sent as 'Authorization: Token' to "
        "the CP). Leave empty to keep the current one.",
    )

    class Meta:
        model = OscpPeer
        fields = ("name", "heartbeat_interval_s", "active", "cp_base_url", "measurement_interval_s")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["measurement_interval_s"].required = False  # empty: keep (default 900)

    def clean(self):
        cleaned = super().clean()
        token = cleaned.get("new_token") or None
        if self.instance.pk is None and OscpPeer.objects.filter(name=cleaned.get("name")).exists():
            self.add_error("name", "An OSCP peer with this name exists.")
        problems = peer_problems(
            # On a change the name is read-only (not in the form): the instance's.
            self.instance.name if self.instance.pk else cleaned.get("name"),
            token,
            cleaned.get("heartbeat_interval_s"),
            token_required=self.instance.pk is None,
        )
        for item in problems:
            name = {"name": "name", "token": "new_token"}.get(item.field, "heartbeat_interval_s")
            self.add_error(name, f"{item.code}: {item.message}")
        for item in connection_problems(
            cleaned.get("cp_base_url"),
            cleaned.get("new_cp_token") or None,
            cleaned.get("measurement_interval_s"),
        ):
            name = {"cp_token": "new_cp_token"}.get(item.field, item.field)
            self.add_error(name, f"{item.code}: {item.message}")
        return cleaned

    def _post_clean(self):
        # The service writes the row (and hashes the token); the model's own
        # checks of a half-filled instance would only repeat it less well.
        pass


class OscpGroupBindingInline(admin.TabularInline):
    model = OscpGroupBinding
    extra = 0
    can_delete = False
    fields = ("group_id", "microgrid", "scope_type", "node")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(OscpPeer)
class OscpPeerAdmin(SimpleHistoryAdmin):
    form = OscpPeerAdminForm
    list_display = (
        "name",
        "active",
        "token_prefix",
        "heartbeat_interval_s",
        "offline_mode_at",
        "last_heartbeat_at",
        "last_handshake_at",
        "cp_base_url",
        "registered_at",
    )
    list_filter = ("active",)
    search_fields = ("name",)
    inlines = [OscpGroupBindingInline]
    readonly_fields = (
        "token_prefix",
        "offline_mode_at",
        "last_heartbeat_at",
        "last_handshake_at",
        "required_behaviour",
        "handshake_heartbeat_interval_s",
        "registered_at",
        "cp_token_set",
        "created_at",
    )

    actions = ["deactivate", "register"]

    @admin.display(description="CP token", boolean=True)
    def cp_token_set(self, obj):
        return bool(obj.cp_token)

    @admin.action(description="Register with the CP (sends a new token for it, version 2.0)")
    def register(self, request, queryset):
        base = request.build_absolute_uri("/oscp/fp/2.0")
        for peer in queryset:
            try:
                oscp_register_start(peer=peer, fp_base_url=base, user=request.user)
            except DomainError as exc:
                self.message_user(request, f"{peer.name}: {exc.code} {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{peer.name}: register queued", messages.SUCCESS)

    def get_readonly_fields(self, request, obj=None):
        return (("name",) if obj is not None else ()) + self.readonly_fields

    @admin.action(description="Deactivate selected peers (their tokens are refused)")
    def deactivate(self, request, queryset):
        count = 0
        for peer in queryset.filter(active=True):
            _, changed = oscp_peer_save(name=peer.name, active=False, user=request.user)
            count += changed
        self.message_user(request, f"Deactivated {count} OSCP peer(s)", messages.SUCCESS)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved, _ = oscp_peer_save(
            name=obj.name if change else data["name"],
            token=data.get("new_token") or None,
            heartbeat_interval_s=data.get("heartbeat_interval_s"),
            active=data.get("active"),
            cp_base_url=data.get("cp_base_url") or "",
            cp_token=data.get("new_cp_token") or None,
            measurement_interval_s=data.get("measurement_interval_s"),
            user=request.user,
        )
        obj.pk = saved.pk
        for field in OscpPeer._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))

    def has_delete_permission(self, request, obj=None):
        # Messages and envelopes keep a peer for the audit: deactivate it instead.
        return obj is not None and not obj.messages.exists()


class OscpGroupBindingAdminForm(forms.ModelForm):
    node_id = forms.CharField(
        label="Microgrid Node id",
        required=False,
        help_text="For a NODE scope; empty for the whole Microgrid",
    )

    class Meta:
        model = OscpGroupBinding
        fields = ("peer", "group_id", "microgrid", "scope_type")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.node_id:
            self.initial.setdefault("node_id", self.instance.node.node_id)

    def clean(self):
        cleaned = super().clean()
        instance = self.instance
        peer = instance.peer if instance.pk else cleaned.get("peer")
        microgrid = instance.microgrid if instance.pk else cleaned.get("microgrid")
        group_id = instance.group_id if instance.pk else cleaned.get("group_id")
        if peer is None or microgrid is None or self.errors:
            return cleaned
        try:
            oscp_group_binding_validate(
                peer=peer, group_id=group_id, microgrid=microgrid, scope=self.scope()
            )
        except DomainError as exc:
            _errors_to_form(self, exc, {"group_id": "group_id", "scope": "node_id"})
        return cleaned

    def scope(self) -> dict:
        data = self.cleaned_data
        if data.get("scope_type") == ScopeType.NODE:
            return {"type": "NODE", "node_id": (data.get("node_id") or "").strip() or None}
        return {"type": "MICROGRID"}

    def _post_clean(self):
        pass


@admin.register(OscpGroupBinding)
class OscpGroupBindingAdmin(SimpleHistoryAdmin):
    form = OscpGroupBindingAdminForm
    list_display = ("group_id", "peer", "microgrid", "scope_type", "node", "updated_at")
    list_filter = ("scope_type", "peer", "microgrid")
    search_fields = ("group_id", "peer__name", "microgrid__microgrid_id", "node__node_id")
    list_select_related = ("peer", "microgrid", "node")

    def get_readonly_fields(self, request, obj=None):
        return ("peer", "group_id", "microgrid") if obj is not None else ()

    def get_fields(self, request, obj=None):
        return ("peer", "group_id", "microgrid", "scope_type", "node_id")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved, _ = oscp_group_binding_save(
            peer=obj.peer if change else data["peer"],
            group_id=obj.group_id if change else data["group_id"],
            microgrid=obj.microgrid if change else data["microgrid"],
            scope=form.scope(),
            user=request.user,
        )
        obj.pk = saved.pk
        for field in OscpGroupBinding._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))

    def delete_model(self, request, obj):
        oscp_group_binding_delete(binding=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for binding in queryset:
            oscp_group_binding_delete(binding=binding, user=request.user)


@admin.action(description="Withdraw selected operating envelopes (PENDING or ACTIVE only)")
def withdraw_envelopes(modeladmin, request, queryset):
    done = 0
    for envelope in queryset.select_related("microgrid").order_by("microgrid_id", "number"):
        try:
            envelope_withdraw(envelope=envelope, user=request.user, reason="withdrawn in admin")
        except DomainError as exc:
            modeladmin.message_user(
                request, f"{envelope.envelope_id}: {exc.code} {exc.message}", messages.ERROR
            )
        else:
            done += 1
    if done:
        modeladmin.message_user(
            request, f"Withdrew {done} operating envelope(s).", messages.SUCCESS
        )


@admin.register(OperatingEnvelope)
class OperatingEnvelopeAdmin(SimpleHistoryAdmin):
    list_display = (
        "envelope_id",
        "microgrid",
        "scope_type",
        "node_id",
        "forecast_type",
        "capacity_kw",
        "valid_from",
        "valid_until",
        "state",
        "status_now",
        "peer",
        "group_id",
        "received_at",
    )
    list_filter = ("state", "forecast_type", "direction", "microgrid", "peer")
    search_fields = ("envelope_id", "group_id", "message__request_id", "microgrid__microgrid_id")
    list_select_related = ("microgrid", "peer")
    date_hierarchy = "valid_from"
    actions = [withdraw_envelopes]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in OperatingEnvelope._meta.fields]

    @admin.display(description="Status now")
    def status_now(self, obj):
        from django.utils import timezone

        return envelope_status(obj, timezone.now())

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    pass


@admin.register(OscpMessage)
class OscpMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "peer",
        "message_type",
        "request_id",
        "correlation_id",
        "group_id",
        "segments",
        "notes",
    )
    list_filter = ("message_type", "peer")
    search_fields = ("request_id", "correlation_id", "group_id", "body")
    date_hierarchy = "received_at"


@admin.register(EnvelopeTransition)
class EnvelopeTransitionAdmin(ReadOnlyAdmin):
    list_display = ("at", "envelope", "transition", "recorded_at")
    list_filter = ("transition",)
    search_fields = ("envelope__envelope_id",)
    list_select_related = ("envelope",)


@admin.register(PeerModeChange)
class PeerModeChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "peer", "mode", "cause", "recorded_at")
    list_filter = ("mode", "cause", "peer")


@admin.register(OscpSegment)
class OscpSegmentAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "peer", "correlation_id", "index", "count", "state", "closed_at")
    list_filter = ("state", "peer")
    search_fields = ("correlation_id", "request_id")
    list_select_related = ("peer",)


@admin.register(OscpOutbound)
class OscpOutboundAdmin(ReadOnlyAdmin):
    """Every message sent to a CP: the outbox and its audit."""

    list_display = (
        "created_at",
        "peer",
        "message_type",
        "group_id",
        "state",
        "attempts",
        "last_status_code",
        "sent_at",
        "expires_at",
        "request_id",
    )
    list_filter = ("state", "message_type", "peer")
    search_fields = ("request_id", "correlation_id", "group_id", "body")
    list_select_related = ("peer",)
    date_hierarchy = "created_at"
    exclude = ("secret",)
