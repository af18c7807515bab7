"""Writes of the dispatch app: channel settings, the outbox, sending and its sweep.

- `deliveries_write` runs inside the cycle's transaction (the `cycle_stored`
  signal): one row per target, written set-based (one read of the last
  accepted setpoints, one UPDATE for the superseded rows, one INSERT), and the
  send is asked for on commit.
- `deliveries_send(microgrid_id=...)` is what the Celery task runs: it expires
  what can no longer be delivered, claims what is due with one conditional
  UPDATE (so two workers never send the same row), sends each batch through its
  channel and records the answers.
- `deliveries_sweep()` is the beat's safety net: it expires, and asks for a send
  wherever something is due (a retry's backoff has passed, the broker was down
  when the cycle committed, a worker died holding a claim).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from balancing.dispatch import ChargingLimit, ScopeBudget
from balancing.models import Cycle
from dispatch import channels
from dispatch.choices import NOT_BY_WORKER, SUPERSEDABLE, Channel, DeliveryStatus, TargetType
from dispatch.models import (
    DEFAULT_DEADBAND_KW,
    DEFAULT_REFRESH_S,
    Delivery,
    DeliveryAttempt,
    DispatchConfig,
    LastAccepted,
)
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.prepared import PreparedRead
from microgrid.topology.models import Microgrid

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("2f6b1d0e-53a4-4c55-9a55-4f3c1e7d8b21")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def _stable(*parts: object) -> str:
    """Ids derived from what identifies the row, so a replayed simulator run is byte-identical:
    the hex of `uuid.uuid5(_NAMESPACE, "a:b:c")`, computed without building a UUID object
    (a 2,000-charger cycle names 2,000 deliveries; the object cost 40 % of the outbox write)."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + ":".join(str(p) for p in parts).encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return digest.hex()


def batch_id_of(cycle_id: str, channel: str) -> str:
    return _stable("batch", cycle_id, channel)


# --- configuration ---------------------------------------------------------------------------


def check_config(data: Any, *, prefix: str = "") -> tuple[dict[str, Any] | None, list[ErrorItem]]:
    """`{webhook?: {url, secret}, deadband_kw?, refresh_s?}` -> model fields, or the problems."""

    def bad(name: str, message: str) -> ErrorItem:
        return ErrorItem("FIELD_INVALID", f"{prefix}{name} {message}", field=f"{prefix}{name}")

    if not isinstance(data, dict):
        return None, [
            ErrorItem(
                "FIELD_INVALID",
                "dispatch is {webhook?: {url, secret}, deadband_kw?, refresh_s?}",
                field=prefix.rstrip(".") or "dispatch",
            )
        ]
    errors = [
        bad(k, "is not a field of the dispatch settings")
        for k in sorted(set(data) - {"webhook", "deadband_kw", "refresh_s"}, key=str)
    ]
    out: dict[str, Any] = {
        "webhook_url": "",
        "webhook_secret": "",
        "deadband_kw": DEFAULT_DEADBAND_KW,
        "refresh_s": DEFAULT_REFRESH_S,
    }
    hook = data.get("webhook")
    if hook is not None:
        if not isinstance(hook, dict):
            errors.append(bad("webhook", "must be {url, secret}"))
        else:
            errors += [
                bad(f"webhook.{k}", "is not a field of a webhook")
                for k in sorted(set(hook) - {"url", "secret"}, key=str)
            ]
            url, secret = hook.get("url"), hook.get("secret")
            problem = url_problem(url)
            if problem:
                errors.append(bad("webhook.url", problem))
            if not isinstance(secret, str) or not secret.strip():
                errors.append(bad("webhook.secret", "must be a non-empty string"))
            elif len(secret) > 200 or "\x00" in secret:
                errors.append(bad("webhook.secret", "must be at most 200 characters, no NUL"))
            if not problem and isinstance(secret, str):
                out["webhook_url"], out["webhook_secret"] = url, secret
    if "deadband_kw" in data:
        value = data["deadband_kw"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= 10_000
        ):
            errors.append(bad("deadband_kw", "must be a number from 0 to 10000"))
        else:
            out["deadband_kw"] = float(value)
    if "refresh_s" in data:
        value = data["refresh_s"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 86_400:
            errors.append(bad("refresh_s", "must be a whole number of seconds from 0 to 86400"))
        else:
            out["refresh_s"] = value
    return (None if errors else out), errors


def url_problem(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return "must be a non-empty http:// or https:// URL"
    if len(url) > 500 or any(c.isspace() or ord(c) < 32 for c in url):
        return "must be an http:// or https:// URL of at most 500 characters without spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must use http or https"
    if not parts.hostname:
        return "must name a host"
    return None


def dispatch_config_input(data: Any, *, prefix: str = "dispatch.") -> dict[str, Any]:
    """`dispatch_config_set`'s keyword arguments for untrusted settings (a profile's
    `dispatch:` section), or 422 FIELD_INVALID naming every bad field."""
    fields, errors = check_config(data, prefix=prefix)
    if errors:
        raise DomainError.from_errors(errors, "the dispatch settings are invalid")
    return fields


def dispatch_config_set(
    *,
    microgrid: Microgrid,
    webhook_url: str = "",
    webhook_secret: str = "",
    deadband_kw: float = DEFAULT_DEADBAND_KW,
    refresh_s: int = DEFAULT_REFRESH_S,
) -> DispatchConfig:
    """Create or replace a microgrid's dispatch settings (checked: `check_config`); no webhook
    URL means the setpoints are pulled."""
    fields = {
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
        "deadband_kw": deadband_kw,
        "refresh_s": refresh_s,
    }
    with transaction.atomic():
        config = DispatchConfig.objects.filter(microgrid=microgrid).first()
        if config is None:
            return DispatchConfig.objects.create(microgrid=microgrid, **fields)
        if any(getattr(config, k) != v for k, v in fields.items()):
            for k, v in fields.items():
                setattr(config, k, v)
            config.save()
        return config


# --- the outbox ------------------------------------------------------------------------------


# Every cycle's outbox reads it (prepared; a batch of scheduled cycles reads it once for all).
_config = PreparedRead(
    lambda microgrid: DispatchConfig.objects.filter(microgrid_id=microgrid).order_by(),
    microgrid=int,
    batch_by="microgrid",
)


def deliveries_write(
    *, cycle: Cycle, limits: list[ChargingLimit], budgets: list[ScopeBudget]
) -> int:
    """Write the cycle's deliveries (in the caller's transaction); returns how many to send."""
    microgrid_pk = cycle.microgrid_id
    now = cycle.completed_at  # the cycle's clock (the simulator's, a benchmark's)
    found = _config(microgrid=microgrid_pk)
    config = found[0] if found else None
    channel = channels.resolve_channel(cycle.microgrid, config)
    # Chargers a channel of their own serves (OCPP stations) go there; the rest follow the
    # microgrid's channel.
    per_charger = channels.charger_channels(cycle.microgrid)
    deadband = config.deadband_kw if config else DEFAULT_DEADBAND_KW
    refresh = timedelta(seconds=config.refresh_s if config else DEFAULT_REFRESH_S)
    # Nothing pulled is ever acknowledged: only a push channel has accepted setpoints.
    accepted = (
        {}
        if channel == Channel.PULL and not per_charger
        else {
            target_id: (limit_kw, valid_until)
            for target_id, limit_kw, valid_until in LastAccepted.objects.filter(
                microgrid_id=microgrid_pk, target_type=TargetType.CHARGER, valid_until__gt=now
            ).values_list("target_id", "limit_kw", "valid_until")
        }
    )
    # Whatever an older cycle left unsent is replaced by this one's.
    Delivery.objects.filter(microgrid_id=microgrid_pk, status__in=SUPERSEDABLE).update(
        status=DeliveryStatus.SUPERSEDED, next_attempt_at=None
    )
    cycle_id = cycle.cycle_id
    valid_until = _until(limits, budgets)
    rows: list[list[Any]] = []
    sending: set[str] = set()
    batch_ids: dict[str, str] = {}

    def batch(target_channel: str) -> str:  # one id per channel, not one uuid5 per row
        if target_channel not in batch_ids:
            batch_ids[target_channel] = batch_id_of(cycle_id, target_channel)
        return batch_ids[target_channel]

    for limit in limits:
        target_channel = per_charger.get(limit.asset_id, channel)
        if target_channel == Channel.PULL:
            continue  # the cycle itself is what is pulled (spec 4.7)
        status = DeliveryStatus.PENDING
        last = accepted.get(limit.asset_id)
        if (
            last is not None
            and abs(last[0] - limit.limit_kw) <= deadband + 1e-9
            and last[1] - now > refresh
        ):
            status = DeliveryStatus.UNCHANGED
        else:
            sending.add(target_channel)
        rows.append(
            [
                _stable("delivery", cycle_id, TargetType.CHARGER, limit.asset_id),
                TargetType.CHARGER.value,
                limit.asset_id,
                None,
                limit.limit_kw,
                status.value,
                target_channel,
                batch(target_channel),
            ]
        )
    # Scope budgets go the microgrid's way; pulled ones are read from the cycle, as above.
    for budget in budgets if channel != Channel.PULL else ():
        scope = budget.scope or {"type": "MICROGRID"}
        target = scope.get("node_id") or "MICROGRID"
        sending.add(channel)
        rows.append(
            [
                _stable("delivery", cycle_id, TargetType.SCOPE, target),
                TargetType.SCOPE.value,
                target,
                scope,
                budget.budget_kw,
                DeliveryStatus.PENDING.value,
                channel,
                batch(channel),
            ]
        )
    if rows:
        _insert(
            rows,
            microgrid_pk=microgrid_pk,
            cycle_pk=cycle.pk,
            valid_until=valid_until,
            created_at=now,
        )
    if sending - set(NOT_BY_WORKER):
        microgrid_id = cycle.microgrid.microgrid_id
        transaction.on_commit(lambda: enqueue_send(microgrid_id))
    return sum(1 for r in rows if r[5] != DeliveryStatus.UNCHANGED)


_COLUMNS = (
    "delivery_id",
    "target_type",
    "target_id",
    "scope",
    "limit_kw",
    "status",
    "channel",
    "batch_id",
    "microgrid_id",
    "cycle_id",
    "valid_until",
    "created_at",
    "attempts",
    "claim",
    "last_error",
)


def _insert(rows: list[list[Any]], **shared: Any) -> None:
    """All of a cycle's deliveries in one INSERT ... SELECT over one JSON parameter: the cost
    of a 2,000-charger cycle is one statement, not 30,000 bound parameters."""
    qn = connection.ops.quote_name
    table = qn(Delivery._meta.db_table)
    columns = ", ".join(qn(c) for c in _COLUMNS)
    field = Delivery._meta.get_field
    constants = [
        shared["microgrid_pk"],
        shared["cycle_pk"],
        field("valid_until").get_db_prep_value(shared["valid_until"], connection),
        field("created_at").get_db_prep_value(shared["created_at"], connection),
    ]
    if connection.vendor == "postgresql":
        select = (
            "SELECT r->>0, r->>1, r->>2, NULLIF(r->3, 'null'::jsonb), (r->>4)::float8, r->>5, "
            "r->>6, r->>7, %s, %s, %s, %s, 0, '', '' FROM jsonb_array_elements(%s::jsonb) AS r"
        )
    else:
        select = (
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
            "json_extract(value, '$[2]'), json_extract(value, '$[3]'), "
            "json_extract(value, '$[4]'), json_extract(value, '$[5]'), "
            "json_extract(value, '$[6]'), json_extract(value, '$[7]'), "
            "%s, %s, %s, %s, 0, '', '' FROM json_each(%s)"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) {select}",
            [*constants, json.dumps(rows, separators=(",", ":"))],
        )


def _until(limits, budgets) -> datetime:
    for item in (*limits, *budgets):
        return datetime.fromisoformat(item.valid_until)
    return timezone.now()


def enqueue_send(microgrid_id: str) -> bool:
    """Ask a worker to send; with the broker down the rows wait for the sweep."""
    from dispatch.tasks import deliver

    try:
        deliver.apply_async(args=[microgrid_id], retry=False)
    except Exception as exc:  # kombu/redis connection errors have no common base class
        log.warning(
            "broker unavailable (%s): the deliveries of %s wait for the sweep",
            exc.__class__.__name__,
            microgrid_id,
        )
        return False
    return True


def deliveries_expire(now: datetime, **where: Any) -> int:
    """Mark EXPIRED what can no longer be delivered (PENDING, SENT or FAILED past its
    `valid_until`); `where` narrows it (a microgrid, a channel). Also the OCPP gateway's."""
    return Delivery.objects.filter(
        status__in=(DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.FAILED),
        valid_until__lte=now,
        **where,
    ).update(status=DeliveryStatus.EXPIRED, next_attempt_at=None, claim="")


def deliveries_due(now: datetime, *, lease_s: float | None = None) -> Q:
    """What may be sent now: PENDING; FAILED whose backoff has passed; SENT whose answer did
    not come within the lease (the sender died or the receiver never answered: send again,
    receivers de-duplicate). Only valid ones are ever claimed (`deliveries_claim`)."""
    lease = now - timedelta(seconds=settings.DISPATCH_LEASE_S if lease_s is None else lease_s)
    return (
        Q(status=DeliveryStatus.PENDING)
        | Q(status=DeliveryStatus.FAILED, next_attempt_at__lte=now)
        | Q(status=DeliveryStatus.SENT, claimed_at__lte=lease)
    )


def deliveries_claim(queryset, *, token: str, now: datetime) -> int:
    """Claim the due, valid deliveries of `queryset` with one conditional UPDATE (two
    senders never claim the same row); returns how many."""
    return queryset.filter(valid_until__gt=now).update(
        status=DeliveryStatus.SENT,
        claim=token,
        claimed_at=now,
        attempts=F("attempts") + 1,
        next_attempt_at=None,
    )


def backoff_s(attempts: int) -> float:
    base = settings.DISPATCH_RETRY_BASE_S
    return min(settings.DISPATCH_RETRY_MAX_S, base * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery, read as a tuple (never the cycle row: its document is large)."""

    pk: int
    delivery_id: str
    batch_id: str
    cycle_pk: int
    target_type: str
    target_id: str
    scope: dict[str, Any] | None
    channel: str
    limit_kw: float
    valid_until: datetime
    attempts: int


def deliveries_send(*, microgrid_id: str) -> int:
    """Send whatever of this microgrid is due; returns the number of deliveries sent."""
    microgrid = Microgrid.objects.filter(microgrid_id=microgrid_id).first()
    if microgrid is None:
        return 0
    now = timezone.now()
    token = uuid.uuid4().hex
    with transaction.atomic():
        deliveries_expire(now, microgrid=microgrid)
        claimed = deliveries_claim(
            Delivery.objects.filter(deliveries_due(now), microgrid=microgrid).exclude(
                channel__in=NOT_BY_WORKER
            ),
            token=token,
            now=now,
        )
    if not claimed:
        return 0
    rows = [
        Claimed(*values)
        for values in Delivery.objects.filter(
            microgrid=microgrid, status=DeliveryStatus.SENT, claim=token
        )
        .order_by("target_type", "target_id")
        .values_list(
            "pk",
            "delivery_id",
            "batch_id",
            "cycle_id",
            "target_type",
            "target_id",
            "scope",
            "channel",
            "limit_kw",
            "valid_until",
            "attempts",
        )
    ]
    cycle_ids = dict(
        Cycle.objects.filter(pk__in={r.cycle_pk for r in rows}).values_list("pk", "cycle_id")
    )
    config = DispatchConfig.objects.filter(microgrid=microgrid).first()
    groups: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
    for row in rows:
        groups[(row.channel, row.batch_id)].append(row)
    for (channel, batch_id), members in groups.items():
        _send_batch(
            microgrid, config, channel, batch_id, members, token, cycle_ids[members[0].cycle_pk]
        )
    return len(rows)


def _send_batch(
    microgrid, config, channel: str, batch_id: str, members: list[Claimed], token, cycle_id
) -> None:
    until = members[0].valid_until.isoformat()
    attempt = max(m.attempts for m in members)

    def setpoint(m: Claimed) -> channels.Setpoint:
        return channels.Setpoint(
            m.pk, m.delivery_id, m.target_type, m.target_id, m.scope, m.limit_kw, until
        )

    batch = channels.Batch(
        batch_id=batch_id,
        microgrid_id=microgrid.microgrid_id,
        cycle_id=cycle_id,
        valid_until=until,
        attempt=attempt,
        setpoints=[setpoint(m) for m in members if m.target_type == TargetType.CHARGER],
        budgets=[setpoint(m) for m in members if m.target_type == TargetType.SCOPE],
        config=config,
    )
    started = timezone.now()
    chosen = channels.backend(channel)
    if chosen is None:
        result = channels.SendResult(DeliveryStatus.FAILED, error=f"no {channel} channel here")
    else:
        try:
            result = chosen.send(batch)
        except Exception as exc:  # a channel's bug must not leave rows claimed forever
            log.exception("channel %s failed on batch %s", channel, batch_id)
            result = channels.SendResult(
                DeliveryStatus.FAILED, error=f"{exc.__class__.__name__}: {exc}"[:300]
            )
    deliveries_record(
        microgrid=microgrid,
        cycle_pk=members[0].cycle_pk,
        channel=channel,
        batch_id=batch_id,
        members=members,
        result=result,
        token=token,
        started_at=started,
        attempt=attempt,
    )


def deliveries_record(
    *,
    microgrid: Microgrid,
    cycle_pk: int,
    channel: str,
    batch_id: str,
    members: list[Claimed],
    result: channels.SendResult,
    token: str,
    started_at: datetime,
    attempt: int,
) -> None:
    """Record a channel's answer for a claimed batch, set-based: one UPDATE for the batch's
    status (and one per delivery the channel answered otherwise), one upsert of the accepted
    setpoints. Only rows this claim still holds change (a sweep may have expired them)."""
    now = timezone.now()
    exceptions: dict[str, list[int]] = defaultdict(list)
    for pk, status in result.per_delivery.items():
        if status != result.status:
            exceptions[status].append(pk)
    held = Delivery.objects.filter(
        microgrid=microgrid, status=DeliveryStatus.SENT, claim=token, batch_id=batch_id
    )
    with transaction.atomic():
        for status, pks in exceptions.items():
            held.filter(pk__in=pks).update(**_answer_fields(status, result, now, attempt))
        held.update(**_answer_fields(result.status, result, now, attempt))
        _remember_accepted(microgrid.pk, token, batch_id, now)
        DeliveryAttempt.objects.create(
            batch_id=batch_id,
            microgrid=microgrid,
            cycle_id=cycle_pk,
            channel=channel,
            attempt=attempt,
            targets=len(members),
            started_at=started_at,
            finished_at=now,
            outcome=result.status,
            http_status=result.http_status,
            error=result.error[:300],
        )


def _answer_fields(status: str, result, now: datetime, attempt: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": status,
        "answered_at": now,
        "last_error": "" if status == DeliveryStatus.ACCEPTED else result.error[:300],
    }
    if status == DeliveryStatus.FAILED:
        fields["next_attempt_at"] = now + timedelta(seconds=backoff_s(attempt))
    return fields


def _remember_accepted(microgrid_pk: int, token: str, batch_id: str, now: datetime) -> None:
    """Upsert the batch's accepted charger setpoints into LastAccepted, in the database."""
    qn = connection.ops.quote_name
    la, dl = qn(LastAccepted._meta.db_table), qn(Delivery._meta.db_table)
    at = LastAccepted._meta.get_field("accepted_at").get_db_prep_value(now, connection)
    # "WHERE true" lets SQLite tell the upsert's ON CONFLICT from a join constraint.
    sql = (
        f"INSERT INTO {la} (microgrid_id, target_type, target_id, limit_kw, valid_until, "
        f"delivery_id, accepted_at) "
        f"SELECT microgrid_id, target_type, target_id, limit_kw, valid_until, delivery_id, %s "
        f"FROM {dl} WHERE microgrid_id = %s AND claim = %s AND batch_id = %s "
        f"AND status = %s AND target_type = %s AND true "
        f"ON CONFLICT (microgrid_id, target_type, target_id) DO UPDATE SET "
        f"limit_kw = excluded.limit_kw, valid_until = excluded.valid_until, "
        f"delivery_id = excluded.delivery_id, accepted_at = excluded.accepted_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [at, microgrid_pk, token, batch_id, DeliveryStatus.ACCEPTED, TargetType.CHARGER],
        )


def deliveries_sweep() -> list[str]:
    """Expire what can no longer be delivered; ask for a send wherever something is due.
    Returns the microgrid ids it asked for."""
    now = timezone.now()
    with transaction.atomic():
        deliveries_expire(now)
    due = sorted(
        set(
            Delivery.objects.filter(deliveries_due(now), valid_until__gt=now)
            .exclude(channel__in=NOT_BY_WORKER)
            .values_list("microgrid__microgrid_id", flat=True)
            .distinct()
        )
    )
    for microgrid_id in due:
        enqueue_send(microgrid_id)
    return due
