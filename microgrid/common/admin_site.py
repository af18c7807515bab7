"""Django admin is for support staff (and superusers) only; records nobody edits by hand
(outboxes, message logs, revisions) are shown read-only with `ReadOnlyMixin`."""

from django.contrib import admin

from microgrid.common.roles import SUPPORT, user_roles


class SupportAdminSite(admin.AdminSite):
    site_header = "Microgrid support"
    site_title = "Microgrid support"
    index_title = "Depots, microgrids and everything behind them"

    def has_permission(self, request):
        user = request.user
        return bool(user.is_active and user.is_staff and SUPPORT in user_roles(user))


class ReadOnlyMixin:
    """A ModelAdmin that lists and shows, and never adds, changes or deletes."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
