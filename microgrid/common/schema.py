"""The OpenAPI document and its docs page, behind the API's authentication like every endpoint.

The schema reveals no data, but spec 6 says every API endpoint refuses
anonymous callers, so the schema and the docs page take any role (integration
clients need the legacy contract too) and refuse everyone else with the API's
JSON error body, also where the view would otherwise answer in YAML or HTML.
"""

from __future__ import annotations

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
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
    permission_classes = [AnyRole]
