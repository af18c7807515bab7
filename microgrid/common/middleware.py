"""Request-level guards that must run before any view reads the body."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse


class RequestSizeLimitMiddleware:
    """Refuse oversized bodies with 413 REQUEST_TOO_LARGE before anything parses them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return JsonResponse(
                {
                    "code": "REQUEST_TOO_LARGE",
                    "message": f"Request body is larger than {limit} bytes",
                    "details": {"limit_bytes": limit, "content_length": length},
                },
                status=413,
            )
        return self.get_response(request)
