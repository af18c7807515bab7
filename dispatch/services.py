"""Writes of the dispatch app: channel settings, the outbox, sending and its sweep.

- `deliveries_write` runs inside the cycle's transaction (the `cycle_stored`
  signal): one packed `DeliveryBatch` row for the webhook or simulator (every
  target in it, sent or only renewed, compared with the one `ReceiverState` row
  of what the receiver holds), one `Delivery` row per OCPP charger (set-based),
  and the send is asked for on commit.
- `deliveries_send(microgrid_id=...)` is what the Celery task runs: it expires
  what can no longer be delivered, claims what is due with one conditional
  UPDATE (so two workers never send the same batch), sends each batch through its
  channel and records the answer (one UPDATE, the receiver's state, the attempt).
- `deliveries_sweep()` is the beat's safety net: it expires, and asks for a send
  wherever something is due (a retry's backoff has passed, the broker was down
  when the cycle committed, a worker died holding a claim).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from balancing.dispatch import ChargingLimit, ScopeBudget
from balancing.models import Cycle
from dispatch import channels
from dispatch.choices import (
    BATCHED,
    NOT_BY_WORKER,
    SUPERSEDABLE,
    Channel,
    DeliveryStatus,
    TargetType,
)
from dispatch.models import (
    DEFAULT_DEADBAND_KW,
    DEFAULT_REFRESH_S,
    Delivery,
    DeliveryAttempt,
    DeliveryBatch,
    DispatchConfig,
    LastAccepted,
    ReceiverState,
)
from dispatch.packing import pack_columns, pack_held, unpack_held, unpack_targets
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
    """Write the cycle's deliveries (in the caller's transaction): one packed `DeliveryBatch`
    for the microgrid's pushed channel (webhook, simulator), one `Delivery` per OCPP charger,
    nothing for pulled setpoints (the cycle is their outbox). Returns how many setpoints and
    budgets are to be sent."""
    now = cycle.completed_at  # the cycle's clock (the simulator's, a benchmark's)
    found = _config(microgrid=cycle.microgrid_id)
    config = found[0] if found else None
    channel = channels.resolve_channel(cycle.microgrid, config)
    # Chargers a channel of their own serves (OCPP stations) go there; the rest follow the
    # microgrid's channel.
    per_charger = channels.charger_channels(cycle.microgrid)
    valid_until = _until(limits, budgets)
    sending = _write_per_charger(cycle, limits, per_charger, config, now, valid_until)
    if channel != Channel.PULL:
        own = [lim for lim in limits if lim.asset_id not in per_charger] if per_charger else limits
        sending += _write_batch(cycle, channel, config, own, budgets, now, valid_until)
    return sending


def _write_per_charger(cycle, limits, per_charger, config, now, valid_until) -> int:
    """One `Delivery` per charger a channel of its own serves (OCPP: each station answers for
    its EVSE), set-based: one read of the last accepted setpoints, one UPDATE that supersedes
    the unsent older ones, one INSERT. These chargers have no renewal: each one is sent again
    within `refresh_s` of its last accepted setpoint's expiry."""
    if not per_charger:
        return 0
    microgrid_pk = cycle.microgrid_id
    # Whatever an older cycle left unsent is replaced by this one's.
    Delivery.objects.filter(microgrid_id=microgrid_pk, status__in=SUPERSEDABLE).update(
        status=DeliveryStatus.SUPERSEDED, next_attempt_at=None
    )
    pulled = Channel.PULL.value
    mine = [limit for limit in limits if per_charger.get(limit.asset_id, pulled) != pulled]
    if not mine:
        return 0
    deadband = config.deadband_kw if config else DEFAULT_DEADBAND_KW
    refresh = timedelta(seconds=config.refresh_s if config else DEFAULT_REFRESH_S)
    accepted = {
        target_id: (limit_kw, until)
        for target_id, limit_kw, until in LastAccepted.objects.filter(
            microgrid_id=microgrid_pk, target_type=TargetType.CHARGER, valid_until__gt=now
        ).values_list("target_id", "limit_kw", "valid_until")
    }
    cycle_id = cycle.cycle_id
    rows: list[list[Any]] = []
    batch_ids: dict[str, str] = {}
    for limit in mine:
        target_channel = per_charger[limit.asset_id]
        if target_channel not in batch_ids:
            batch_ids[target_channel] = batch_id_of(cycle_id, target_channel)
        status = DeliveryStatus.PENDING
        last = accepted.get(limit.asset_id)
        if (
            last is not None
            and abs(last[0] - limit.limit_kw) <= deadband + 1e-9
            and last[1] - now > refresh
        ):
            status = DeliveryStatus.UNCHANGED
        rows.append(
            [
                _stable("delivery", cycle_id, TargetType.CHARGER, limit.asset_id),
                TargetType.CHARGER.value,
                limit.asset_id,
                None,
                limit.limit_kw,
                status.value,
                target_channel,
                batch_ids[target_channel],
            ]
        )
    _insert(
        rows,
        microgrid_pk=microgrid_pk,
        cycle_pk=cycle.pk,
        valid_until=valid_until,
        created_at=now,
    )
    return sum(1 for r in rows if r[5] != DeliveryStatus.UNCHANGED)


def _write_batch(cycle, channel, config, limits, budgets, now, valid_until) -> int:
    """The cycle's one packed `DeliveryBatch` on a pushed channel (spec 4.7): every charger's
    setpoint with whether it is sent or only renewed, and the scope budgets. A charger is
    UNCHANGED (renewed, not sent) when the receiver holds a still valid setpoint for it within
    `deadband_kw` of the new one. The message is full (every setpoint; the receiver drops any
    other it holds) when what the receiver holds is not known well enough for a difference:
    nothing held and valid, another endpoint, a message whose outcome is unknown, or a held
    charger that this cycle no longer gives a setpoint.

    Three statements whatever the charger count, each written in SQL once per process
    (docs/performance.md: building them with the ORM cost more than the database's work):
    supersede, read the receiver's state, insert."""
    microgrid_pk = cycle.microgrid_id
    sql = _batch_sql()
    lease = now - timedelta(seconds=settings.DISPATCH_LEASE_S)
    with connection.cursor() as cursor:
        # Whatever an older cycle left unsent is replaced by this one's, and so is one whose
        # sender died (its lease passed): a newer message renews what an older one would.
        cursor.execute(sql.supersede, [microgrid_pk, _db_time(lease)])
        # What the receiver holds, and whether a message sent since the last one it accepted
        # has an unknown outcome (in flight, FAILED, expired or superseded after a send: the
        # receiver may have applied it, so what it holds is not known), in one statement.
        cursor.execute(sql.state, [microgrid_pk, channel])
        state = cursor.fetchone()
    limits = sorted(limits, key=attrgetter("asset_id"))
    ids = [limit.asset_id for limit in limits]
    kw = [limit.limit_kw for limit in limits]
    held: dict[str, float] = {}
    full = True
    if (
        state is not None
        and state[0] == channels.endpoint(channel, config)
        and state[2] is not None
        and _from_db_time(state[2]) > now
        and not state[3]
    ):
        held = unpack_held(state[1])
        given = set(ids)
        full = any(asset_id not in given for asset_id in held)
    if not limits and not budgets and not (state is not None and state[1] not in ("", "{}")):
        return 0  # nothing to send, nothing held to drop
    if full:
        send = "1" * len(ids)
    else:
        deadband = (config.deadband_kw if config else DEFAULT_DEADBAND_KW) + 1e-9
        send = "".join(
            "1" if last is None or abs(last - value) > deadband else "0"
            for last, value in zip(map(held.get, ids), kw, strict=True)
        )
    sent = send.count("1")
    scoped = [[budget.scope or {"type": "MICROGRID"}, budget.budget_kw] for budget in budgets]
    with connection.cursor() as cursor:
        cursor.execute(
            sql.insert,
            [
                batch_id_of(cycle.cycle_id, channel),
                microgrid_pk,
                cycle.pk,
                cycle.seq,
                channel,
                pack_columns(ids, kw, send, scoped),
                full,
                sent,
                len(ids) - sent,
                _db_time(valid_until),
                DeliveryStatus.PENDING.value,
                _db_time(now),
            ],
        )
    if channel not in NOT_BY_WORKER:
        microgrid_id = cycle.microgrid.microgrid_id
        transaction.on_commit(lambda: enqueue_send(microgrid_id))
    return sent + len(scoped)


@dataclass(frozen=True)
class _BatchSql:
    supersede: str
    state: str
    insert: str


@functools.cache
def _batch_sql() -> _BatchSql:
    """The outbox's statements for a pushed channel, in portable SQL (PostgreSQL, SQLite).

    The supersede names the open statuses in its condition, so it reads the microgrid's
    open batches through the (microgrid, status) index, never its whole history. The state
    is one row by its unique key; its EXISTS reads the batches after the last accepted seq
    through (microgrid, seq). It is one statement so that the state and the batches are
    read in one snapshot: a batch accepted after the state was read would otherwise look
    settled while the state read predates it."""
    qn = connection.ops.quote_name
    batch, state = qn(DeliveryBatch._meta.db_table), qn(ReceiverState._meta.db_table)

    def literal(*statuses) -> str:
        return ", ".join(f"'{DeliveryStatus(s).value}'" for s in statuses)

    columns = (
        "batch_id",
        "microgrid_id",
        "cycle_id",
        "seq",
        "channel",
        "targets",
        "full",
        "sent_count",
        "unchanged_count",
        "valid_until",
        "status",
        "created_at",
        "attempts",
        "claim",
        "last_error",
    )
    return _BatchSql(
        supersede=(
            f"UPDATE {batch} SET status = '{DeliveryStatus.SUPERSEDED.value}', "
            f"next_attempt_at = NULL, claim = '' "
            f"WHERE microgrid_id = %s AND status IN ({literal(*SUPERSEDABLE, DeliveryStatus.SENT)}) "
            f"AND (status <> '{DeliveryStatus.SENT.value}' OR claimed_at <= %s)"
        ),
        state=(
            f"SELECT s.endpoint, s.held, s.valid_until, EXISTS (SELECT 1 FROM {batch} b "
            f"WHERE b.microgrid_id = s.microgrid_id AND b.channel = s.channel "
            f"AND b.seq > s.seq AND b.attempts > 0 "
            f"AND b.status NOT IN ({literal(DeliveryStatus.ACCEPTED, DeliveryStatus.REJECTED)})) "
            f"FROM {state} s WHERE s.microgrid_id = %s AND s.channel = %s"
        ),
        insert=(
            f"INSERT INTO {batch} ({', '.join(qn(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * (len(columns) - 3))}, 0, '', '')"
        ),
    )


_TIME_FIELD = DeliveryBatch._meta.get_field("valid_until")


def _db_time(value: datetime) -> Any:
    return _TIME_FIELD.get_db_prep_value(value, connection)


def _from_db_time(value: Any) -> datetime:
    """A datetime column read by raw SQL: aware already on PostgreSQL, text on SQLite."""
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


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
    """All of a cycle's OCPP deliveries in one INSERT ... SELECT over one JSON parameter: the
    cost of a 2,000-charger cycle is one statement, not 30,000 bound parameters."""
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


def _expire(queryset, now: datetime) -> int:
    return queryset.filter(
        status__in=(DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.FAILED),
        valid_until__lte=now,
    ).update(status=DeliveryStatus.EXPIRED, next_attempt_at=None, claim="")


def deliveries_expire(now: datetime, **where: Any) -> int:
    """Mark EXPIRED what can no longer be delivered (PENDING, SENT or FAILED past its
    `valid_until`); `where` narrows it (a microgrid, a channel). Per-charger deliveries (the
    OCPP gateway's) and, unless a channel of theirs is excluded, batches."""
    n = _expire(Delivery.objects.filter(**where), now)
    if where.get("channel") in (None, *BATCHED):
        n += _expire(DeliveryBatch.objects.filter(**where), now)
    return n


def deliveries_due(now: datetime, *, lease_s: float | None = None) -> Q:
    """What may be sent now: PENDING; FAILED whose backoff has passed; SENT whose answer did
    not come within the lease (the sender died or the receiver never answered: send again,
    receivers de-duplicate). Only valid ones are ever claimed (`deliveries_claim`). For
    `Delivery` and `DeliveryBatch` alike."""
    lease = now - timedelta(seconds=settings.DISPATCH_LEASE_S if lease_s is None else lease_s)
    return (
        Q(status=DeliveryStatus.PENDING)
        | Q(status=DeliveryStatus.FAILED, next_attempt_at__lte=now)
        | Q(status=DeliveryStatus.SENT, claimed_at__lte=lease)
    )


def deliveries_claim(queryset, *, token: str, now: datetime) -> int:
    """Claim the due, valid deliveries (or batches) of `queryset` with one conditional UPDATE
    (two senders never claim the same row); returns how many."""
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
    """A claimed batch, read as a tuple (never the cycle row: its document is large)."""

    pk: int
    batch_id: str
    cycle_pk: int
    seq: int
    channel: str
    targets: str  # packed (dispatch.packing)
    full: bool
    valid_until: datetime
    attempts: int


def deliveries_send(*, microgrid_id: str, _again: bool = True) -> int:
    """Send whatever of this microgrid is due (its batches: the OCPP gateways send the
    per-charger deliveries); returns the number of setpoints and budgets sent."""
    microgrid = Microgrid.objects.filter(microgrid_id=microgrid_id).first()
    if microgrid is None:
        return 0
    now = timezone.now()
    token = uuid.uuid4().hex
    with transaction.atomic():
        deliveries_expire(now, microgrid=microgrid)
        claimed = deliveries_claim(
            DeliveryBatch.objects.filter(deliveries_due(now), microgrid=microgrid),
            token=token,
            now=now,
        )
    if not claimed:
        return 0
    batches = [
        Claimed(*values)
        for values in DeliveryBatch.objects.filter(
            microgrid=microgrid, status=DeliveryStatus.SENT, claim=token
        )
        .order_by("seq")
        .values_list(
            "pk",
            "batch_id",
            "cycle_id",
            "seq",
            "channel",
            "targets",
            "full",
            "valid_until",
            "attempts",
        )
    ]
    cycle_ids = dict(
        Cycle.objects.filter(pk__in={b.cycle_pk for b in batches}).values_list("pk", "cycle_id")
    )
    config = DispatchConfig.objects.filter(microgrid=microgrid).first()
    sent, resync = 0, False
    for claimed_batch in batches:
        count, conflict = _send_batch(
            microgrid, config, claimed_batch, token, cycle_ids[claimed_batch.cycle_pk]
        )
        sent += count
        resync = resync or conflict
    if resync and _again:
        # The receiver said it holds nothing to renew (409): the batch is due again, full.
        sent += deliveries_send(microgrid_id=microgrid_id, _again=False)
    return sent


def _send_batch(microgrid, config, claimed: Claimed, token: str, cycle_id: str):
    """Send one claimed batch; returns (setpoints and budgets sent, whether the receiver asked
    for the full set)."""
    until = claimed.valid_until.isoformat()
    chargers, budgets = unpack_targets(claimed.targets)
    setpoints = [
        channels.Setpoint(TargetType.CHARGER, asset_id, None, limit_kw, until)
        for asset_id, limit_kw, send in chargers
        if send or claimed.full
    ]
    batch = channels.Batch(
        batch_id=claimed.batch_id,
        microgrid_id=microgrid.microgrid_id,
        cycle_id=cycle_id,
        seq=claimed.seq,
        valid_until=until,
        attempt=claimed.attempts,
        full=claimed.full,
        renewed=len(chargers) - len(setpoints),
        setpoints=setpoints,
        budgets=[
            channels.Setpoint(
                TargetType.SCOPE, scope.get("node_id") or "MICROGRID", scope, kw, until
            )
            for scope, kw in budgets
        ],
        config=config,
    )
    started = timezone.now()
    chosen = channels.backend(claimed.channel)
    if chosen is None:
        result = channels.SendResult(
            DeliveryStatus.FAILED, error=f"no {claimed.channel} channel here"
        )
    else:
        try:
            result = chosen.send(batch)
        except Exception as exc:  # a channel's bug must not leave rows claimed forever
            log.exception("channel %s failed on batch %s", claimed.channel, claimed.batch_id)
            result = channels.SendResult(
                DeliveryStatus.FAILED, error=f"{exc.__class__.__name__}: {exc}"[:300]
            )
    conflict = batch_record(
        microgrid=microgrid,
        claimed=claimed,
        batch=batch,
        result=result,
        token=token,
        started_at=started,
        endpoint=channels.endpoint(claimed.channel, config),
    )
    return len(batch.setpoints) + len(batch.budgets), conflict


def batch_record(
    *,
    microgrid: Microgrid,
    claimed: Claimed,
    batch: channels.Batch,
    result: channels.SendResult,
    token: str,
    started_at: datetime,
    endpoint: str,
) -> bool:
    """Record a channel's answer for a claimed batch: one UPDATE of the batch (only while this
    claim still holds it: a sweep may have expired it), the receiver's state when accepted,
    and the attempt. A 409 to a difference means the receiver holds nothing to renew: the
    batch becomes full and due at once, and what it held is forgotten. Returns whether so."""
    now = timezone.now()
    held = DeliveryBatch.objects.filter(pk=claimed.pk, status=DeliveryStatus.SENT, claim=token)
    conflict = result.http_status == 409 and not claimed.full
    with transaction.atomic():
        if conflict:
            outcome = DeliveryStatus.FAILED
            error = "HTTP 409: the receiver holds nothing to renew; sent again in full"
            changed = held.update(
                status=outcome,
                full=True,
                sent_count=F("sent_count") + F("unchanged_count"),
                unchanged_count=0,
                next_attempt_at=now,
                answered_at=now,
                last_error=error,
            )
            if changed:
                receiver_states_forget(
                    ReceiverState.objects.filter(microgrid=microgrid, channel=claimed.channel), now
                )
        else:
            outcome, error = result.status, result.error
            changed = held.update(**_answer_fields(outcome, result, now, claimed.attempts))
            if changed and outcome == DeliveryStatus.ACCEPTED:
                _remember_held(microgrid, claimed, batch, endpoint, now)
        DeliveryAttempt.objects.create(
            batch_id=claimed.batch_id,
            microgrid=microgrid,
            cycle_id=claimed.cycle_pk,
            channel=claimed.channel,
            attempt=claimed.attempts,
            targets=len(batch.setpoints) + len(batch.budgets),
            started_at=started_at,
            finished_at=now,
            outcome=outcome,
            http_status=result.http_status,
            error=error[:300],
        )
    return conflict and bool(changed)


def receiver_states_forget(states, now: datetime) -> int:
    """Forget what these receivers hold (a 409, or a message of unknown outcome pruned): the
    next message to each is full and renews nothing (spec 4.7)."""
    return states.update(held="{}", valid_until=None, updated_at=now)


def _remember_held(microgrid, claimed: Claimed, batch: channels.Batch, endpoint: str, now):
    """What the receiver holds after accepting `batch` (spec 4.7, Renewal): a full message
    replaces it, a difference sets its setpoints, and every held one takes its expiry. One
    row per microgrid and channel, read and written once; an older message answered after a
    newer one changes nothing (receivers apply newer ones only)."""
    rows = ReceiverState.objects.select_for_update().filter(
        microgrid=microgrid, channel=claimed.channel
    )
    state = rows.first()
    if state is None:  # the first accepted message: two answering at once create one row
        ReceiverState.objects.bulk_create(
            [ReceiverState(microgrid=microgrid, channel=claimed.channel, updated_at=now)],
            ignore_conflicts=True,
        )
        state = rows.first()
    if state.seq > claimed.seq:
        return
    fields: dict[str, Any] = {
        "endpoint": endpoint,
        "valid_until": claimed.valid_until,
        "seq": claimed.seq,
        "batch_id": claimed.batch_id,
        "updated_at": now,
    }
    keep = (
        not claimed.full
        and state.endpoint == endpoint
        and state.valid_until is not None
        and state.valid_until > now
    )
    if not keep or batch.setpoints:  # a renewal alone leaves what is held as it is
        held = unpack_held(state.held) if keep else {}
        for s in batch.setpoints:
            held[s.target_id] = s.limit_kw
        fields["held"] = pack_held(held)
    ReceiverState.objects.filter(pk=state.pk).update(**fields)


def deliveries_record(
    *,
    microgrid: Microgrid,
    cycle_pk: int,
    channel: str,
    batch_id: str,
    members: list[Any],
    result: channels.SendResult,
    token: str,
    started_at: datetime,
    attempt: int,
) -> None:
    """Record the answers for claimed per-charger deliveries (the OCPP gateway's), set-based:
    one UPDATE for the batch's status (and one per delivery answered otherwise), one upsert
    of the accepted setpoints. Only rows this claim still holds change."""
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
    """Expire what can no longer be delivered; ask for a send wherever a batch is due.
    Returns the microgrid ids it asked for."""
    now = timezone.now()
    with transaction.atomic():
        deliveries_expire(now)
    due = sorted(
        set(
            DeliveryBatch.objects.filter(deliveries_due(now), valid_until__gt=now)
            .values_list("microgrid__microgrid_id", flat=True)
            .distinct()
        )
    )
    for microgrid_id in due:
        enqueue_send(microgrid_id)
    return due
