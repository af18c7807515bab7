"""Reads of capability bindings and their status, in a constant number of queries.

The latest status of a binding is its event with the greatest
(`observed_at`, `event_ref`) (spec 3.4): found for every binding at once by
one query for the events at each binding's greatest `observed_at`, with the
`event_ref` tie broken in Python so that the order is the same on every
database (code point order, not a collation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from microgrid.capabilities.choices import CapabilityState, CapabilityType, ScopeType
from microgrid.capabilities.models import CapabilityBinding, CapabilityStatusEvent
from microgrid.capabilities.scopes import Scope
from microgrid.common.errors import DomainError
from microgrid.common.prepared import PreparedRead
from microgrid.telemetry.selectors import freshness
from microgrid.topology.selectors import node_rows
from microgrid.topology.tree import ancestors_map, root_id

EVENT_HISTORY_LIMIT = 200
_TYPE_RANK = {t: i for i, t in enumerate(CapabilityType.values)}


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


@dataclass
class NodeFacts:
    """The microgrid's Microgrid Nodes as the capability rules need them (one query)."""

    pairs: list[tuple[str, str | None]]
    names: dict[str, str]
    position: dict[str, int]  # tree order
    root_id: str | None

    def ancestors(self) -> dict[str, list[str]]:
        return ancestors_map(self.pairs)


def node_facts(microgrid) -> NodeFacts:
    rows = node_rows(microgrid)
    return NodeFacts(
        pairs=[(r["node_id"], r["parent_id"]) for r in rows],
        names={r["node_id"]: r["name"] for r in rows},
        position={r["node_id"]: i for i, r in enumerate(rows)},
        root_id=root_id(rows),
    )


def latest_events(binding_pks: Iterable[int]) -> dict[int, CapabilityStatusEvent]:
    """binding pk -> its latest event, for every binding that has one (one query)."""
    pks = list(binding_pks)
    if not pks:
        return {}
    newest = (
        CapabilityStatusEvent.objects.filter(binding=OuterRef("binding"))
        .order_by("-observed_at")
        .values("observed_at")[:1]
    )
    out: dict[int, CapabilityStatusEvent] = {}
    for event in CapabilityStatusEvent.objects.filter(
        binding_id__in=pks, observed_at=Subquery(newest)
    ):
        held = out.get(event.binding_id)
        if held is None or event.event_ref > held.event_ref:
            out[event.binding_id] = event
    return out


def status_dict(event: CapabilityStatusEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "state": event.state,
        "observed_at": iso(event.observed_at),
        "event_ref": event.event_ref,
    }


def binding_dict(
    binding: CapabilityBinding, latest: CapabilityStatusEvent | None
) -> dict[str, Any]:
    """The spec's shape of one binding (GET .../capabilities/ and every binding answer)."""
    return {
        "binding_id": binding.binding_id,
        "capability_type": binding.capability_type,
        "scope": Scope.of(binding).to_dict(),
        "source_device_id": binding.source_device_id,
        "active": binding.active,
        "created_at": iso(binding.created_at),
        "released_at": iso(binding.released_at),
        "latest_status": status_dict(latest),
    }


def event_dict(event: CapabilityStatusEvent, binding: CapabilityBinding) -> dict[str, Any]:
    return {
        "binding_id": binding.binding_id,
        "capability_type": binding.capability_type,
        "scope": Scope.of(binding).to_dict(),
        "source_device_id": binding.source_device_id,
        "event_ref": event.event_ref,
        "state": event.state,
        "observed_at": iso(event.observed_at),
        "received_at": iso(event.received_at),
        "detail": event.detail,
    }


def binding_answer(binding: CapabilityBinding) -> dict[str, Any]:
    """One binding with its latest status, read fresh (two queries)."""
    return binding_dict(binding, latest_events([binding.pk]).get(binding.pk))


def binding_get(microgrid, binding_id: str) -> CapabilityBinding:
    try:
        return CapabilityBinding.objects.get(microgrid=microgrid, binding_id=binding_id)
    except CapabilityBinding.DoesNotExist:
        raise DomainError(
            "BINDING_NOT_FOUND",
            f"Capability binding {binding_id!r} not found in microgrid {microgrid.microgrid_id!r}",
            {"microgrid_id": microgrid.microgrid_id, "binding_id": binding_id},
            status=404,
        ) from None


def _sort_key(binding: CapabilityBinding, facts: NodeFacts) -> tuple:
    """Active first: by capability type, MICROGRID before nodes, nodes in tree order.
    Then the ended ones, the most recently ended first."""
    if binding.active:
        place = (
            -1
            if binding.scope_type == ScopeType.MICROGRID
            else facts.position.get(binding.node_id or "", len(facts.position))
        )
        return (
            0,
            _TYPE_RANK.get(binding.capability_type, 99),
            place,
            binding.node_id or "",
            binding.seq,
        )
    return (1, -binding.released_at.timestamp(), -binding.seq)


@dataclass
class BindingView:
    """A binding with what the pages and the card show beside it."""

    binding: CapabilityBinding
    latest: CapabilityStatusEvent | None
    scope_label: str
    node_name: str | None
    status_fresh: bool  # the latest status is within the microgrid's staleness threshold now
    external_control: bool  # the cycle now leaves this scope to the source (LOAD_MANAGEMENT)

    def as_dict(self) -> dict[str, Any]:
        return binding_dict(self.binding, self.latest)


def binding_views(
    microgrid, *, active_only: bool = False, now: datetime | None = None
) -> tuple[list[BindingView], NodeFacts]:
    """Every binding (or the active ones) in display order, with scope labels (three queries)."""
    now = now or timezone.now()
    qs = CapabilityBinding.objects.filter(microgrid=microgrid).select_related("transferred_from")
    if active_only:
        qs = qs.filter(active=True)
    bindings = list(qs)
    facts = node_facts(microgrid)
    latest = latest_events(b.pk for b in bindings)
    bindings.sort(key=lambda b: _sort_key(b, facts))
    views = []
    for b in bindings:
        event = latest.get(b.pk)
        fresh = (
            event is not None
            and freshness(event.observed_at, now, microgrid.telemetry_stale_after_s) == "FRESH"
        )
        views.append(
            BindingView(
                binding=b,
                latest=event,
                scope_label=Scope.of(b).label(facts.names),
                node_name=facts.names.get(b.node_id or ""),
                status_fresh=fresh,
                external_control=b.active
                and b.capability_type == CapabilityType.LOAD_MANAGEMENT
                and fresh
                and event.state == CapabilityState.AVAILABLE
                and (b.scope_type == ScopeType.NODE or facts.root_id is not None),
            )
        )
    return views, facts


def capabilities_document(microgrid) -> dict[str, Any]:
    """GET .../capabilities/: every binding, active first, each with its latest status."""
    views, _ = binding_views(microgrid)
    return {"bindings": [v.as_dict() for v in views]}


def capabilities_card(microgrid) -> dict[str, Any]:
    """The card's section: the current status per (capability type, scope), i.e. every
    active binding, each labelled with its target scope."""
    views, _ = binding_views(microgrid, active_only=True)
    released = CapabilityBinding.objects.filter(microgrid=microgrid, active=False).count()
    return {
        "bindings": [
            {
                **v.as_dict(),
                "scope_label": v.scope_label,
                "status_fresh": v.status_fresh,
                "external_control": v.external_control,
            }
            for v in views
        ],
        "ended_binding_count": released,
    }


def card_page_context(microgrid) -> dict[str, Any]:
    views, _ = binding_views(microgrid, active_only=True)
    return {"microgrid": microgrid, "views": views}


def event_history(
    microgrid, *, binding_id: str | None = None, limit: int = EVENT_HISTORY_LIMIT
) -> tuple[list[CapabilityStatusEvent], int]:
    """The newest status events (by observed_at, event_ref) and how many there are."""
    qs = CapabilityStatusEvent.objects.filter(microgrid=microgrid)
    if binding_id:
        qs = qs.filter(binding__binding_id=binding_id)
    total = qs.count()
    rows = list(qs.select_related("binding").order_by("-observed_at", "-event_ref")[:limit])
    return rows, total


_load_management_bindings = PreparedRead(
    lambda microgrid: CapabilityBinding.objects.filter(
        microgrid_id=microgrid, active=True, capability_type=CapabilityType.LOAD_MANAGEMENT
    ).order_by(),  # sorted by seq below
    microgrid=int,
    batch_by="microgrid",  # scheduled cycles read it for a batch of microgrids at once
)


def external_control(microgrid, now: datetime) -> dict[str, dict[str, Any]]:
    """The balancing provider (spec 3.4): node_id -> the binding that controls its subtree.

    A node is under external control when an active LOAD_MANAGEMENT binding
    scopes it (a MICROGRID binding: the root) and that binding's latest status
    is AVAILABLE and not older than the microgrid's `telemetry_stale_after_s`
    at the cycle's `now`. UNAVAILABLE, DEGRADED, no status, or a stale one:
    the product keeps control.
    """
    bindings = _load_management_bindings(microgrid=microgrid.pk)
    if not bindings:
        return {}
    latest = latest_events(b.pk for b in bindings)
    root_id = None
    if any(b.scope_type == ScopeType.MICROGRID for b in bindings):
        root_id = node_facts(microgrid).root_id
    out: dict[str, dict[str, Any]] = {}
    for b in sorted(bindings, key=lambda b: b.seq):
        event = latest.get(b.pk)
        if event is None or event.state != CapabilityState.AVAILABLE:
            continue
        if freshness(event.observed_at, now, microgrid.telemetry_stale_after_s) != "FRESH":
            continue
        node_id = root_id if b.scope_type == ScopeType.MICROGRID else b.node_id
        if node_id is None:
            continue  # a MICROGRID binding on a microgrid without a root: nothing to control
        out[node_id] = {
            "binding_id": b.binding_id,
            "source_device_id": b.source_device_id,
            "capability_type": b.capability_type,
            "scope": Scope.of(b).to_dict(),
            "state": event.state,
            "observed_at": iso(event.observed_at),
        }
    return out
