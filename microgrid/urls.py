"""Root URLs. Each app owns its API and Manage routes; ids may contain dots."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path, register_converter
from django.views.generic import RedirectView

from microgrid.common import views as common_views
from microgrid.common.api import api_404
from microgrid.common.converters import IdConverter
from microgrid.common.schema import DocsView, SchemaView

register_converter(IdConverter, "mgid")

api_patterns = [
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("docs/", DocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("microgrid.fleet.api.urls")),
    path("", include("microgrid.topology.api.urls")),
    path("", include("microgrid.limits.api.urls")),
    path("", include("microgrid.telemetry.api.urls")),
    path("", include("microgrid.envelopes.api.urls")),
    path("", include("balancing.api.urls")),
    path("", include("dispatch.api.urls")),
    path("", include("stations.api.urls")),
    path("", include("legacy_circuit.api.urls")),
    path("", include("microgrid.capabilities.api.urls")),
]

manage_patterns = [
    path("", RedirectView.as_view(url="/manage/microgrids/", permanent=False)),
    path("", include("microgrid.fleet.urls")),
    path("", include("microgrid.topology.urls")),
    path("", include("microgrid.limits.urls")),
    path("", include("microgrid.envelopes.urls")),
    path("", include("balancing.urls")),
    path("", include("stations.urls")),
    path("legacy/", include("legacy_circuit.urls")),
    path("", include("microgrid.capabilities.urls")),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/manage/microgrids/", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", common_views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico on every page: the app's icon, not a 404.
    path(
        "favicon.ico",
        RedirectView.as_view(url="/static/img/favicon.svg", permanent=True),
        name="favicon",
    ),
    path("api/", include(api_patterns)),
    re_path(r"^api/", api_404),
    path("oscp/fp/2.0/", include("microgrid.envelopes.api.oscp_urls")),
    re_path(r"^oscp/", api_404),
    path("manage/", include(manage_patterns)),
]

handler404 = "microgrid.common.views.handler404"
handler500 = "microgrid.common.views.handler500"
