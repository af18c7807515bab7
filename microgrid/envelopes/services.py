"""Writes of the envelopes app: OSCP messages, withdrawals, transitions, peers and bindings.

Every service is one transaction and changes nothing when it refuses. After a
change that alters which envelopes are enforced now, `envelopes_settled` is sent in the same
transaction (the interim legacy values follow, `legacy_circuit/interim.py`) and, after the
commit, `enforcement_changed` (balancing asks for an `ENVELOPE_CHANGE` cycle), so a new limit
holds within seconds rather than at the next scheduled cycle. Services take the clock (`now`) from their
caller; tests and the simulator pass their own.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_id
from microgrid.common.history import record_history
from microgrid.common.models import hash_token
from microgrid.common.signals import collect, send_on_commit
from microgrid.envelopes import oscp, signals
from microgrid.envelopes.choices import (
    DIRECTION_OF,
    Direction,
    EnvelopeState,
    EnvelopeStatus,
    ForecastType,
    MeasurementConfiguration,
    MessageType,
    ModeCause,
    OutboundType,
    PeerMode,
    ScopeType,
    SegmentState,
    TransitionKind,
)
from microgrid.envelopes.models import (
    EnvelopeTransition,
    OperatingEnvelope,
    OscpGroupBinding,
    OscpMessage,
    OscpOutbound,
    OscpPeer,
    OscpSegment,
    PeerModeChange,
)
from microgrid.envelopes.outbox import outbound_cancel, outbound_enqueue
from microgrid.envelopes.selectors import (
    enforced_ids,
    envelope_status,
    next_number,
)
from microgrid.topology.models import Microgrid, MicrogridNode
from microgrid.topology.selectors import check_scope, root_node
from microgrid.topology.services import lock_microgrid

log = logging.getLogger(__name__)

# The beat task looks back at most this far for transitions it has not recorded.
MAX_CATCH_UP = timedelta(days=1)
MIN_TOKEN_LENGTH = 16


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


def _lock_microgrid(microgrid_pk: int) -> Microgrid:
    return lock_microgrid(Microgrid(pk=microgrid_pk))


def _enforcement_changed(microgrid: Microgrid, envelope_ids: set[str], scopes: list[dict]) -> None:
    """After the commit: the enforced set changed (balancing asks for an ENVELOPE_CHANGE
    cycle, in their shared scope if they share one)."""
    distinct = {json.dumps(s, sort_keys=True) for s in scopes}
    send_on_commit(
        signals.enforcement_changed,
        microgrid_id=microgrid.microgrid_id,
        envelope_ids=sorted(envelope_ids),
        scope=scopes[0] if len(distinct) == 1 else None,
    )


def _settle(microgrid: Microgrid, before: set[str], now: datetime) -> set[str]:
    """Tell the apps above (the legacy values follow); announce it if the enforced set
    changed. Returns the envelope ids that started or stopped being enforced."""
    collect(signals.envelopes_settled, microgrid=microgrid, now=now)
    after = enforced_ids(microgrid, now)
    changed = before ^ after
    if changed:
        scopes = [
            e.scope_dict()
            for e in OperatingEnvelope.objects.filter(microgrid=microgrid, envelope_id__in=changed)
        ]
        _enforcement_changed(microgrid, changed, scopes)
    return changed


# -- peer authentication ------------------------------------------------------------------------


def oscp_peer_authenticate(authorization: str | None) -> OscpPeer:
    """`Authorization: Token <peer token>`, looked up by its hash among active peers only.

    The token a register handed the CP (`next_token_hash`) works too; its first use makes
    it the peer's token and retires the old one."""
    parts = (authorization or "").split()
    if len(parts) != 2 or parts[0].lower() != "token":
        raise DomainError(
            "NOT_AUTHENTICATED", "OSCP requests need 'Authorization: Token <token>'", status=401
        )
    digest = hash_token(parts[1])
    peer = OscpPeer.objects.filter(
        Q(token_hash=digest) | Q(next_token_hash=digest), active=True
    ).first()
    if peer is None:
        raise DomainError("NOT_AUTHENTICATED", "Invalid or inactive OSCP peer token", status=401)
    if peer.next_token_hash == digest:
        with transaction.atomic():
            locked = OscpPeer.objects.select_for_update().get(pk=peer.pk)
            if locked.next_token_hash == digest:
                locked.token_hash, locked.next_token_hash = digest, ""
                locked.token_prefix = parts[1][:8]
                locked._change_reason = "the token handed over by register was first used"
                locked.save(update_fields=["token_hash", "next_token_hash", "token_prefix"])
            peer = locked
    return peer


# -- OSCP messages ------------------------------------------------------------------------------

SEGMENT_WINDOW = timedelta(minutes=5)
REGISTER_TYPES = (MessageType.REGISTER, MessageType.REGISTER_UPDATE, MessageType.UNREGISTER)


@dataclass
class Receipt:
    message: OscpMessage | None
    replay: bool  # the same peer + type + X-Request-ID (and body) was accepted before
    envelopes: list[OperatingEnvelope]
    superseded: list[str]
    changed: set[str]  # envelope ids that started or stopped being enforced
    withdrawn: list[str] = field(default_factory=list)
    segment: OscpSegment | None = None  # a segment stored, its set not complete yet


def _replayed() -> Receipt:
    return Receipt(None, True, [], [], set())


def oscp_message_receive(
    *,
    peer: OscpPeer,
    message_type: str,
    request_id: Any,
    correlation_id: Any = None,
    segment_index: Any = None,
    segment_count: Any = None,
    body: bytes | str,
    now: datetime | None = None,
    fp_base_url: str = "",
) -> Receipt:
    """Accept one OSCP message from an authenticated peer, or refuse it changing nothing.

    The replay key is (peer, message type, X-Request-ID): a repeat with the same body is
    answered as the first was and changes nothing; with another body it is refused (400
    OSCP_REQUEST_ID_REUSED). Refused messages are not stored: sent again, they are judged
    again. A segment (X-Segment-Index / -Count) is kept until its set is complete.
    """
    now = now or timezone.now()
    request_id, correlation_id = oscp.check_headers(request_id, correlation_id)
    segment = oscp.check_segment_headers(segment_index, segment_count, correlation_id)
    if segment is not None and message_type != MessageType.UPDATE_GROUP_CAPACITY_FORECAST:
        raise oscp.invalid(
            [
                ErrorItem(
                    "FIELD_INVALID",
                    "X-Segment-Index only segments update_group_capacity_forecast",
                    field="X-Segment-Index",
                )
            ],
            "request headers",
        )
    raw = _text(body)
    data = None if message_type == MessageType.UNREGISTER and not raw.strip() else _json(raw)
    digest = oscp.body_hash(data)
    if segment is not None:
        return _receive_segment(peer, request_id, correlation_id, segment, raw, data, digest, now)
    if _seen(peer, message_type, request_id, digest):
        return _replayed()
    handler = {
        MessageType.UPDATE_GROUP_CAPACITY_FORECAST: _receive_forecast,
        MessageType.HEARTBEAT: _receive_heartbeat,
        MessageType.HANDSHAKE: _receive_handshake,
    }.get(message_type)
    common = {"request_id": request_id, "correlation_id": correlation_id, "digest": digest}
    if handler is not None:
        return handler(peer, raw=raw, data=data, now=now, **common)
    if message_type in REGISTER_TYPES:
        return _receive_register(
            peer, message_type, data=data, now=now, fp_base_url=fp_base_url, **common
        )
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


def _seen(peer: OscpPeer, message_type: str, request_id: str, digest: str) -> bool:
    """True for a repeat of an accepted message; 400 OSCP_REQUEST_ID_REUSED when the key was
    used for another body."""
    first = (
        OscpMessage.objects.filter(
            peer=peer, message_type=message_type, request_id=request_id, segments=0
        )
        .only("body_hash", "received_at")
        .first()
    )
    if first is None:
        return False
    if first.body_hash and first.body_hash != digest:
        raise DomainError(
            "OSCP_REQUEST_ID_REUSED",
            f"X-Request-ID {request_id!r} was used for another {message_type} body: a request "
            "id names one message",
            {
                "request_id": request_id,
                "message_type": message_type,
                "first_received_at": first.received_at.isoformat(),
            },
            status=400,
        )
    return True


def _begin(peer: OscpPeer, message_type: str, request_id: str, digest: str) -> OscpPeer | None:
    """Inside the transaction: the locked peer, or None when the message is a replay."""
    locked = OscpPeer.objects.select_for_update().get(pk=peer.pk)
    if _seen(locked, message_type, request_id, digest):
        return None  # the same message, accepted meanwhile by a concurrent request
    return locked


def _store(locked, message_type, request_id, correlation_id, raw, digest, now, **extra):
    return OscpMessage.objects.create(
        peer=locked,
        message_type=message_type,
        request_id=request_id,
        correlation_id=correlation_id,
        body=raw,
        body_hash=digest,
        received_at=now,
        **extra,
    )


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
    return root_node(binding.microgrid)


@dataclass(frozen=True)
class Converted:
    block: oscp.Block
    kw: float
    note: str
    node: MicrogridNode | None  # the node whose figures converted it (A, per phase)


def _convert(forecast: oscp.Forecast, binding: OscpGroupBinding) -> list[Converted]:
    node = None
    if any(oscp.needs_node(b) for b in forecast.blocks):
        node = _conversion_node(binding)
    errors: list[ErrorItem] = []
    out = []
    for block in forecast.blocks:
        used = node if oscp.needs_node(block) else None
        if oscp.needs_node(block) and node is None:
            what = "unit A" if block.unit == "A" else f"phase {block.phase}"
            field_name = "unit" if block.unit == "A" else "phase"
            errors.append(
                ErrorItem(
                    "FIELD_INVALID",
                    f"forecasted_blocks[{block.index}].{field_name}: {what} cannot be converted: "
                    f"microgrid {binding.microgrid.microgrid_id!r} has no root Microgrid Node",
                    field=f"forecasted_blocks[{block.index}].{field_name}",
                )
            )
            continue
        kw, note = oscp.capacity_kw(
            block,
            voltage_v=used.voltage_v if used else None,
            phases=used.phases if used else None,
        )
        problem = oscp.check_capacity(block, kw)
        if problem:
            errors.append(problem)
        out.append(Converted(block, kw, note, used))
    if errors:
        raise oscp.invalid(errors)
    return out


def _receive_forecast(peer, *, request_id, correlation_id, raw, data, digest, now) -> Receipt:
    forecast = oscp.parse_forecast(data)
    binding = _binding(peer, forecast.group_id)
    converted = _convert(forecast, binding)
    with transaction.atomic():
        locked = _begin(peer, MessageType.UPDATE_GROUP_CAPACITY_FORECAST, request_id, digest)
        if locked is None:
            return _replayed()
        message = _store(
            locked,
            MessageType.UPDATE_GROUP_CAPACITY_FORECAST,
            request_id,
            correlation_id,
            raw,
            digest,
            now,
            microgrid_id=binding.microgrid_id,
            group_id=forecast.group_id,
        )
        return _apply_forecast(locked, binding, forecast, converted, message, now)


def _apply_forecast(locked, binding, forecast, converted, message, now) -> Receipt:
    """Inside the transaction: the forecast's blocks become envelopes (superseding the time
    they cover), or, for an empty list, the peer's live envelopes of that group and type end."""
    microgrid = _lock_microgrid(binding.microgrid_id)
    before = enforced_ids(microgrid, now)
    if not converted:
        withdrawn = _withdraw_by_peer(microgrid, locked, forecast, message, now)
        changed = _settle(microgrid, before, now)
        return Receipt(message, False, [], [], changed, withdrawn=withdrawn)
    number = next_number(microgrid)
    node_id = binding.node.node_id if binding.scope_type == ScopeType.NODE else ""
    created = []
    for offset, item in enumerate(sorted(converted, key=lambda c: (c.block.start, c.block.index))):
        block, used = item.block, item.node
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
                capacity_kw=item.kw,
                capacity_note=item.note[:300],
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


def _withdraw_by_peer(microgrid, peer, forecast, message, now) -> list[str]:
    """An empty forecasted_blocks: the peer's envelopes of this group and type that have not
    ended yet end now, WITHDRAWN by the message (one UPDATE, one history INSERT)."""
    rows = OperatingEnvelope.objects.filter(
        microgrid=microgrid,
        peer=peer,
        group_id=forecast.group_id,
        forecast_type=forecast.forecast_type,
        state=EnvelopeState.RECEIVED,
        valid_until__gt=now,
    )
    ids = list(rows.order_by("number").values_list("envelope_id", flat=True))
    if not ids:
        return []
    reason = (
        f"ended by OSCP peer {peer.name}: an empty forecasted_blocks "
        f"(X-Request-ID {message.request_id})"
    )[:500]
    ended = OperatingEnvelope.objects.filter(microgrid=microgrid, envelope_id__in=ids)
    ended.update(
        state=EnvelopeState.WITHDRAWN,
        withdrawn_at=now,
        withdraw_reason=reason,
        withdrawn_by_message=message,
    )
    record_history(ended, history_type="~", date=now, reason=reason[:100])
    return ids


def _supersede(microgrid, peer, forecast, created, now) -> list[OperatingEnvelope]:
    """Not-yet-expired envelopes of this group and type whose window overlaps a new block of
    the same phase, locked, in number order."""
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
    windows = _windows_by_phase(created)
    return [
        old
        for old in candidates.order_by("number")
        if any(
            frm < old.valid_until and old.valid_from < until
            for frm, until in windows.get(old.phase, ())
        )
    ]


def _windows_by_phase(created) -> dict[str, list[tuple[datetime, datetime]]]:
    out: dict[str, list[tuple[datetime, datetime]]] = {}
    for new in created:
        out.setdefault(new.phase, []).append((new.valid_from, new.valid_until))
    return out


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
    "capacity_note",
    "voltage_v",
    "phases",
    "peer_id",
    "group_id",
    "message_id",
    "block_index",
)


def _remainders(superseded, created, first_number: int, now) -> list[OperatingEnvelope]:
    """For each superseded envelope, the parts of its window outside the new blocks of its
    phase: new envelopes with the same cap, message and block, numbered after the new
    blocks, each linked to its origin (`split_from`). A revision never lifts a cap it did
    not mention."""
    windows = _windows_by_phase(created)
    parts = []
    for old in superseded:
        mine = [
            w
            for w in windows.get(old.phase, ())
            if w[0] < old.valid_until and old.valid_from < w[1]
        ]
        for frm, until in uncovered(old.valid_from, old.valid_until, mine):
            if until <= now:
                continue  # over before the receipt: nothing left to enforce, no new id
            n = first_number + len(parts)
            parts.append(
                OperatingEnvelope(
                    number=n,
                    envelope_id=f"OE-{n}",
                    valid_from=frm,
                    valid_until=until,
                    received_at=now,
                    split_from=old,
                    **{name: getattr(old, name) for name in SPLIT_FIELDS},
                )
            )
    return parts


def _link_superseded(superseded, message, now) -> None:
    """Mark the superseded envelopes, each pointing at the first new envelope of `message` of
    its phase that overlaps it: one UPDATE and one history INSERT for the whole forecast (a
    revised day supersedes 96 envelopes)."""
    if not superseded:
        return
    first_overlap = (
        OperatingEnvelope.objects.filter(
            message=message,
            phase=OuterRef("phase"),
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


# -- segments -----------------------------------------------------------------------------------


def _segment_problem(header: str, message: str) -> DomainError:
    return oscp.invalid(
        [ErrorItem("FIELD_INVALID", f"{header} {message}", field=header)], "segment"
    )


def _drop_expired_segments(now: datetime, peer: OscpPeer | None = None) -> int:
    """Sets whose first segment came more than 5 minutes ago and are still incomplete are
    DROPPED (kept for the audit); their segments are never applied."""
    pending = OscpSegment.objects.filter(state=SegmentState.PENDING)
    if peer is not None:
        pending = pending.filter(peer=peer)
    stale = {
        (p, c)
        for p, c in pending.filter(received_at__lte=now - SEGMENT_WINDOW).values_list(
            "peer_id", "correlation_id"
        )
    }
    dropped = 0
    for peer_id, correlation_id in sorted(stale):
        dropped += pending.filter(peer_id=peer_id, correlation_id=correlation_id).update(
            state=SegmentState.DROPPED, closed_at=now
        )
        log.warning(
            "OSCP segments of peer %s, X-Correlation-ID %s dropped: not all arrived within %s",
            peer_id,
            correlation_id,
            SEGMENT_WINDOW,
        )
    return dropped


def _receive_segment(peer, request_id, correlation_id, segment, raw, data, digest, now) -> Receipt:
    """One segment of an update_group_capacity_forecast: checked on its own, kept, and when
    the set is complete the whole forecast is applied as one message."""
    kind = MessageType.UPDATE_GROUP_CAPACITY_FORECAST
    forecast = oscp.parse_forecast(data)
    binding = _binding(peer, forecast.group_id)
    _convert(forecast, binding)
    with transaction.atomic():
        locked = OscpPeer.objects.select_for_update().get(pk=peer.pk)
        _drop_expired_segments(now, locked)
        live = OscpSegment.objects.filter(
            peer=locked, message_type=kind, correlation_id=correlation_id
        ).exclude(state=SegmentState.DROPPED)
        same = live.filter(index=segment.index).first()
        if same is not None:
            if same.body_hash == digest and same.count == segment.count:
                return _replayed()  # this very segment again
            raise DomainError(
                "OSCP_REQUEST_ID_REUSED",
                f"Segment {segment.index} of X-Correlation-ID {correlation_id!r} was received "
                "before with another body",
                {
                    "correlation_id": correlation_id,
                    "segment_index": segment.index,
                    "first_received_at": same.received_at.isoformat(),
                },
                status=400,
            )
        siblings = list(live.filter(state=SegmentState.PENDING).order_by("index"))
        if any(s.state != SegmentState.PENDING for s in live):
            raise _segment_problem(
                "X-Correlation-ID", "names a segmented message that was already applied"
            )
        if siblings and siblings[0].count != segment.count:
            raise _segment_problem(
                "X-Segment-Count", f"differs from the set's count {siblings[0].count}"
            )
        indexes = {s.index for s in siblings} | {segment.index}
        if 0 in indexes and segment.count in indexes:
            raise _segment_problem(
                "X-Segment-Index", "mixes numbering from 0 and from 1 in one set"
            )
        if siblings:
            first = json.loads(siblings[0].body)
            if (first.get("group_id"), first.get("type")) != (
                forecast.group_id,
                forecast.forecast_type,
            ):
                raise oscp.invalid(
                    [
                        ErrorItem(
                            "FIELD_INVALID",
                            "group_id and type must be the same in every segment of a message",
                            field="group_id",
                        )
                    ]
                )
        row = OscpSegment.objects.create(
            peer=locked,
            message_type=kind,
            correlation_id=correlation_id,
            index=segment.index,
            count=segment.count,
            request_id=request_id,
            body=raw,
            body_hash=digest,
            received_at=now,
        )
        if len(indexes) < segment.count:
            receipt = Receipt(None, False, [], [], set())
            receipt.segment = row
            return receipt
        rows = sorted([*siblings, row], key=lambda s: s.index)
        assembled = _assemble(rows)
        whole = oscp.parse_forecast(assembled)  # overlaps across segments are refused here
        converted = _convert(whole, binding)
        body_text = json.dumps(assembled)
        message = OscpMessage.objects.create(
            peer=locked,
            message_type=kind,
            request_id=rows[0].request_id,
            correlation_id=correlation_id,
            microgrid_id=binding.microgrid_id,
            group_id=whole.group_id,
            body=body_text,
            body_hash=oscp.body_hash(assembled),
            segments=segment.count,
            notes=[f"assembled from {segment.count} segments"],
            received_at=now,
        )
        OscpSegment.objects.filter(pk__in=[s.pk for s in rows]).update(
            state=SegmentState.ASSEMBLED, closed_at=now, message=message
        )
        return _apply_forecast(locked, binding, whole, converted, message, now)


def _assemble(rows: list[OscpSegment]) -> dict[str, Any]:
    """The segments' bodies as one message: the first segment's fields, every segment's
    blocks in segment order."""
    bodies = [json.loads(s.body) for s in rows]
    out = dict(bodies[0])
    out["forecasted_blocks"] = [b for body in bodies for b in body.get("forecasted_blocks", [])]
    return out


# -- heartbeat, handshake -----------------------------------------------------------------------


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


def _receive_heartbeat(peer, *, request_id, correlation_id, raw, data, digest, now) -> Receipt:
    reported, notes = oscp.parse_heartbeat(data)
    with transaction.atomic():
        locked = _begin(peer, MessageType.HEARTBEAT, request_id, digest)
        if locked is None:
            return _replayed()
        # Offline when no heartbeat came by offline_mode_at, or after twice the interval.
        lapse = now + timedelta(seconds=2 * locked.interval_s)
        offline_mode_at = min(reported, lapse)
        if lapse < reported:
            notes.append(
                f"offline from {offline_mode_at.isoformat()} (2 x heartbeat_interval "
                f"{locked.interval_s} s) unless another heartbeat comes first"
            )
        message = _store(
            locked, MessageType.HEARTBEAT, request_id, correlation_id, raw, digest, now, notes=notes
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


def _receive_handshake(peer, *, request_id, correlation_id, raw, data, digest, now) -> Receipt:
    handshake = oscp.parse_handshake(data)
    with transaction.atomic():
        locked = _begin(peer, MessageType.HANDSHAKE, request_id, digest)
        if locked is None:
            return _replayed()
        message = _store(
            locked, MessageType.HANDSHAKE, request_id, correlation_id, raw, digest, now
        )

        def apply():
            # A fresh handshake ends offline mode; until its first heartbeat the peer stays
            # online for twice the heartbeat interval in force.
            locked.handshake_heartbeat_interval_s = handshake.heartbeat_interval
            locked.offline_mode_at = now + timedelta(seconds=2 * locked.interval_s)
            locked.last_handshake_at = now
            locked.required_behaviour = handshake.behaviour
            # Our heartbeats to the CP start now when it asked for them.
            locked.next_heartbeat_at = now if handshake.heartbeat_interval else None
            locked._history_date = now
            locked.save(
                update_fields=[
                    "handshake_heartbeat_interval_s",
                    "offline_mode_at",
                    "last_handshake_at",
                    "required_behaviour",
                    "next_heartbeat_at",
                ]
            )

        changed = _switch_mode(locked, apply, ModeCause.HANDSHAKE, now)
        _acknowledge(locked, message, now)
    return Receipt(message, False, [], [], changed)


def _acknowledge(peer: OscpPeer, handshake: OscpMessage, now: datetime) -> None:
    """handshake_acknowledgement: the behaviour this product will follow and asks for —
    heartbeats at the interval in force, and the measurement configuration it will send."""
    outbound_enqueue(
        peer=peer,
        message_type=OutboundType.HANDSHAKE_ACKNOWLEDGEMENT,
        body={
            "required_behaviour": {
                "heartbeat_interval": peer.interval_s,
                "measurement_configuration": [measurement_configuration(peer)],
            }
        },
        correlation_id=handshake.request_id,
        now=now,
    )


def measurement_configuration(peer: OscpPeer) -> str:
    """The CP's first listed configuration; CONTINUOUS when it listed none."""
    listed = (peer.required_behaviour or {}).get("measurement_configuration") or []
    return listed[0] if listed else MeasurementConfiguration.CONTINUOUS


# -- register -----------------------------------------------------------------------------------


def _receive_register(
    peer, message_type, *, request_id, correlation_id, data, digest, now, fp_base_url
) -> Receipt:
    """POST: the CP sends its token and base URL; this product answers with a register of its
    own (a new token for the CP, the versions it speaks: 2.0) unless the POST is itself the
    answer to ours (it carries an X-Correlation-ID). PUT: new token / URL. DELETE: the
    peer unregisters: it is deactivated and its pending outbound messages are cancelled."""
    register = oscp.parse_register(data) if message_type != MessageType.UNREGISTER else None
    stored = oscp.masked(data) if isinstance(data, dict) else data
    with transaction.atomic():
        locked = _begin(peer, message_type, request_id, digest)
        if locked is None:
            return _replayed()
        message = _store(
            locked,
            message_type,
            request_id,
            correlation_id,
            json.dumps(stored) if stored is not None else "",
            digest,
            now,
        )
        if register is None:
            locked.active = False
            locked.cp_token = ""
            locked.next_token_hash = ""
            locked._change_reason = "unregistered by the CP (DELETE register)"
            locked.save(update_fields=["active", "cp_token", "next_token_hash"])
            outbound_cancel(peer=locked, now=now)
            return Receipt(message, False, [], [], set())
        locked.cp_token = register.token
        locked.cp_base_url = register.base_url
        locked.registered_at = now
        fields = ["cp_token", "cp_base_url", "registered_at"]
        answer = message_type == MessageType.REGISTER and not correlation_id
        token = secrets.token_urlsafe(32) if answer else ""
        if answer:
            locked.next_token_hash = hash_token(token)
            fields.append("next_token_hash")
        locked._change_reason = f"{MessageType(message_type).label} from the CP"
        locked.save(update_fields=fields)
        if answer:
            register_enqueue(
                peer=locked,
                token=token,
                fp_base_url=fp_base_url,
                correlation_id=request_id,
                now=now,
            )
    return Receipt(message, False, [], [], set())


def fp_base_url_default() -> str:
    return getattr(settings, "OSCP_FP_BASE_URL", "") or ""


def register_enqueue(
    *, peer: OscpPeer, token: str, fp_base_url: str, now: datetime, correlation_id: str = ""
) -> OscpOutbound | None:
    """Our register to the CP: the token it is to use with us and our version URL."""
    base = fp_base_url_default() or fp_base_url
    body = {"token": token, "version_url": [{"version": oscp.VERSION, "base_url": base}]}
    return outbound_enqueue(
        peer=peer,
        message_type=OutboundType.REGISTER,
        body=body,
        stored_body=oscp.masked(body),
        secret=token,
        correlation_id=correlation_id,
        now=now,
    )


def oscp_register_start(*, peer: OscpPeer, fp_base_url: str = "", user=None, now=None):
    """Support starts a registration with a CP whose base URL and token are set: a new token
    for the CP goes out in our register; the CP's register answer completes it."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = OscpPeer.objects.select_for_update().get(pk=peer.pk)
        if not locked.connected:
            raise DomainError(
                "OSCP_PEER_NOT_CONNECTED",
                f"OSCP peer {locked.name!r} needs an active state, a CP base URL and a CP token "
                "before it can register",
                {"peer": locked.name},
                status=409,
            )
        token = secrets.token_urlsafe(32)
        locked.next_token_hash = hash_token(token)
        locked._history_user = _user(user)
        locked._change_reason = "registration started"
        locked.save(update_fields=["next_token_hash"])
        return register_enqueue(peer=locked, token=token, fp_base_url=fp_base_url, now=now)


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
            collect(signals.envelopes_settled, microgrid=microgrid, now=now)
            ids = affected[microgrid_pk]
            if ids:
                scopes = [
                    e.scope_dict()
                    for e in OperatingEnvelope.objects.filter(
                        microgrid=microgrid, envelope_id__in=ids
                    )
                ]
                _enforcement_changed(microgrid, ids, scopes)
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


def connection_problems(
    cp_base_url: Any, cp_token: Any, measurement_interval_s: Any, *, prefix: str = ""
) -> list[ErrorItem]:
    errors = []
    if cp_base_url not in (None, "") and not oscp._http_url(cp_base_url):
        errors.append(
            ErrorItem(
                "FIELD_INVALID",
                "cp_base_url must be an http(s) URL of at most 300 characters",
                field=f"{prefix}cp_base_url",
            )
        )
    if cp_token not in (None, "") and not _usable_token(cp_token):
        errors.append(
            ErrorItem(
                "FIELD_INVALID",
                f"cp_token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters "
                "without spaces",
                field=f"{prefix}cp_token",
            )
        )
    if measurement_interval_s is not None and (
        isinstance(measurement_interval_s, bool)
        or not isinstance(measurement_interval_s, int)
        or not 60 <= measurement_interval_s <= 86400
    ):
        errors.append(
            ErrorItem(
                "FIELD_INVALID",
                "measurement_interval_s must be a whole number of seconds from 60 to 86400",
                field=f"{prefix}measurement_interval_s",
            )
        )
    return errors


def oscp_peer_save(
    *,
    name: Any,
    token: Any = None,
    heartbeat_interval_s: Any = None,
    active: bool | None = None,
    cp_base_url: Any = None,
    cp_token: Any = None,
    measurement_interval_s: Any = None,
    user=None,
) -> tuple[OscpPeer, bool]:
    """Create a peer or update it by name; (peer, changed). A token is stored hashed only;
    an update without a token keeps the current one. Support sets the CP connection (its
    base URL and the token the CP gave us) here; "" clears it."""
    existing = OscpPeer.objects.filter(name=name).first() if isinstance(name, str) else None
    errors = peer_problems(name, token, heartbeat_interval_s, token_required=existing is None)
    errors += connection_problems(cp_base_url, cp_token, measurement_interval_s)
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
        if cp_base_url is not None:
            wanted["cp_base_url"] = cp_base_url.rstrip("/")
        if cp_token is not None:
            wanted["cp_token"] = cp_token.strip()
        if measurement_interval_s is not None:
            wanted["measurement_interval_s"] = measurement_interval_s
        changed = peer.pk is None or any(getattr(peer, k) != v for k, v in wanted.items())
        if changed:
            for k, v in wanted.items():
                setattr(peer, k, v)
            peer._history_user = _user(user)
            peer.save()
    return peer, changed


def check_binding_scope(microgrid: Microgrid, scope: Any, *, field: str = "scope") -> dict:
    """{"type": "MICROGRID"} or {"type": "NODE", "node_id": X} naming a node of this microgrid."""
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
