from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from microgrid.common.models import AccessRefusal, ApiToken
from microgrid.common.services import api_tokens_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(SimpleHistoryAdmin):
    list_display = ("key_prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "name", "key_prefix")
    # A token's user and revocation are final: revoke with the action, issue a new key with
    # `manage.py create_api_token`; only the label may change.
    readonly_fields = ("user", "key_prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        # Keys are shown once; issue them with `manage.py create_api_token`.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        revoked = api_tokens_revoke(tokens=queryset, user=request.user)
        self.message_user(request, f"Revoked {len(revoked)} token(s)", messages.SUCCESS)


@admin.register(AccessRefusal)
class AccessRefusalAdmin(admin.ModelAdmin):
    """Requests refused because they named a microgrid or circuit outside the caller's
    memberships: who, which microgrid or circuit, which path, when. Read-only, append-only."""

    list_display = ("at", "username", "microgrid_id", "circuit_id", "method", "path", "code")
    list_filter = ("code", "method")
    search_fields = ("username", "microgrid_id", "circuit_id", "path")
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
