"""Reads of operating envelopes: status and enforcement at an instant, the API's shapes, and the
two hooks other apps call (the limits constraint provider and the cycle binding enricher).

Status and enforcement are derived from the clock the caller passes, so a read
is right even when the beat task has not run yet:
- status: WITHDRAWN / SUPERSEDED as stored, else PENDING before the window,
  ACTIVE inside [valid_from, valid_until), EXPIRED after it;
- enforcement: what an ACTIVE envelope does now. While its peer is online the
  CONSUMPTION / GENERATION envelopes apply; while it is offline the
  FALLBACK_* ones apply instead; OPTIMUM never does. An applied IMPORT
  envelope is ENFORCED: it joins the effective limit of its node (the root
  for a MICROGRID scope) as an OPERATING_ENVELOPE constraint.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from microgrid.common.errors import DomainError
from microgrid.common.prepared import PreparedRead
from microgrid.common.signals import collect
from microgrid.envelopes import signals
from microgrid.envelopes.choices import (
    FALLBACK_TYPES,
    NORMAL_TYPES,
    PER_PHASE,
    CapacityUnit,
    Direction,
    Enforcement,
    EnvelopeState,
    EnvelopeStatus,
    ForecastType,
    Phase,
    ScopeType,
)
from microgrid.envelopes.filters import ENVELOPE_LIMIT
from microgrid.envelopes.models import (
    EnvelopeTransition,
    OperatingEnvelope,
    OscpGroupBinding,
    OscpOutbound,
    OscpPeer,
)
from microgrid.limits.choices import ConstraintSource
from microgrid.limits.selectors import Constraint
from microgrid.topology.tree import root_id

ENFORCEABLE_TYPES = (ForecastType.CONSUMPTION, ForecastType.FALLBACK_CONSUMPTION)


# -- status and enforcement (pure) ------------------------------------------------------------


def envelope_status(envelope: OperatingEnvelope, at: datetime) -> str:
    if envelope.state == EnvelopeState.WITHDRAWN:
        return EnvelopeStatus.WITHDRAWN
    if envelope.state == EnvelopeState.SUPERSEDED:
        return EnvelopeStatus.SUPERSEDED
    if at < envelope.valid_from:
        return EnvelopeStatus.PENDING
    if at < envelope.valid_until:
        return EnvelopeStatus.ACTIVE
    return EnvelopeStatus.EXPIRED


def applies(envelope: OperatingEnvelope, peer: OscpPeer, at: datetime) -> bool:
    """ACTIVE, and of the kind that holds while its peer is in its current mode."""
    if envelope_status(envelope, at) != EnvelopeStatus.ACTIVE:
        return False
    if envelope.forecast_type in FALLBACK_TYPES:
        return peer.offline_at(at)
    return envelope.forecast_type in NORMAL_TYPES and not peer.offline_at(at)


def enforcement(envelope: OperatingEnvelope, peer: OscpPeer, at: datetime) -> str:
    if envelope_status(envelope, at) != EnvelopeStatus.ACTIVE:
        return Enforcement.NOT_ACTIVE
    if envelope.forecast_type == ForecastType.OPTIMUM:
        return Enforcement.OPTIMUM_SHOWN
    offline = peer.offline_at(at)
    if envelope.forecast_type in FALLBACK_TYPES and not offline:
        return Enforcement.FALLBACK_STANDBY
    if envelope.forecast_type in NORMAL_TYPES and offline:
        return Enforcement.REPLACED_BY_FALLBACK
    if envelope.direction == Direction.EXPORT:
        return Enforcement.EXPORT_SHOWN
    return Enforcement.ENFORCED


def envelope_number(envelope_id: str | None) -> int:
    digits = (envelope_id or "").rsplit("-", 1)[-1]
    return int(digits) if digits.isdigit() else 0


def scope_key(envelope) -> tuple[str, str]:
    return (envelope.scope_type, envelope.node_id if envelope.scope_type == ScopeType.NODE else "")


# -- what applies now (one query) ---------------------------------------------------------------


def _in_window(at: datetime) -> Q:
    return Q(state=EnvelopeState.RECEIVED, valid_from__lte=at, valid_until__gt=at)


_in_window_rows = PreparedRead(
    lambda microgrid, at: OperatingEnvelope.objects.filter(
        _in_window(at), microgrid_id=microgrid, forecast_type__in=ENFORCEABLE_TYPES
    ).order_by("number"),
    microgrid=int,
    at=datetime,
    batch_by="microgrid",  # scheduled cycles read it for a batch of microgrids at once
)


def active_filter(at: datetime) -> Q:
    """The envelopes ACTIVE at `at` (received and in their window), as a filter for other apps."""
    return _in_window(at)


def enforced_envelopes(microgrid, at: datetime) -> list[OperatingEnvelope]:
    """The envelopes that are part of effective limits at `at`, by number.

    One query when no envelope is in its window (most microgrids, most of the time: every
    balancing cycle asks), two when some are: their peers are read in a second query rather
    than joined, because compiling the join costs every cycle more than the second query
    costs the few that need it.
    """
    rows = _in_window_rows(microgrid=microgrid.pk, at=at)
    if not rows:
        return []
    peers = OscpPeer.objects.in_bulk({e.peer_id for e in rows})
    for e in rows:
        e.peer = peers[e.peer_id]
    return [e for e in rows if enforcement(e, e.peer, at) == Enforcement.ENFORCED]


def enforced_ids(microgrid, at: datetime) -> set[str]:
    return {e.envelope_id for e in enforced_envelopes(microgrid, at)}


class EnvelopeRef(str):
    """An envelope_id that also knows whether it is a fallback applied because its peer is
    offline. It rides in `Constraint.ref` through the limits evaluation unchanged (it is a
    str), so the cycle's binding enricher can say `peer_offline` without a query per charger.
    """

    peer_offline: bool

    def __new__(cls, envelope_id: str, peer_offline: bool = False):
        ref = super().__new__(cls, envelope_id)
        ref.peer_offline = peer_offline
        return ref

    # Lists of envelope ids (NodeLimit.envelope_ids) sort by number: OE-2 before OE-10.
    def _key(self, other: str) -> tuple[tuple[int, str], tuple[int, str]]:
        return (envelope_number(self), str(self)), (envelope_number(other), str(other))

    def __lt__(self, other: str) -> bool:
        mine, theirs = self._key(other)
        return mine < theirs

    def __gt__(self, other: str) -> bool:
        mine, theirs = self._key(other)
        return mine > theirs

    def __le__(self, other: str) -> bool:
        return not self > other

    def __ge__(self, other: str) -> bool:
        return not self < other

    __hash__ = str.__hash__


def envelope_constraints(
    microgrid, at: datetime, nodes: list[dict]
) -> list[tuple[str, Constraint]]:
    """The limits constraint provider: one OPERATING_ENVELOPE constraint per enforced envelope
    on its Microgrid Node (the root for a MICROGRID scope); one query."""
    present = {n["node_id"] for n in nodes}
    voltages = {n["node_id"]: float(n.get("voltage_v") or 230.0) for n in nodes}
    root = root_id(nodes)
    out = []
    for envelope in enforced_envelopes(microgrid, at):
        node_id = root if envelope.scope_type == ScopeType.MICROGRID else envelope.node_id
        if node_id is None or node_id not in present:
            continue  # a node removed after the envelope arrived: nothing left to limit
        ref = EnvelopeRef(envelope.envelope_id, envelope.forecast_type in FALLBACK_TYPES)
        out.append(
            (node_id, Constraint(ConstraintSource.OPERATING_ENVELOPE, envelope.capacity_kw, ref))
        )
        amps = _phase_current(envelope, voltages.get(node_id, 230.0))
        if amps is not None:
            # Per phase too (issue 19): a current, or a per-phase value, is enforced on its
            # phase(s) as a current limit, besides the whole-node kW it was converted to.
            out.append(
                (
                    node_id,
                    Constraint(
                        ConstraintSource.OPERATING_ENVELOPE,
                        amps,
                        ref,
                        True,
                        _PHASE_INDEX.get(envelope.phase),
                    ),
                )
            )
    return out


_PHASE_INDEX = {Phase.ONE: 0, Phase.TWO: 1, Phase.THREE: 2}


def _phase_current(envelope, voltage_v: float) -> float | None:
    """The envelope as amperes per phase, when it says something per phase: a capacity in A
    (on every phase, or on its one), or a per-phase value in W/kW (capacity_kw was converted
    as value x phases: a phase's share at the conversion's voltage)."""
    if envelope.unit == CapacityUnit.A:
        return float(envelope.capacity)
    if envelope.phase in PER_PHASE:
        phases = envelope.phases or 3
        volts = envelope.voltage_v or voltage_v
        return round(envelope.capacity_kw / phases * 1000.0 / volts, 3)
    return None


def enrich_binding(binding: dict[str, Any], node_limit) -> None:
    """The cycle binding enricher: a charger bound by an envelope names it (the smallest
    active one on that node), and says `peer_offline` when it is a fallback."""
    if node_limit is None or binding.get("limit_source") != ConstraintSource.OPERATING_ENVELOPE:
        return
    candidates = [
        c
        for c in node_limit.constraints
        if c.source == ConstraintSource.OPERATING_ENVELOPE and c.ref
    ]
    if not candidates:
        return
    binding_one = min(candidates, key=lambda c: (c.limit_kw, envelope_number(c.ref), c.ref))
    binding["envelope_id"] = str(binding_one.ref)
    if getattr(binding_one.ref, "peer_offline", False):
        binding["peer_offline"] = True


# -- lists and documents ------------------------------------------------------------------------


def _status_filter(status: str, at: datetime) -> Q:
    if status == EnvelopeStatus.WITHDRAWN:
        return Q(state=EnvelopeState.WITHDRAWN)
    if status == EnvelopeStatus.SUPERSEDED:
        return Q(state=EnvelopeState.SUPERSEDED)
    if status == EnvelopeStatus.PENDING:
        return Q(state=EnvelopeState.RECEIVED, valid_from__gt=at)
    if status == EnvelopeStatus.ACTIVE:
        return _in_window(at)
    return Q(state=EnvelopeState.RECEIVED, valid_until__lte=at)


def _base(microgrid) -> QuerySet[OperatingEnvelope]:
    return OperatingEnvelope.objects.filter(microgrid=microgrid).select_related(
        "microgrid", "peer", "message", "superseded_by", "split_from", "withdrawn_by"
    )


def envelope_list(
    microgrid, *, at: datetime, statuses: Iterable[str] = (), limit: int = ENVELOPE_LIMIT
) -> list[OperatingEnvelope]:
    """Envelopes, latest window first (one query)."""
    qs = _base(microgrid)
    statuses = list(statuses)
    if statuses:
        condition = Q()
        for status in statuses:
            condition |= _status_filter(status, at)
        qs = qs.filter(condition)
    return list(qs.order_by("-valid_from", "-number")[:limit])


def envelope_get(microgrid, envelope_id: str) -> OperatingEnvelope:
    envelope = _base(microgrid).filter(envelope_id=envelope_id).first()
    if envelope is None:
        raise DomainError(
            "ENVELOPE_NOT_FOUND",
            f"Microgrid {microgrid.microgrid_id!r} has no operating envelope {envelope_id!r}",
            {"microgrid_id": microgrid.microgrid_id, "envelope_id": envelope_id},
            status=404,
        )
    return envelope


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def envelope_dict(
    envelope: OperatingEnvelope, *, at: datetime, legacy: dict[tuple[str, str], dict]
) -> dict[str, Any]:
    """The API's shape of one envelope (spec 3.3) at instant `at`."""
    peer = envelope.peer
    message = envelope.message
    value = legacy.get(scope_key(envelope))
    return {
        "envelope_id": envelope.envelope_id,
        "microgrid_id": envelope.microgrid.microgrid_id,
        "scope": envelope.scope_dict(),
        "direction": envelope.direction,
        "forecast_type": envelope.forecast_type,
        "capacity": envelope.capacity,
        "unit": envelope.unit,
        "phase": envelope.phase,
        "capacity_kw": envelope.capacity_kw,
        "capacity_explanation": envelope.capacity_note or None,
        "conversion": (
            {"voltage_v": envelope.voltage_v, "phases": envelope.phases}
            if envelope.voltage_v is not None
            else None
        ),
        "valid_from": _iso(envelope.valid_from),
        "valid_until": _iso(envelope.valid_until),
        "state": envelope.state,
        "status": envelope_status(envelope, at),
        "enforcement": enforcement(envelope, peer, at),
        "peer_offline": peer.offline_at(at),
        "source": {
            "protocol": "OSCP",
            "version": "2.0",
            "message_type": message.message_type,
            "peer": peer.name,
            "group_id": envelope.group_id,
            "request_id": message.request_id,
            "correlation_id": message.correlation_id or None,
            "received_at": _iso(envelope.received_at),
            "block_index": envelope.block_index,
        },
        "superseded_by": envelope.superseded_by.envelope_id if envelope.superseded_by else None,
        "superseded_at": _iso(envelope.superseded_at),
        "split_from": envelope.split_from.envelope_id if envelope.split_from_id else None,
        "withdrawn_at": _iso(envelope.withdrawn_at),
        "withdrawn_by": envelope.withdrawn_by.get_username() if envelope.withdrawn_by else None,
        "withdraw_reason": envelope.withdraw_reason or None,
        "withdrawn_by_peer": envelope.withdrawn_by_message_id is not None,
        "legacy_circuit": (
            {
                "circuit_id": value["circuit_id"],
                "available_capacity_kw": value["available_capacity_kw"],
            }
            if value
            else None
        ),
    }


HISTORY_TYPES = {"+": "RECEIVED", "~": "CHANGED", "-": "DELETED"}


def envelope_history(envelope: OperatingEnvelope) -> list[dict[str, Any]]:
    """Every stored change of the envelope, oldest first (two queries)."""
    rows = list(
        envelope.history.select_related("history_user").order_by("history_date", "history_id")
    )
    ids = {r.superseded_by_id for r in rows if r.superseded_by_id}
    names = dict(
        OperatingEnvelope.objects.filter(pk__in=ids).values_list("pk", "envelope_id") if ids else []
    )
    out = []
    for row in rows:
        change = HISTORY_TYPES.get(row.history_type, row.history_type)
        if change == "CHANGED":
            change = row.state  # a stored change is a withdrawal or a supersede
        out.append(
            {
                "at": _iso(row.history_date),
                "change": change,
                "by": row.history_user.get_username() if row.history_user else None,
                "state": row.state,
                "superseded_by": names.get(row.superseded_by_id),
                "reason": row.history_change_reason
                or (row.withdraw_reason if row.state == EnvelopeState.WITHDRAWN else "")
                or None,
            }
        )
    return out


def envelope_detail(
    envelope: OperatingEnvelope, *, at: datetime, legacy: dict[tuple[str, str], dict]
) -> dict[str, Any]:
    """One envelope with what it superseded, its recorded transitions and its history."""
    out = envelope_dict(envelope, at=at, legacy=legacy)
    out["supersedes"] = list(
        envelope.supersedes.order_by("number").values_list("envelope_id", flat=True)
    )
    out["parts"] = list(envelope.parts.order_by("number").values_list("envelope_id", flat=True))
    out["transitions"] = [
        {"transition": t.transition, "at": _iso(t.at), "recorded_at": _iso(t.recorded_at)}
        for t in EnvelopeTransition.objects.filter(envelope=envelope).order_by("at", "pk")
    ]
    out["history"] = envelope_history(envelope)
    return out


def active_envelopes_card(microgrid) -> list[dict[str, Any]]:
    """The microgrid card's `active_envelopes`: every envelope ACTIVE now (one query)."""
    now = timezone.now()
    rows = (
        OperatingEnvelope.objects.filter(_in_window(now), microgrid=microgrid)
        .select_related("peer")
        .order_by("number")
    )
    return [
        {
            "envelope_id": e.envelope_id,
            "scope": e.scope_dict(),
            "direction": e.direction,
            "forecast_type": e.forecast_type,
            "capacity_kw": e.capacity_kw,
            "valid_from": _iso(e.valid_from),
            "valid_until": _iso(e.valid_until),
            "enforcement": enforcement(e, e.peer, now),
            "peer": e.peer.name,
            "peer_offline": e.peer.offline_at(now),
        }
        for e in rows
    ]


def microgrid_bindings(microgrid) -> list[OscpGroupBinding]:
    """The OSCP groups bound to this microgrid with their peers (one query)."""
    return list(
        OscpGroupBinding.objects.filter(microgrid=microgrid)
        .select_related("peer", "node")
        .order_by("peer__name", "group_id")
    )


def next_number(microgrid) -> int:
    return (
        OperatingEnvelope.objects.filter(microgrid=microgrid).aggregate(m=Max("number"))["m"] or 0
    ) + 1


def legacy_followers(microgrid) -> dict[tuple[str, str], dict[str, Any]]:
    """(scope_type, node_id) -> the legacy record that follows that scope's envelopes, as the
    apps above answer `scope_followers` (the legacy app, interim path)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for answer in collect(signals.scope_followers, microgrid=microgrid):
        for key, values in answer.items():
            out.setdefault(key, values)
    return out


def microgrid_outbound(microgrid, limit: int = 20) -> list[OscpOutbound]:
    """The latest messages sent to the peers whose groups are bound to this microgrid (one
    query)."""
    peers = OscpGroupBinding.objects.filter(microgrid=microgrid).values("peer_id")
    return list(
        OscpOutbound.objects.filter(peer_id__in=peers)
        .select_related("peer")
        .order_by("-created_at", "-pk")[:limit]
    )
