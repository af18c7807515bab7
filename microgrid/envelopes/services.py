"""Writes of the envelopes app: OSCP messages, withdrawals, transitions, peers and bindings.

Every service is one transaction and changes nothing when it refuses. After a
change that alters which envelopes are enforced now, the interim legacy
values are reconciled in the same transaction and, after the commit, a cycle
is asked for (`ENVELOPE_CHANGE`), so a new limit holds within seconds rather
than at the next scheduled cycle. Services take the clock (`now`) from their
caller; tests and the simulator pass their own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_id
from microgrid.common.history import record_history
from microgrid.common.models import hash_token
from microgrid.envelopes import oscp
from microgrid.envelopes.choices import (
    DIRECTION_OF,
    Direction,
    EnvelopeState,
    EnvelopeStatus,
    ForecastType,
    MessageType,
    ModeCause,
    PeerMode,
    ScopeType,
    TransitionKind,
)
from microgrid.envelopes.interim import legacy_capacity_reconcile
from microgrid.envelopes.models import (
    EnvelopeTransition,
    OperatingEnvelope,
    OscpGroupBinding,
    OscpMessage,
    OscpPeer,
    PeerModeChange,
)
from microgrid.envelopes.selectors import (
    enforced_ids,
    envelope_status,
    next_number,
)
from microgrid.topology.models import Microgrid, MicrogridNode
from microgrid.topology.services import lock_microgrid

log = logging.getLogger(__name__)

# The beat task looks back at most this far for transitions it has not recorded.
MAX_CATCH_UP = timedelta(days=1)
MIN_TOKEN_LENGTH = 16


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


def _lock_microgrid(microgrid_pk: int) -> Microgrid:
    return lock_microgrid(Microgrid(pk=microgrid_pk))


def _ask_for_cycle(microgrid: Microgrid, envelope_ids: set[str], scopes: list[dict]) -> None:
    """After the commit: one ENVELOPE_CHANGE cycle (a failing broker is logged; the
    scheduled cycle still picks the change up)."""
    from balancing.services import trigger_of
    from balancing.tasks import enqueue_cycle

    distinct = {json.dumps(s, sort_keys=True) for s in scopes}
    scope = scopes[0] if len(distinct) == 1 else None
    trigger = trigger_of("ENVELOPE_CHANGE", envelope_ids=sorted(envelope_ids))
    microgrid_id = microgrid.microgrid_id
    transaction.on_commit(lambda: enqueue_cycle(microgrid_id, trigger, scope), robust=True)


def _settle(microgrid: Microgrid, before: set[str], now: datetime) -> set[str]:
    """Reconcile the legacy values; ask for a cycle if the enforced set changed. Returns
    the envelope ids that started or stopped being enforced."""
    legacy_capacity_reconcile(microgrid=microgrid, now=now)
    after = enforced_ids(microgrid, now)
    changed = before ^ after
    if changed:
        scopes = [
            e.scope_dict()
            for e in OperatingEnvelope.objects.filter(microgrid=microgrid, envelope_id__in=changed)
        ]
        _ask_for_cycle(microgrid, changed, scopes)
    return changed


# -- peer authentication ------------------------------------------------------------------------


def oscp_peer_authenticate(authorization: str | None) -> OscpPeer:
    """`Authorization: Token <peer token>`, looked up by its hash among active peers only."""
    parts = (authorization or "").split()
    if len(parts) != 2 or parts[0].lower() != "token":
        raise DomainError(
            "NOT_AUTHENTICATED", "OSCP requests need 'Authorization: Token <token>'", status=401
        )
    peer = OscpPeer.objects.filter(token_hash=hash_token(parts[1]), active=True).first()
    if peer is None:
        raise DomainError("NOT_AUTHENTICATED", "Invalid or inactive OSCP peer token", status=401)
    return peer


# -- OSCP messages ------------------------------------------------------------------------------


@dataclass
class Receipt:
    message: OscpMessage | None
    replay: bool  # the same peer + X-Request-ID was accepted before: nothing changed
    envelopes: list[OperatingEnvelope]
    superseded: list[str]
    changed: set[str]  # envelope ids that started or stopped being enforced


def oscp_message_receive(
    *,
    peer: OscpPeer,
    message_type: str,
    request_id: Any,
    correlation_id: Any = None,
    body: bytes | str,
    now: datetime | None = None,
) -> Receipt:
    """Accept one OSCP message from an authenticated peer, or refuse it changing nothing.

    A message whose X-Request-ID this peer already sent is answered as the first was
    (accepted) and changes nothing, whatever its body. Refused messages are not stored:
    sent again, they are judged again.
    """
    now = now or timezone.now()
    request_id, correlation_id = oscp.check_headers(request_id, correlation_id)
    if OscpMessage.objects.filter(peer=peer, request_id=request_id).exists():
        return Receipt(None, True, [], [], set())
    raw = _text(body)
    data = _json(raw)
    if message_type == MessageType.UPDATE_GROUP_CAPACITY_FORECAST:
        return _receive_forecast(peer, request_id, correlation_id, raw, data, now)
    if message_type == MessageType.HEARTBEAT:
        return _receive_heartbeat(peer, request_id, correlation_id, raw, data, now)
    if message_type == MessageType.HANDSHAKE:
        return _receive_handshake(peer, request_id, correlation_id, raw, data, now)
    raise ValueError(message_type)


def _text(body: bytes | str) -> str:
    """The body as text: JSON on the wire is UTF-8 (RFC 8259)."""
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise DomainError("MALFORMED_REQUEST", "The body is not UTF-8 text", status=400) from None


def _json(raw: str) -> Any:
    from microgrid.common.api import parse_json_bytes

    try:
        return parse_json_bytes(raw.encode("utf-8"))
    except RecursionError:
        raise DomainError(
            "MALFORMED_REQUEST", "The body is nested too deeply to be a message", status=400
        ) from None


def _begin(peer: OscpPeer, request_id: str) -> OscpPeer | None:
    """Inside the transaction: the locked peer, or None when the message is a replay."""
    locked = OscpPeer.objects.select_for_update().get(pk=peer.pk)
    if OscpMessage.objects.filter(peer=locked, request_id=request_id).exists():
        return None  # the same message, accepted meanwhile by a concurrent request
    return locked


def _binding(peer: OscpPeer, group_id: str) -> OscpGroupBinding:
    binding = (
        OscpGroupBinding.objects.select_related("microgrid", "node")
        .filter(peer=peer, group_id=group_id)
        .first()
    )
    if binding is None:
        raise DomainError(
            "OSCP_GROUP_NOT_FOUND",
            f"OSCP group {group_id!r} is not bound to any scope for peer {peer.name!r}",
            {"group_id": group_id, "peer": peer.name},
            status=404,
        )
    return binding


def _conversion_node(binding: OscpGroupBinding) -> MicrogridNode | None:
    if binding.scope_type == ScopeType.NODE:
        return binding.node
    return MicrogridNode.objects.filter(
        microgrid=binding.microgrid, parent__isnull=True, kind="GRID_CONNECTION"
    ).first()


def _convert(
    forecast: oscp.Forecast, binding: OscpGroupBinding
) -> list[tuple[oscp.Block, float, MicrogridNode | None]]:
    node = None
    if any(b.unit == "A" for b in forecast.blocks):
        node = _conversion_node(binding)
    errors: list[ErrorItem] = []
    out = []
    for block in forecast.blocks:
        if block.unit == "A" and node is None:
            errors.append(
                ErrorItem(
                    "FIELD_INVALID",
                    f"forecasted_blocks[{block.index}].unit A cannot be converted: microgrid "
                    f"{binding.microgrid.microgrid_id!r} has no root Microgrid Node",
                    field=f"forecasted_blocks[{block.index}].unit",
                )
            )
            continue
        used = node if block.unit == "A" else None
        kw = oscp.capacity_kw(
            block,
            voltage_v=used.voltage_v if used else None,
            phases=used.phases if used else None,
        )
        problem = oscp.check_capacity(block, kw)
        if problem:
            errors.append(problem)
        out.append((block, kw, used))
    if errors:
        raise oscp.invalid(errors)
    return out


def _receive_forecast(peer, request_id, correlation_id, raw, data, now) -> Receipt:
    forecast = oscp.parse_forecast(data)
    binding = _binding(peer, forecast.group_id)
    converted = _convert(forecast, binding)
    with transaction.atomic():
        locked = _begin(peer, request_id)
        if locked is None:
            return Receipt(None, True, [], [], set())
        microgrid = _lock_microgrid(binding.microgrid_id)
        before = enforced_ids(microgrid, now)
        message = OscpMessage.objects.create(
            peer=locked,
            message_type=MessageType.UPDATE_GROUP_CAPACITY_FORECAST,
            request_id=request_id,
            correlation_id=correlation_id,
            microgrid=microgrid,
            group_id=forecast.group_id,
            body=raw,
            received_at=now,
        )
        number = next_number(microgrid)
        node_id = binding.node.node_id if binding.scope_type == ScopeType.NODE else ""
        created = []
        for offset, (block, kw, used) in enumerate(
            sorted(converted, key=lambda item: (item[0].start, item[0].index))
        ):
            created.append(
                OperatingEnvelope(
                    microgrid=microgrid,
                    number=number + offset,
                    envelope_id=f"OE-{number + offset}",
                    scope_type=binding.scope_type,
                    node_id=node_id,
                    direction=DIRECTION_OF[forecast.forecast_type],
                    forecast_type=forecast.forecast_type,
                    capacity=block.capacity,
                    unit=block.unit,
                    phase=block.phase,
                    capacity_kw=kw,
                    voltage_v=used.voltage_v if used else None,
                    phases=used.phases if used else None,
                    valid_from=block.start,
                    valid_until=block.end,
                    peer=locked,
                    group_id=forecast.group_id,
                    message=message,
                    block_index=block.index,
                    received_at=now,
                )
            )
        # Supersede first: the new rows are not candidates of their own message.
        superseded = _supersede(microgrid, locked, forecast, created, now)
        parts = _remainders(superseded, created, number + len(created), now)
        OperatingEnvelope.objects.bulk_create(created + parts)
        record_history(
            OperatingEnvelope.objects.filter(microgrid=microgrid, number__gte=number),
            history_type="+",
            date=now,
        )
        _link_superseded(superseded, message, now)
        created = list(
            OperatingEnvelope.objects.filter(message=message).order_by("number")
        )  # with their primary keys on every database
        changed = _settle(microgrid, before, now)
    return Receipt(message, False, created, [e.envelope_id for e in superseded], changed)


def _supersede(microgrid, peer, forecast, created, now) -> list[OperatingEnvelope]:
    """Not-yet-expired envelopes of this group and type whose window overlaps a new block,
    locked, in number order."""
    start = min(e.valid_from for e in created)
    end = max(e.valid_until for e in created)
    candidates = OperatingEnvelope.objects.select_for_update().filter(
        microgrid=microgrid,
        peer=peer,
        group_id=forecast.group_id,
        forecast_type=forecast.forecast_type,
        state=EnvelopeState.RECEIVED,
        valid_until__gt=max(now, start),
        valid_from__lt=end,
    )
    windows = [(new.valid_from, new.valid_until) for new in created]
    return [
        old
        for old in candidates.order_by("number")
        if any(frm < old.valid_until and old.valid_from < until for frm, until in windows)
    ]


def uncovered(
    start: datetime, end: datetime, covered: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) that no window of `covered` covers, in time order."""
    out = []
    cursor = start
    for frm, until in sorted(covered):
        if until <= cursor or frm >= end:
            continue
        if frm > cursor:
            out.append((cursor, frm))
        cursor = max(cursor, until)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return out


SPLIT_FIELDS = (
    "microgrid_id",
    "scope_type",
    "node_id",
    "direction",
    "forecast_type",
    "capacity",
    "unit",
    "phase",
    "capacity_kw",
    "voltage_v",
    "phases",
    "peer_id",
    "group_id",
    "message_id",
    "block_index",
)


def _remainders(superseded, created, first_number: int, now) -> list[OperatingEnvelope]:
    """For each superseded envelope, the parts of its window outside the new blocks: new
    envelopes with the same cap, message and block, numbered after the new blocks, each
    linked to its origin (`split_from`). A revision never lifts a cap it did not mention."""
    windows = [(new.valid_from, new.valid_until) for new in created]
    parts = []
    for old in superseded:
        mine = [w for w in windows if w[0] < old.valid_until and old.valid_from < w[1]]
        for frm, until in uncovered(old.valid_from, old.valid_until, mine):
            n = first_number + len(parts)
            part = OperatingEnvelope(
                number=n,
                envelope_id=f"OE-{n}",
                valid_from=frm,
                valid_until=until,
                received_at=now,
                split_from=old,
                **{field: getattr(old, field) for field in SPLIT_FIELDS},
            )
            parts.append(part)
    return parts


def _link_superseded(superseded, message, now) -> None:
    """Mark the superseded envelopes, each pointing at the first new envelope of `message` that
    overlaps it: one UPDATE and one history INSERT for the whole forecast (a revised day
    supersedes 96 envelopes)."""
    if not superseded:
        return
    first_overlap = (
        OperatingEnvelope.objects.filter(
            message=message,
            valid_from__lt=OuterRef("valid_until"),
            valid_until__gt=OuterRef("valid_from"),
        )
        .order_by("number")
        .values("pk")[:1]
    )
    rows = OperatingEnvelope.objects.filter(pk__in=[old.pk for old in superseded])
    rows.update(
        state=EnvelopeState.SUPERSEDED, superseded_at=now, superseded_by=Subquery(first_overlap)
    )
    record_history(rows, history_type="~", date=now)


def _bound_microgrids(peer: OscpPeer) -> list[Microgrid]:
    ids = OscpGroupBinding.objects.filter(peer=peer).values_list("microgrid_id", flat=True)
    return list(Microgrid.objects.filter(pk__in=set(ids)).order_by("pk"))


def _mode_change(peer: OscpPeer, mode: str, cause: str, at: datetime, now: datetime) -> None:
    PeerModeChange.objects.get_or_create(
        peer=peer, mode=mode, at=at, defaults={"cause": cause, "recorded_at": now}
    )


def _switch_mode(locked: OscpPeer, apply, cause: str, now: datetime) -> set[str]:
    """Run `apply()` (which changes the peer's offline_mode_at) and settle every microgrid
    the peer's groups are bound to if the peer switched between online and offline."""
    old_offline_at = locked.offline_mode_at
    was_offline = locked.offline_at(now)
    microgrids = _bound_microgrids(locked)
    before = {m.pk: enforced_ids(m, now) for m in microgrids}
    apply()
    is_offline = locked.offline_at(now)
    if was_offline:
        # Seen offline before the beat task noticed: record it all the same.
        _mode_change(locked, PeerMode.OFFLINE, ModeCause.HEARTBEAT_LAPSED, old_offline_at, now)
    if is_offline:
        # A heartbeat whose offline_mode_at has already passed: offline at once.
        _mode_change(locked, PeerMode.OFFLINE, cause, locked.offline_mode_at, now)
    elif was_offline:
        _mode_change(locked, PeerMode.ONLINE, cause, now, now)
    changed: set[str] = set()
    if was_offline != is_offline:
        for microgrid in microgrids:
            changed |= _settle(_lock_microgrid(microgrid.pk), before[microgrid.pk], now)
    return changed


def _receive_heartbeat(peer, request_id, correlation_id, raw, data, now) -> Receipt:
    offline_mode_at = oscp.parse_heartbeat(data)
    with transaction.atomic():
        locked = _begin(peer, request_id)
        if locked is None:
            return Receipt(None, True, [], [], set())
        message = OscpMessage.objects.create(
            peer=locked,
            message_type=MessageType.HEARTBEAT,
            request_id=request_id,
            correlation_id=correlation_id,
            body=raw,
            received_at=now,
        )

        def apply():
            # No history row per heartbeat: the message is stored, switches are recorded.
            OscpPeer.objects.filter(pk=locked.pk).update(
                offline_mode_at=offline_mode_at, last_heartbeat_at=now
            )
            locked.offline_mode_at = offline_mode_at
            locked.last_heartbeat_at = now

        changed = _switch_mode(locked, apply, ModeCause.HEARTBEAT, now)
    return Receipt(message, False, [], [], changed)


def _receive_handshake(peer, request_id, correlation_id, raw, data, now) -> Receipt:
    behaviour = oscp.parse_handshake(data)
    with transaction.atomic():
        locked = _begin(peer, request_id)
        if locked is None:
            return Receipt(None, True, [], [], set())
        message = OscpMessage.objects.create(
            peer=locked,
            message_type=MessageType.HANDSHAKE,
            request_id=request_id,
            correlation_id=correlation_id,
            body=raw,
            received_at=now,
        )

        def apply():
            # A fresh handshake ends offline mode; until its first heartbeat the peer
            # stays online for one of its heartbeat intervals.
            locked.offline_mode_at = now + timedelta(seconds=locked.heartbeat_interval_s)
            locked.last_handshake_at = now
            locked.required_behaviour = behaviour
            locked._history_date = now
            locked.save(
                update_fields=["offline_mode_at", "last_handshake_at", "required_behaviour"]
            )

        changed = _switch_mode(locked, apply, ModeCause.HANDSHAKE, now)
    return Receipt(message, False, [], [], changed)


# -- withdraw -----------------------------------------------------------------------------------


WITHDRAWABLE = (EnvelopeStatus.PENDING, EnvelopeStatus.ACTIVE)


def envelope_withdraw(
    *,
    envelope: OperatingEnvelope,
    user=None,
    reason: str = "",
    now: datetime | None = None,
) -> OperatingEnvelope:
    """Support staff end a PENDING or ACTIVE envelope; it stays visible as WITHDRAWN. `reason`
    is validated text (`EnvelopeWithdraw`)."""
    now = now or timezone.now()
    with transaction.atomic():
        microgrid = _lock_microgrid(envelope.microgrid_id)
        current = OperatingEnvelope.objects.select_for_update().get(pk=envelope.pk)
        status = envelope_status(current, now)
        if status not in WITHDRAWABLE:
            raise DomainError(
                "ENVELOPE_NOT_WITHDRAWABLE",
                f"Operating envelope {current.envelope_id} is {status}: only PENDING and "
                "ACTIVE envelopes can be withdrawn",
                {
                    "microgrid_id": microgrid.microgrid_id,
                    "envelope_id": current.envelope_id,
                    "status": status,
                },
                status=409,
            )
        before = enforced_ids(microgrid, now)
        current.state = EnvelopeState.WITHDRAWN
        current.withdrawn_at = now
        current.withdrawn_by = _user(user)
        current.withdraw_reason = reason
        current._history_user = _user(user)
        current._history_date = now
        current._change_reason = reason or None
        current.save(update_fields=["state", "withdrawn_at", "withdrawn_by", "withdraw_reason"])
        _settle(microgrid, before, now)
    return current


# -- the beat task ------------------------------------------------------------------------------


def envelope_transitions_record(*, now: datetime | None = None) -> int:
    """Record every envelope that became ACTIVE or EXPIRED and every peer whose
    offline_mode_at passed since they were received; reconcile the legacy values of the
    microgrids concerned and ask each for a cycle. Returns how many rows were new.

    Idempotent: a transition is unique per envelope and kind, a switch per peer, mode and
    instant, so a rerun records nothing twice and triggers nothing.
    """
    now = now or timezone.now()
    horizon = now - MAX_CATCH_UP
    with transaction.atomic():
        found: list[EnvelopeTransition] = []
        for kind, column in (
            (TransitionKind.ACTIVATED, "valid_from"),
            (TransitionKind.EXPIRED, "valid_until"),
        ):
            # A boundary an envelope had already passed when it arrived is no transition.
            rows = (
                OperatingEnvelope.objects.filter(
                    Q(**{f"{column}__lte": now})
                    & Q(**{f"{column}__gt": horizon})
                    & Q(**{f"{column}__gt": F("received_at")}),
                    state=EnvelopeState.RECEIVED,
                )
                .exclude(transitions__transition=kind)
                .select_related("microgrid")
            )
            for envelope in rows:
                at = getattr(envelope, column)
                found.append(
                    EnvelopeTransition(envelope=envelope, transition=kind, at=at, recorded_at=now)
                )
        EnvelopeTransition.objects.bulk_create(found, ignore_conflicts=True)

        lapsed = []
        for peer in OscpPeer.objects.filter(offline_mode_at__lte=now, offline_mode_at__gt=horizon):
            if not PeerModeChange.objects.filter(
                peer=peer, mode=PeerMode.OFFLINE, at=peer.offline_mode_at
            ).exists():
                _mode_change(
                    peer, PeerMode.OFFLINE, ModeCause.HEARTBEAT_LAPSED, peer.offline_mode_at, now
                )
                lapsed.append(peer)

        affected: dict[int, set[str]] = {}
        for t in found:
            envelope = t.envelope
            if envelope.direction == Direction.IMPORT and envelope.forecast_type != (
                ForecastType.OPTIMUM
            ):
                affected.setdefault(envelope.microgrid_id, set()).add(envelope.envelope_id)
            else:
                affected.setdefault(envelope.microgrid_id, set())
        for peer in lapsed:
            for envelope in OperatingEnvelope.objects.filter(
                peer=peer,
                state=EnvelopeState.RECEIVED,
                valid_from__lte=now,
                valid_until__gt=now,
                forecast_type__in=(ForecastType.CONSUMPTION, ForecastType.FALLBACK_CONSUMPTION),
            ):
                affected.setdefault(envelope.microgrid_id, set()).add(envelope.envelope_id)
            for microgrid_id in OscpGroupBinding.objects.filter(peer=peer).values_list(
                "microgrid_id", flat=True
            ):
                affected.setdefault(microgrid_id, set())
        for microgrid_pk in sorted(affected):
            microgrid = _lock_microgrid(microgrid_pk)
            legacy_capacity_reconcile(microgrid=microgrid, now=now)
            ids = affected[microgrid_pk]
            if ids:
                scopes = [
                    e.scope_dict()
                    for e in OperatingEnvelope.objects.filter(
                        microgrid=microgrid, envelope_id__in=ids
                    )
                ]
                _ask_for_cycle(microgrid, ids, scopes)
    return len(found) + len(lapsed)


# -- peers and group bindings (admin, profiles) -------------------------------------------------


def _usable_token(token: Any) -> bool:
    if not isinstance(token, str):
        return False
    key = token.strip()
    return len(key) >= MIN_TOKEN_LENGTH and all(33 <= ord(c) <= 126 for c in key)


def peer_problems(
    name: Any, token: Any, interval: Any, *, prefix: str = "", token_required: bool
) -> list[ErrorItem]:
    errors = []
    try:
        check_id(name, "name")
    except FieldProblem as exc:
        errors.append(ErrorItem("FIELD_INVALID", str(exc), field=f"{prefix}name"))
    if (token is not None or token_required) and not _usable_token(token):
        errors.append(
            ErrorItem(
                "FIELD_INVALID",
                f"token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters "
                "without spaces",
                field=f"{prefix}token",
            )
        )
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= 86400
    ):
        errors.append(
            ErrorItem(
                "FIELD_INVALID",
                "heartbeat_interval_s must be a whole number of seconds from 1 to 86400",
                field=f"{prefix}heartbeat_interval_s",
            )
        )
    return errors


def oscp_peer_save(
    *,
    name: Any,
    token: Any = None,
    heartbeat_interval_s: Any = None,
    active: bool | None = None,
    user=None,
) -> tuple[OscpPeer, bool]:
    """Create a peer or update it by name; (peer, changed). A token is stored hashed only;
    an update without a token keeps the current one."""
    existing = OscpPeer.objects.filter(name=name).first() if isinstance(name, str) else None
    errors = peer_problems(name, token, heartbeat_interval_s, token_required=existing is None)
    if errors:
        raise DomainError.from_errors(errors)
    with transaction.atomic():
        peer = OscpPeer.objects.select_for_update().filter(name=name).first() or OscpPeer(name=name)
        wanted: dict[str, Any] = {}
        if token is not None:
            key = token.strip()
            token_hash = hash_token(key)
            taken = OscpPeer.objects.filter(token_hash=token_hash).exclude(pk=peer.pk).first()
            if taken is not None:
                raise DomainError.from_errors(
                    [
                        ErrorItem(
                            "FIELD_INVALID",
                            f"this token is already the token of OSCP peer {taken.name!r}",
                            field="token",
                        )
                    ]
                )
            wanted["token_hash"] = token_hash
            wanted["token_prefix"] = key[:8]
        if heartbeat_interval_s is not None:
            wanted["heartbeat_interval_s"] = heartbeat_interval_s
        if active is not None:
            wanted["active"] = active
        changed = peer.pk is None or any(getattr(peer, k) != v for k, v in wanted.items())
        if changed:
            for k, v in wanted.items():
                setattr(peer, k, v)
            peer._history_user = _user(user)
            peer.save()
    return peer, changed


def check_binding_scope(microgrid: Microgrid, scope: Any, *, field: str = "scope") -> dict:
    """{"type": "MICROGRID"} or {"type": "NODE", "node_id": X} naming a node of this microgrid."""
    from balancing.services import check_scope

    try:
        return check_scope(microgrid, scope)
    except DomainError as exc:
        for item in exc.errors:
            if item.field and item.field.startswith("scope"):
                item.field = field + item.field[len("scope") :]
        raise


def oscp_group_binding_validate(
    *, peer: OscpPeer, group_id: Any, microgrid: Microgrid, scope: Any
) -> tuple[str, dict]:
    """The clean (group_id, scope) of a binding, or DomainError; writes nothing (admin forms
    call it from clean())."""
    try:
        group_id = check_id(group_id, "group_id")
    except FieldProblem as exc:
        raise DomainError.from_errors(
            [ErrorItem("FIELD_INVALID", str(exc), field="group_id")]
        ) from None
    scope = check_binding_scope(microgrid, scope)
    elsewhere = (
        OscpGroupBinding.objects.filter(peer=peer, group_id=group_id)
        .exclude(microgrid=microgrid)
        .select_related("microgrid")
        .first()
    )
    if elsewhere is not None:
        raise DomainError(
            "OSCP_GROUP_ALREADY_BOUND",
            f"OSCP group {group_id!r} of peer {peer.name!r} is bound to microgrid "
            f"{elsewhere.microgrid.microgrid_id!r}: a group maps to one scope",
            {
                "peer": peer.name,
                "group_id": group_id,
                "microgrid_id": elsewhere.microgrid.microgrid_id,
            },
            status=409,
        )
    return group_id, scope


def oscp_group_binding_save(
    *, peer: OscpPeer, group_id: Any, microgrid: Microgrid, scope: Any, user=None
) -> tuple[OscpGroupBinding, bool]:
    """Bind (or rebind) one group of a peer to a scope; (binding, changed).

    A group maps to exactly one scope: a group bound to another microgrid must be
    unbound there first (409 OSCP_GROUP_ALREADY_BOUND). Envelopes already received keep
    the scope they arrived for.
    """
    with transaction.atomic():
        group_id, scope = oscp_group_binding_validate(
            peer=peer, group_id=group_id, microgrid=microgrid, scope=scope
        )
        # Only the binding row: PostgreSQL refuses FOR UPDATE across the outer join to the
        # nullable node.
        binding = (
            OscpGroupBinding.objects.select_for_update(of=("self",))
            .select_related("microgrid", "node")
            .filter(peer=peer, group_id=group_id)
            .first()
        )
        node = (
            MicrogridNode.objects.get(microgrid=microgrid, node_id=scope["node_id"])
            if scope["type"] == ScopeType.NODE
            else None
        )
        if binding is not None and binding.scope_type == scope["type"] and binding.node == node:
            return binding, False
        binding = binding or OscpGroupBinding(peer=peer, group_id=group_id, microgrid=microgrid)
        binding.scope_type = scope["type"]
        binding.node = node
        binding._history_user = _user(user)
        binding.save()
    return binding, True


def oscp_group_binding_delete(*, binding: OscpGroupBinding, user=None) -> None:
    with transaction.atomic():
        current = OscpGroupBinding.objects.filter(pk=binding.pk).first()
        if current is None:
            return
        current._history_user = _user(user)
        current.delete()
