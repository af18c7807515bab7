"""The OSCP outbox: every message this product sends to a Capacity Provider.

A message is written as an `OscpOutbound` row in the transaction that decides to send it
and delivered after the commit by a Celery task, one message per task, so a CP that does
not answer holds up nothing but its own messages. Each attempt is recorded on the row
(attempts, last status code or error, sent_at): the row is the audit of what was sent.

- 2xx: SENT. 4xx other than 408 / 429: FAILED, not retried (the CP refused the message;
  sending it again would be refused again). Anything else (no connection, timeout, 5xx,
  408, 429): retried with exponential backoff (5 s, 10 s, 20 s ... at most 10 min).
- A message expires by type (`EXPIRY`): a heartbeat is worth nothing after its interval,
  measurements are worth sending a day late. An expired message is EXPIRED, never sent.
- Delivery takes a lease on the row (next_attempt_at moves past the request's timeout
  before the request is made), so two workers never send one message at once.
"""

from __future__ import annotations

import json
import logging
import secrets
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from microgrid.envelopes.choices import OutboundState, OutboundType
from microgrid.envelopes.models import OscpOutbound, OscpPeer

log = logging.getLogger(__name__)

# How long a message is worth sending, by type (a heartbeat: its interval, set per message).
EXPIRY = {
    OutboundType.REGISTER: timedelta(hours=1),
    OutboundType.HANDSHAKE_ACKNOWLEDGEMENT: timedelta(minutes=10),
    OutboundType.HEARTBEAT: None,  # the peer's heartbeat interval
    OutboundType.UPDATE_GROUP_MEASUREMENTS: timedelta(days=1),
    OutboundType.GROUP_CAPACITY_COMPLIANCE_ERROR: timedelta(hours=1),
}
FIRST_BACKOFF_S = 5
MAX_BACKOFF_S = 600
RETRIED_4XX = frozenset({408, 429})


def timeout_s() -> float:
    return float(getattr(settings, "OSCP_OUTBOUND_TIMEOUT_S", 5))


def backoff(attempts: int) -> timedelta:
    """After the n-th failed attempt: 5 s x 2^(n-1), at most 10 minutes."""
    return timedelta(seconds=min(FIRST_BACKOFF_S * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S))


def new_request_id() -> str:
    return secrets.token_urlsafe(12)


def outbound_enqueue(
    *,
    peer: OscpPeer,
    message_type: str,
    body: dict[str, Any],
    now: datetime,
    correlation_id: str = "",
    group_id: str = "",
    method: str = "POST",
    secret: str = "",
    stored_body: dict[str, Any] | None = None,
    dedupe_key: str = "",
    expires_in: timedelta | None = None,
) -> OscpOutbound | None:
    """Inside the caller's transaction: one message to `peer`'s CP, delivered after the
    commit. None when the peer has no CP connection (nothing can be sent) or a message with
    this dedupe_key was enqueued before."""
    if not peer.connected:
        return None
    if dedupe_key and OscpOutbound.objects.filter(peer=peer, dedupe_key=dedupe_key).exists():
        return None
    ttl = expires_in or EXPIRY.get(message_type) or timedelta(seconds=peer.interval_s)
    row = OscpOutbound.objects.create(
        peer=peer,
        message_type=message_type,
        method=method,
        request_id=new_request_id(),
        correlation_id=correlation_id,
        group_id=group_id,
        body=json.dumps(stored_body if stored_body is not None else body),
        secret=secret,
        dedupe_key=dedupe_key,
        created_at=now,
        expires_at=now + ttl,
        next_attempt_at=now,
    )
    pk = row.pk
    transaction.on_commit(lambda: _deliver_later(pk), robust=True)
    return row


def _deliver_later(pk: int) -> None:
    from microgrid.envelopes.tasks import deliver_oscp

    deliver_oscp.delay(pk)


def outbound_cancel(*, peer: OscpPeer, now: datetime) -> int:
    """The peer's pending messages will never be sent (it unregistered)."""
    return OscpOutbound.objects.filter(peer=peer, state=OutboundState.PENDING).update(
        state=OutboundState.CANCELLED, last_error="cancelled: the peer unregistered"
    )


def _body_to_send(row: OscpOutbound) -> bytes:
    data = json.loads(row.body)
    if row.secret:
        data["token"] = row.secret
    return json.dumps(data).encode()


def _lease(pk: int, now: datetime) -> OscpOutbound | None:
    """The due message, leased to this attempt; None if it is not due, done or leased."""
    with transaction.atomic():
        row = (
            OscpOutbound.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("peer")
            # The first attempt is made at once, whatever clock the enqueuing service ran on.
            .filter(Q(next_attempt_at__lte=now) | Q(attempts=0), pk=pk)
            .filter(state=OutboundState.PENDING)
            .first()
        )
        if row is None:
            return None
        if row.expires_at <= now:
            row.state = OutboundState.EXPIRED
            row.save(update_fields=["state"])
            return None
        if not row.peer.connected:
            row.state = OutboundState.CANCELLED
            row.last_error = "cancelled: the peer has no CP connection"
            row.save(update_fields=["state", "last_error"])
            return None
        row.attempts += 1
        row.last_attempt_at = now
        row.next_attempt_at = now + timedelta(seconds=timeout_s() * 2 + 1)
        row.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
    return row


def outbound_deliver(*, pk: int, now: datetime | None = None) -> str | None:
    """One attempt at one message; returns its state afterwards (None: nothing to do)."""
    now = now or timezone.now()
    row = _lease(pk, now)
    if row is None:
        return None
    peer = row.peer
    url = f"{peer.cp_base_url.rstrip('/')}/{OutboundType(row.message_type).label}"
    headers = {
        "Authorization": f"Token {peer.cp_token}",
        "X-Request-ID": row.request_id,
        "Content-Type": "application/json",
    }
    if row.correlation_id:
        headers["X-Correlation-ID"] = row.correlation_id
    request = urllib.request.Request(
        url, data=_body_to_send(row), headers=headers, method=row.method
    )
    status, error = None, ""
    try:
        with urllib.request.urlopen(request, timeout=timeout_s()) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        error = f"HTTP {exc.code}: {exc.read(300).decode('utf-8', 'replace')}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    done_at = timezone.now() if now is None else now
    fields: dict[str, Any] = {"last_status_code": status, "last_error": error[:500]}
    if status is not None and 200 <= status < 300:
        fields.update(state=OutboundState.SENT, sent_at=done_at, last_error="")
        if row.secret:
            fields["secret"] = ""  # delivered: the CP has it; nothing to keep
    elif status is not None and 400 <= status < 500 and status not in RETRIED_4XX:
        fields.update(state=OutboundState.FAILED)
    else:
        retry_at = done_at + backoff(row.attempts)
        if retry_at >= row.expires_at:
            fields.update(state=OutboundState.EXPIRED)
        else:
            fields.update(next_attempt_at=retry_at)
        log.warning("OSCP %s to %s failed (%s): %s", row.message_type, peer.name, status, error)
    OscpOutbound.objects.filter(pk=row.pk).update(**fields)
    return fields.get("state", OutboundState.PENDING)


def outbound_due(*, now: datetime) -> list[int]:
    """Messages to (re)try now, oldest first; expired ones are marked EXPIRED."""
    OscpOutbound.objects.filter(state=OutboundState.PENDING, expires_at__lte=now).update(
        state=OutboundState.EXPIRED
    )
    return list(
        OscpOutbound.objects.filter(Q(next_attempt_at__lte=now), state=OutboundState.PENDING)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:500]
    )
