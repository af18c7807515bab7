"""The client's address as login lockouts see it, also behind reverse proxies.

Behind a load balancer every request arrives from the proxy's address, so django-axes would
lock a user out for everyone at once (and count everyone's failures together). With
`TRUSTED_PROXY_COUNT=N` (the number of proxies in front of the app, each appending the address
it received from to X-Forwarded-For) the client is the N-th address from the right of that
header: the entries further left are whatever the client sent and cannot be trusted. With 0
(the default: the app is reached directly) only REMOTE_ADDR counts, and a header a client
made up changes nothing.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_ip(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR") or None
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    chain = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    chain = [a for a in chain if a]
    if len(chain) < count:
        return remote  # fewer hops than configured: not through our proxies
    candidate = chain[-count]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
