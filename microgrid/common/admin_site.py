"""Django admin is for support staff (and superusers) only."""

from django.contrib import admin

from microgrid.common.roles import SUPPORT, user_roles


class SupportAdminSite(admin.AdminSite):
    site_header = "Microgrid support"
    site_title = "Microgrid support"
    index_title = "Depots, microgrids and everything behind them"

    def has_permission(self, request):
        user = request.user
        return bool(user.is_active and user.is_staff and SUPPORT in user_roles(user))
