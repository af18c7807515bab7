"""In-process HTTP calls (the simulator, the benchmarks) that behave under production settings.

A request made through Django's test client never crosses a network, so it is
marked as arriving over HTTPS (with `DEBUG=false`, `SECURE_SSL_REDIRECT` would
otherwise answer every call 301) and names a host the deployment allows (with
`ALLOWED_HOSTS` set to the real host names, the client's default `testserver`
would be refused 400). Everything else (URL resolver, middleware,
authentication, permissions, views) runs as for a client's request.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.test import APIClient


def allowed_host() -> str:
    """A host name `ALLOWED_HOSTS` accepts: its first literal entry, else `testserver`."""
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return host
    for host in settings.ALLOWED_HOSTS:
        if host.startswith(".") and len(host) > 1:
            return host[1:]
    return "testserver"


class InProcessClient(APIClient):
    """DRF's APIClient, every request secure and addressed to an allowed host."""

    def __init__(self, **defaults) -> None:
        defaults.setdefault("HTTP_HOST", allowed_host())
        defaults.setdefault("raise_request_exception", False)
        super().__init__(**defaults)

    def generic(self, method, path, data="", content_type="application/octet-stream", **extra):
        extra["secure"] = True
        return super().generic(method, path, data, content_type, **extra)
