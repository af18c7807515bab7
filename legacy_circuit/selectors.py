"""Reads of legacy circuits: resolution of a circuit id, the TOU view, the usage report.

Resolution (spec 5): a circuit id resolves when exactly one active alias maps
it to an existing microgrid and an existing target: the microgrid's root
Microgrid Node for a MICROGRID alias (a microgrid without a topology has
nothing to balance or cap), the named node for a NODE alias, a CHARGER asset
for an ASSET alias. Every read here runs in a constant number of queries.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet

from legacy_circuit.choices import ALIAS_PROBLEM_LABELS, INACTIVE, AliasScope, ResolutionFailure
from legacy_circuit.filters import UsageFilter
from legacy_circuit.models import AliasUsage, CircuitAlias, LegacyCircuit
from microgrid.common.access import refusal_note
from microgrid.common.errors import DomainError
from microgrid.limits.choices import LimitScope
from microgrid.limits.selectors import policy_list
from microgrid.limits.validation import PolicySpec
from microgrid.topology.access import (
    all_microgrids_membership,
    microgrids_visible_to,
    sees_every_microgrid,
    visible_microgrid_ids_q,
    visible_microgrid_q,
)
from microgrid.topology.choices import AssetKind, NodeKind
from microgrid.topology.models import Asset, Microgrid, MicrogridNode

ENDPOINT_CIRCUIT = "/api/circuit/{circuit_id}"
ENDPOINT_REBALANCE = "/api/circuit/{circuit_id}/rebalance_load"
ENDPOINT_TOU = "/api/circuit/{circuit_id}/tou_limits"


@dataclass(frozen=True)
class Targets:
    """What exists in the microgrids some aliases name (two queries for any number of aliases).

    The one place that says what an alias's target is and whether it exists.
    """

    roots: dict[int, str]  # microgrid pk -> root node_id
    nodes: set[tuple[int, str]]  # (microgrid pk, node_id)
    chargers: dict[tuple[int, str], str]  # (microgrid pk, asset_id) -> node_id

    @classmethod
    def load(cls, microgrid_pks) -> Targets:
        pks = set(microgrid_pks)
        roots: dict[int, str] = {}
        nodes: set[tuple[int, str]] = set()
        chargers: dict[tuple[int, str], str] = {}
        if pks:
            for mg, node_id, parent, kind in MicrogridNode.objects.filter(
                microgrid_id__in=pks
            ).values_list("microgrid_id", "node_id", "parent_id", "kind"):
                nodes.add((mg, node_id))
                if parent is None and kind == NodeKind.GRID_CONNECTION:
                    roots.setdefault(mg, node_id)
            for mg, asset_id, node_id in Asset.objects.filter(
                microgrid_id__in=pks, kind=AssetKind.CHARGER
            ).values_list("microgrid_id", "asset_id", "node__node_id"):
                chargers[(mg, asset_id)] = node_id
        return cls(roots=roots, nodes=nodes, chargers=chargers)

    def exists(self, alias: CircuitAlias) -> bool:
        return self.node_of(alias) is not None

    def node_of(self, alias: CircuitAlias) -> str | None:
        """The Microgrid Node an alias's cycles and limits apply to, None when it is missing."""
        mg = alias.microgrid_id
        if alias.scope_type == AliasScope.MICROGRID:
            return self.roots.get(mg)
        if alias.scope_type == AliasScope.NODE:
            return alias.node_id if (mg, alias.node_id) in self.nodes else None
        return self.chargers.get((mg, alias.asset_id))


@dataclass
class Resolution:
    """The outcome of resolving one circuit id."""

    circuit_id: str
    circuit: LegacyCircuit | None
    active: list[CircuitAlias] = field(default_factory=list)
    alias: CircuitAlias | None = None  # the one active alias, when there is exactly one
    target_exists: bool = False
    charger_node_id: str | None = None  # for an ASSET alias: the charger's node

    @property
    def failure(self) -> str | None:
        if self.circuit is None:
            return ResolutionFailure.UNKNOWN_CIRCUIT
        if not self.active:
            return ResolutionFailure.NO_ALIAS
        if len(self.active) > 1:
            return ResolutionFailure.AMBIGUOUS
        if not self.target_exists:
            return ResolutionFailure.TARGET_MISSING
        return None

    @property
    def microgrid(self) -> Microgrid | None:
        return self.alias.microgrid if self.alias else None

    @property
    def alias_scope(self) -> dict[str, Any] | None:
        return self.alias.scope_dict() if self.alias else None

    @property
    def cycle_scope(self) -> dict[str, Any]:
        """The canonical scope of a cycle for this circuit (an ASSET alias: the charger's node)."""
        alias = self.alias
        if alias is None or alias.scope_type == AliasScope.MICROGRID:
            return {"type": "MICROGRID"}
        if alias.scope_type == AliasScope.NODE:
            return {"type": "NODE", "node_id": alias.node_id}
        return {"type": "NODE", "node_id": self.charger_node_id}

    def error(self) -> DomainError:
        reason = self.failure
        return DomainError(
            "CIRCUIT_ALIAS_NOT_RESOLVABLE",
            f"circuit {self.circuit_id!r} does not resolve to one canonical scope: "
            f"{ResolutionFailure(reason).label.lower()}",
            {"circuit_id": self.circuit_id, "reason": str(reason)},
            status=409,
        )


def circuits_visible_to(user) -> QuerySet[LegacyCircuit]:
    """The circuits `user` may call (spec 6, access): for support staff, trusted code and
    fleet-wide (all-microgrids) callers every circuit; for anyone else a circuit with at least
    one active alias, every active alias naming a microgrid of the user's memberships. A
    circuit that could resolve (or is ambiguous) into a microgrid outside them is not found,
    so it neither leaks nor steers another depot. One query with subqueries."""
    if sees_every_microgrid(user):
        return LegacyCircuit.objects.all()
    if not getattr(user, "is_authenticated", False):
        return LegacyCircuit.objects.none()
    visible = microgrids_visible_to(user).values("pk")
    active = CircuitAlias.objects.filter(circuit=OuterRef("pk"), active=True)
    return LegacyCircuit.objects.filter(
        Q(all_microgrids_membership(user))
        | (
            Q(Exists(active.filter(microgrid__in=visible)))
            & ~Q(Exists(active.exclude(microgrid__in=visible)))
        )
    )


def _visible_circuit(circuit_id: str, user, code: str) -> LegacyCircuit | None:
    """The circuit when `user` may call it; None when unknown or not visible (that refusal is
    noted for the access audit, with the microgrid its first active alias names)."""
    circuit = circuits_visible_to(user).filter(circuit_id=circuit_id).first()
    if circuit is None and not sees_every_microgrid(user):
        hidden = (
            CircuitAlias.objects.filter(circuit__circuit_id=circuit_id)
            .order_by("-active", "pk")
            .values_list("microgrid__microgrid_id", flat=True)
            .first()
        )
        if hidden is not None or LegacyCircuit.objects.filter(circuit_id=circuit_id).exists():
            refusal_note(code=code, circuit_id=circuit_id, microgrid_id=hidden or "")
    return circuit


def circuit_resolution(circuit_id: str, *, user) -> Resolution:
    """How a circuit id resolves for `user` (four queries; one when the circuit is unknown).

    A circuit the user may not call resolves as an unknown one (UNKNOWN_CIRCUIT)."""
    circuit = _visible_circuit(circuit_id, user, "CIRCUIT_ALIAS_NOT_RESOLVABLE")
    if circuit is None:
        return Resolution(circuit_id=circuit_id, circuit=None)
    active = list(
        CircuitAlias.objects.filter(circuit=circuit, active=True)
        .select_related("microgrid__depot")
        .order_by("pk")
    )
    resolution = Resolution(circuit_id=circuit_id, circuit=circuit, active=active)
    if len(active) == 1:
        alias = active[0]
        node_id = Targets.load([alias.microgrid_id]).node_of(alias)
        resolution.alias = alias
        resolution.target_exists = node_id is not None
        if alias.scope_type == AliasScope.ASSET:
            resolution.charger_node_id = node_id
    return resolution


def circuit_resolve(circuit_id: str, *, user) -> Resolution:
    """The resolution, or 409 CIRCUIT_ALIAS_NOT_RESOLVABLE with `details: {circuit_id, reason}`."""
    resolution = circuit_resolution(circuit_id, user=user)
    if resolution.failure is not None:
        raise resolution.error()
    return resolution


def tou_target(resolution: Resolution) -> Resolution:
    """The resolution of a circuit whose TOU limits are read or written, or the TOU refusal.

    More than one active alias is 422 TOU_MAPPING_AMBIGUOUS and an ASSET alias
    422 TOU_SCOPE_UNSUPPORTED (limits hold only for nodes and microgrids), both
    before the target is looked at; every other failure is the resolution's 409.
    """
    if resolution.circuit is not None and len(resolution.active) > 1:
        raise DomainError(
            "TOU_MAPPING_AMBIGUOUS",
            f"circuit {resolution.circuit_id!r} has {len(resolution.active)} active aliases; "
            "its TOU limits cannot be mapped to one target",
            {
                "circuit_id": resolution.circuit_id,
                "aliases": [
                    {"microgrid_id": a.microgrid.microgrid_id, "scope": a.scope_dict()}
                    for a in resolution.active
                ],
            },
            status=422,
        )
    alias = resolution.alias
    if alias is not None and alias.scope_type == AliasScope.ASSET:
        raise DomainError(
            "TOU_SCOPE_UNSUPPORTED",
            f"circuit {resolution.circuit_id!r} maps to a charger (ASSET scope); TOU limits "
            "hold only for a Microgrid Node or a whole microgrid",
            {
                "circuit_id": resolution.circuit_id,
                "microgrid_id": alias.microgrid.microgrid_id,
                "scope": alias.scope_dict(),
            },
            status=422,
        )
    if resolution.failure is not None:
        raise resolution.error()
    return resolution


def limit_target(resolution: Resolution) -> tuple[str, str | None]:
    """The (scope, node_id) of the limit policies a resolved MICROGRID or NODE alias maps to."""
    alias = resolution.alias
    if alias.scope_type == AliasScope.MICROGRID:
        return (LimitScope.MICROGRID, None)
    return (LimitScope.NODE, alias.node_id)


def tou_item(spec: PolicySpec) -> dict[str, Any]:
    """One legacy TOU limit (frozen shape and key order)."""
    schedule = spec.schedule
    return {
        "start": schedule.start_text,
        "end": schedule.end_text,
        "days": list(schedule.days),
        "limit_kw": spec.limit_kw,
    }


def tou_specs(microgrid: Microgrid, target: tuple[str, str | None]) -> list[PolicySpec]:
    """Every scheduled policy on the target, whatever its source, in the canonical list's order."""
    return [p for p in policy_list(microgrid) if p.target == target and p.schedule is not None]


def tou_document(resolution: Resolution) -> dict[str, Any]:
    """The body of GET /api/circuit/{id}/tou_limits."""
    specs = tou_specs(resolution.microgrid, limit_target(resolution))
    return {"circuit_id": resolution.circuit_id, "tou_limits": [tou_item(s) for s in specs]}


def circuit_get(circuit_id: str, *, user) -> LegacyCircuit:
    """The circuit, or 404 CIRCUIT_NOT_FOUND when it is unknown or `user` may not call it."""
    circuit = _visible_circuit(circuit_id, user, "CIRCUIT_NOT_FOUND")
    if circuit is None:
        raise DomainError(
            "CIRCUIT_NOT_FOUND",
            f"circuit {circuit_id!r} not found",
            {"circuit_id": circuit_id},
            status=404,
        )
    return circuit


def circuit_document(circuit: LegacyCircuit) -> dict[str, Any]:
    """The body of GET /api/circuit/{id} (frozen shape and key order)."""
    return {
        "circuit_id": circuit.circuit_id,
        "name": circuit.name,
        "available_capacity_kw": circuit.available_capacity_kw,
        "configured_capacity_kw": circuit.configured_capacity_kw,
    }


# --- The Manage pages and admin: every circuit with its aliases ------------------------------


@dataclass
class AliasRow:
    alias: CircuitAlias
    target_exists: bool
    problem: str | None  # why this alias does not resolve its circuit, None when it does

    @property
    def scope(self) -> dict[str, Any]:
        return self.alias.scope_dict()

    @property
    def problem_label(self) -> str:
        if self.alias.active and not self.target_exists:
            return ALIAS_PROBLEM_LABELS[ResolutionFailure.TARGET_MISSING]
        return ALIAS_PROBLEM_LABELS.get(self.problem, "")


@dataclass
class CircuitRow:
    circuit: LegacyCircuit
    aliases: list[AliasRow]
    failure: str | None
    resolved: AliasRow | None

    @property
    def failure_label(self) -> str:
        return ResolutionFailure(self.failure).label if self.failure else ""

    @property
    def active_count(self) -> int:
        return sum(1 for a in self.aliases if a.alias.active)

    @property
    def capacity_reduced(self) -> bool:
        return self.circuit.available_capacity_kw < self.circuit.configured_capacity_kw


def circuit_rows(circuits=None, *, user) -> list[CircuitRow]:
    """Each circuit `user` may see with its aliases (active first; an inactive alias into a
    microgrid outside the user's memberships is left out), whether it resolves and why not.

    Four queries whatever the number of circuits and aliases.
    """
    if circuits is None:
        circuits = circuits_visible_to(user).select_related("depot").order_by("circuit_id")
    circuits = list(circuits)
    aliases = list(
        CircuitAlias.objects.filter(circuit__in=circuits)
        .filter(visible_microgrid_q(user))
        .select_related("microgrid")
        .order_by("circuit_id", "-active", "pk")
    )
    targets = Targets.load(a.microgrid_id for a in aliases)
    by_circuit: dict[int, list[CircuitAlias]] = defaultdict(list)
    for alias in aliases:
        by_circuit[alias.circuit_id].append(alias)
    out = []
    for circuit in circuits:
        mine = by_circuit.get(circuit.pk, [])
        active = [a for a in mine if a.active]
        rows = []
        for alias in mine:
            exists = targets.exists(alias)
            if not alias.active:
                problem = INACTIVE
            elif len(active) > 1:
                problem = ResolutionFailure.AMBIGUOUS
            elif not exists:
                problem = ResolutionFailure.TARGET_MISSING
            else:
                problem = None
            rows.append(AliasRow(alias=alias, target_exists=exists, problem=problem))
        if not active:
            failure = ResolutionFailure.NO_ALIAS
        elif len(active) > 1:
            failure = ResolutionFailure.AMBIGUOUS
        elif not targets.exists(active[0]):
            failure = ResolutionFailure.TARGET_MISSING
        else:
            failure = None
        resolved = next((r for r in rows if r.alias.active), None) if failure is None else None
        out.append(CircuitRow(circuit=circuit, aliases=rows, failure=failure, resolved=resolved))
    return out


# --- The migration audit ----------------------------------------------------------------------


def usage_row(row: AliasUsage) -> dict[str, Any]:
    return {
        "circuit_id": row.circuit_id,
        "endpoint": row.endpoint,
        "method": row.method,
        "client": row.client or None,
        "status_code": row.status_code,
        "microgrid_id": row.microgrid_id or None,
        "scope": row.scope,
        "failure_code": row.failure_code or None,
        "failure_reason": row.failure_reason or None,
        "cycle_id": row.cycle_id or None,
        "at": _iso(row.at),
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def usage_summary(queryset) -> list[dict[str, Any]]:
    """Per client and circuit: calls, failures (status 400 and above), first and last use."""
    rows = (
        queryset.order_by()
        .values("client", "circuit_id")
        .annotate(
            calls=Count("pk"),
            failures=Count("pk", filter=Q(status_code__gte=400)),
            first_used_at=Min("at"),
            last_used_at=Max("at"),
        )
        .order_by("client", "circuit_id")
    )
    return [
        {
            "client": r["client"] or None,
            "circuit_id": r["circuit_id"],
            "calls": r["calls"],
            "failures": r["failures"],
            "first_used_at": _iso(r["first_used_at"]),
            "last_used_at": _iso(r["last_used_at"]),
        }
        for r in rows
    ]


def usage_report(params, *, user) -> dict[str, Any]:
    """The body of GET /api/legacy/alias-usage/: the newest rows and the summary (two queries),
    of the calls into the microgrids `user` may see; `params` are the `UsageFilter`
    parameters (FIELD_INVALID when one is bad or unknown)."""
    # A call that resolved no microgrid of the caller's (unresolved, or refused) is for
    # support staff only: its circuit may belong to anyone.
    visible = AliasUsage.objects.filter(visible_microgrid_ids_q(user))
    filters = UsageFilter(params, queryset=visible)
    queryset = filters.filtered()
    rows = list(filters.page(queryset.order_by("-at", "-pk")))
    return {
        "filters": {
            "circuit_id": filters.value("circuit_id"),
            "client": filters.value("client"),
            "since": _iso(filters.value("since")),
        },
        "usage": [usage_row(r) for r in rows],
        "summary": usage_summary(queryset),
    }
