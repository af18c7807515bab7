"""The OpenAPI document and its docs page, behind the API's authentication like every endpoint.

The schema reveals no data, but spec 6 says every API endpoint refuses
anonymous callers, so the schema and the docs page take any role (integration
clients need the legacy contract too) and refuse everyone else with the API's
JSON error body, also where the view would otherwise answer in YAML or HTML.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.renderers import JSONRenderer

from microgrid.common.roles import AnyRole


class _JsonRefusals:
    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # The schema renders YAML and the docs page HTML: a refusal is the API's JSON body.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(_JsonRefusals, SpectacularAPIView):
    permission_classes = [AnyRole]


class DocsView(_JsonRefusals, SpectacularSwaggerView):
    """The Swagger page, with a bar back to the app; a browser without a session is sent
    to the login page (and back here after it) rather than shown the 401 JSON."""

    permission_classes = [AnyRole]
    template_name = "api_docs.html"

    def handle_exception(self, exc):
        if isinstance(exc, NotAuthenticated | AuthenticationFailed) and _wants_html(self.request):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)


def _wants_html(request) -> bool:
    """A browser navigating here (Accept names text/html) and not an API client with a token."""
    accept = request.META.get("HTTP_ACCEPT", "")
    return "text/html" in accept and "HTTP_AUTHORIZATION" not in request.META
