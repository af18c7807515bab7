"""Channels: how a batch of deliveries leaves the product.

A channel backend takes a `Batch` (one cycle's deliveries on that channel) and
answers a `SendResult`. Which channel a microgrid's setpoints take is decided
when the cycle writes them, by the resolvers of every app in priority order
(the simulator's, while a run is active for the microgrid, before the webhook);
with none, the channel is PULL: the setpoints wait for
`GET /api/microgrids/{id}/setpoints/` and nothing is pushed.

The backends and resolvers are the answers to dispatch's signals (`dispatch.signals`):
dispatch answers for its webhook, the apps above (the simulator, OCPP stations) for
theirs, each in its `receivers.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings

from dispatch import signals
from dispatch.choices import Channel, DeliveryStatus
from microgrid.common import jsonfast
from microgrid.common.signals import collect


@dataclass(frozen=True)
class Setpoint:
    target_type: str
    target_id: str
    scope: dict[str, Any] | None
    limit_kw: float
    valid_until: str


@dataclass(frozen=True)
class Batch:
    """One cycle's message on one channel. `setpoints` are the chargers it sends (all of them
    when `full`); every other setpoint the receiver holds from this microgrid (`renewed` of
    them) is renewed: it keeps its limit and takes `valid_until` (spec 4.7, Renewal)."""

    batch_id: str
    microgrid_id: str
    cycle_id: str
    seq: int  # the cycle's, increasing: a receiver applies a message newer than its last only
    valid_until: str
    attempt: int
    full: bool  # the receiver drops any held setpoint not in `setpoints`
    renewed: int
    setpoints: list[Setpoint]  # chargers
    budgets: list[Setpoint]  # scope budgets
    config: Any = None  # the microgrid's DispatchConfig (or None)


@dataclass
class SendResult:
    """What the channel says. `status` applies to every delivery of the batch unless
    `per_delivery` names one (a channel that answers per target, such as OCPP)."""

    status: str
    http_status: int | None = None
    error: str = ""
    per_delivery: dict[int, str] = field(default_factory=dict)


class ChannelBackend(Protocol):
    def send(self, batch: Batch) -> SendResult: ...


def backend(name: str) -> ChannelBackend | None:
    """The backend an app answers for channel `name` (`signals.channel_backends`)."""
    for answer in collect(signals.channel_backends):
        if name in answer:
            return answer[name]
    return None


def resolve_channel(microgrid, config) -> str:
    """The channel this microgrid's setpoints take now (`signals.channel_resolvers`)."""
    named = [
        (priority, name)
        for priority, name in collect(signals.channel_resolvers, microgrid=microgrid, config=config)
        if name
    ]
    return min(named)[1] if named else Channel.PULL


def charger_channels(microgrid) -> dict[str, str]:
    """{asset_id: channel} for the chargers a channel of their own serves
    (`signals.charger_channels`)."""
    out: dict[str, str] = {}
    for answer in collect(signals.charger_channels, microgrid=microgrid):
        out.update(answer)
    return out


def endpoint(channel: str, config) -> str:
    """Who receives a channel's messages: what the receiver state is for (another webhook URL
    holds nothing yet)."""
    if channel == Channel.WEBHOOK and config is not None:
        return config.webhook_url
    return ""


def webhook_resolver(microgrid, config) -> str | None:
    return Channel.WEBHOOK if config is not None and config.webhook_url else None


# --- the webhook -----------------------------------------------------------------------------


def webhook_body(batch: Batch) -> bytes:
    """The exact bytes that are POSTed and signed (compact JSON, through orjson: the standard
    library took 10 ms for 2,000 setpoints)."""
    return jsonfast.dumps(
        {
            "cycle_id": batch.cycle_id,
            "microgrid_id": batch.microgrid_id,
            "seq": batch.seq,
            "valid_until": batch.valid_until,
            "full": batch.full,
            "setpoints": [
                {"asset_id": s.target_id, "limit_kw": s.limit_kw, "valid_until": s.valid_until}
                for s in batch.setpoints
            ],
            "scope_budgets": [
                {"scope": b.scope, "budget_kw": b.limit_kw, "valid_until": b.valid_until}
                for b in batch.budgets
            ],
        }
    )


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    """One POST per batch. 2xx ACCEPTED; 4xx REJECTED (409 to a difference: the receiver holds
    nothing to renew, sent again in full); 5xx, a refused connection or no answer within
    DISPATCH_WEBHOOK_TIMEOUT_S FAILED (retried while valid)."""

    def send(self, batch: Batch) -> SendResult:
        config = batch.config
        if config is None or not config.webhook_url:
            return SendResult(DeliveryStatus.FAILED, error="no webhook configured")
        body = webhook_body(batch)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "microgrid-dispatch/1",
            "X-Microgrid-Signature": signature(config.webhook_secret, body),
            "X-Microgrid-Delivery": batch.batch_id,
            "Idempotency-Key": batch.cycle_id,
        }
        url = urlsplit(config.webhook_url)
        timeout = settings.DISPATCH_WEBHOOK_TIMEOUT_S
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        if url.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.hostname, url.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            code = response.status
        except TimeoutError:
            return SendResult(DeliveryStatus.FAILED, error=f"no answer within {timeout} s")
        except (OSError, http.client.HTTPException) as exc:
            return SendResult(DeliveryStatus.FAILED, error=f"{exc.__class__.__name__}: {exc}"[:300])
        finally:
            conn.close()
        if 200 <= code < 300:
            return SendResult(DeliveryStatus.ACCEPTED, http_status=code)
        if 400 <= code < 500:
            return SendResult(DeliveryStatus.REJECTED, http_status=code, error=f"HTTP {code}")
        return SendResult(DeliveryStatus.FAILED, http_status=code, error=f"HTTP {code}")
