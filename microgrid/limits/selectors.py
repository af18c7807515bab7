"""Reads of limit policies and the effective limit of every Microgrid Node at an instant.

`effective_limits` is the interface the balancing engine and the envelopes
app build on: for a microgrid at time t it gives each node's effective limit,
its `limit_source` and every constraint that applies (spec 3.2), reading the
whole policy set in one query. Reads take the clock from their caller, so
they never depend on the schedule task having run.

Other apps add constraints by answering `microgrid.limits.signals.limit_constraints` (the
envelopes app: OPERATING_ENVELOPE constraints, MICROGRID scope on the root).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

from microgrid.common.errors import DomainError
from microgrid.common.prepared import PreparedRead
from microgrid.common.signals import collect
from microgrid.limits import signals
from microgrid.limits.choices import ConstraintSource, LimitScope
from microgrid.limits.models import LimitPolicy, schedule_from_columns
from microgrid.limits.schedules import DAY_INDEX, is_active
from microgrid.limits.validation import NodeFacts, PolicySpec
from microgrid.topology.models import MicrogridNode
from microgrid.topology.selectors import node_rows
from microgrid.topology.tree import root_id

log = logging.getLogger(__name__)

# The spec's tie order: when several constraints give the same minimum, the
# first of these is the node's limit_source.
TIE_ORDER = (
    ConstraintSource.OPERATING_ENVELOPE,
    ConstraintSource.MICROGRID_LIMIT,
    ConstraintSource.TOU_LIMIT,
    ConstraintSource.NODE_LIMIT,
    ConstraintSource.PHYSICAL_RATING,
)
_RANK = {str(source): i for i, source in enumerate(TIE_ORDER)}
POLICY_SOURCES = frozenset(
    {ConstraintSource.MICROGRID_LIMIT, ConstraintSource.TOU_LIMIT, ConstraintSource.NODE_LIMIT}
)


@dataclass(frozen=True)
class Constraint:
    source: str  # "PHYSICAL_RATING" | "NODE_LIMIT" | "TOU_LIMIT" | "MICROGRID_LIMIT" | "OPERATING_ENVELOPE"
    limit_kw: float
    ref: str | None  # policy_id or envelope_id or None for the rating
    # A current constraint (issue 19): `limit_kw` then holds amperes per phase, on every phase
    # of the node, or on one (`phase` 0, 1, 2: a per-phase operating envelope).
    amps: bool = False
    phase: int | None = None


@dataclass(frozen=True)
class CurrentLimit:
    """A node's per-phase current limit (A, the same on each of its phases) and where it
    comes from; the same sources and tie order as the kW limit."""

    limit_a: float  # the lowest of its phases
    source: str
    active_policy_id: str | None
    constraints: tuple[Constraint, ...]  # every current constraint (limit_kw holds the A)
    # Per phase (L1, L2, L3) when they differ (a per-phase envelope), with their sources.
    phase_limits_a: tuple[float, ...] | None = None
    phase_sources: tuple[str, ...] | None = None


@dataclass(frozen=True)
class NodeLimit:
    node_id: str
    effective_limit_kw: float
    limit_source: str
    active_policy_id: str | None  # the policy giving the min, if a policy does
    active_schedule: dict | None  # that policy's schedule when it is a TOU cap
    envelope_ids: tuple[str, ...]  # ACTIVE envelopes on this node
    constraints: tuple[Constraint, ...]  # every constraint that applies to the node
    current: CurrentLimit | None = None  # None: nothing limits the node's phase currents


def depot_zone(microgrid) -> ZoneInfo:
    """The depot's time zone; UTC (logged) if the stored name is not a zone."""
    name = microgrid.depot.timezone or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("depot %s has an unknown time zone %r: using UTC", microgrid.depot_id, name)
        return ZoneInfo("UTC")


_policy_rows = PreparedRead(
    lambda microgrid: (
        LimitPolicy.objects.filter(microgrid_id=microgrid)
        .order_by("id")
        .values(
            "policy_id",
            "scope",
            "node__node_id",
            "limit_kw",
            "limit_a",
            "schedule_days",
            "schedule_start",
            "schedule_end",
            "source",
            "updated_at",
        )
    ),
    microgrid=int,
    batch_by="microgrid",  # scheduled cycles read it for a batch of microgrids at once
)


def policy_specs(microgrid) -> list[PolicySpec]:
    """Every policy of a microgrid, in one query, by policy number (every cycle reads them:
    a prepared read)."""
    rows = _policy_rows(microgrid=microgrid.pk)
    return [
        PolicySpec(
            scope=r["scope"],
            node_id=r["node__node_id"],
            limit_kw=r["limit_kw"],
            limit_a=r["limit_a"],
            schedule=schedule_from_columns(
                r["schedule_days"], r["schedule_start"], r["schedule_end"]
            ),
            source=r["source"],
            policy_id=r["policy_id"],
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


def node_facts(microgrid) -> NodeFacts:
    """Ratings and the root, in one query."""
    rows = list(
        MicrogridNode.objects.filter(microgrid=microgrid).values(
            "node_id", "physical_rating_kw", "rating_a", "parent_id", "kind"
        )
    )
    ratings = {row["node_id"]: row["physical_rating_kw"] for row in rows}
    ratings_a = {row["node_id"]: row["rating_a"] for row in rows}
    return NodeFacts(ratings=ratings, root_id=root_id(rows), ratings_a=ratings_a)


def _active_cap(
    policies: Iterable[PolicySpec], at: datetime, zone: ZoneInfo, *, schedules: bool
) -> tuple[PolicySpec | None, bool]:
    """The policy that caps a target at `at`: an active TOU cap, else the non-scheduled one.

    Scheduled policies of one target never overlap; should stored data say
    otherwise, the smallest active cap wins (the safe choice).
    """
    unscheduled = None
    active: list[PolicySpec] = []
    for p in policies:
        if p.schedule is None:
            unscheduled = unscheduled or p
        elif schedules and is_active(p.schedule, at, zone):
            active.append(p)
    if active:
        return min(active, key=lambda p: (p.limit_kw, _number(p.policy_id))), True
    return unscheduled, False


def evaluate(
    nodes: list[dict],
    policies: list[PolicySpec],
    at: datetime,
    zone: ZoneInfo,
    extra: Iterable[tuple[str, Constraint]] = (),
    *,
    schedules: bool = True,
) -> dict[str, NodeLimit]:
    """The effective limits (pure). `schedules=False` gives what applies when no schedule is active."""
    by_target: dict[tuple[str, str | None], list[PolicySpec]] = {}
    for p in policies:
        by_target.setdefault(p.target, []).append(p)
    by_id = {p.policy_id: p for p in policies if p.policy_id}
    extra_by_node: dict[str, list[Constraint]] = {}
    for node_id, constraint in extra:
        extra_by_node.setdefault(node_id, []).append(constraint)
    root = root_id(nodes)

    out: dict[str, NodeLimit] = {}
    for node in nodes:
        node_id = node["node_id"]
        constraints = [
            Constraint(ConstraintSource.PHYSICAL_RATING, node["physical_rating_kw"], None)
        ]
        # Per-phase currents (A): the node's rating_a and the limit_a of the caps in force.
        amps: list[Constraint] = []
        if node.get("rating_a") is not None:
            amps.append(Constraint(ConstraintSource.PHYSICAL_RATING, node["rating_a"], None))
        cap, scheduled = _active_cap(
            by_target.get((LimitScope.NODE, node_id), ()), at, zone, schedules=schedules
        )
        if cap is not None:
            source = ConstraintSource.TOU_LIMIT if scheduled else ConstraintSource.NODE_LIMIT
            constraints.append(Constraint(source, cap.limit_kw, cap.policy_id))
            if cap.limit_a is not None:
                amps.append(Constraint(source, cap.limit_a, cap.policy_id))
        if node_id == root:
            cap, scheduled = _active_cap(
                by_target.get((LimitScope.MICROGRID, None), ()), at, zone, schedules=schedules
            )
            if cap is not None:
                source = (
                    ConstraintSource.TOU_LIMIT if scheduled else ConstraintSource.MICROGRID_LIMIT
                )
                constraints.append(Constraint(source, cap.limit_kw, cap.policy_id))
                if cap.limit_a is not None:
                    amps.append(Constraint(source, cap.limit_a, cap.policy_id))
        for c in extra_by_node.get(node_id, ()):
            (amps if c.amps else constraints).append(c)
        constraints = [Constraint(str(c.source), float(c.limit_kw), c.ref) for c in constraints]
        constraints.sort(
            key=lambda c: (_RANK.get(c.source, len(_RANK)), c.limit_kw, _number(c.ref))
        )
        winner = min(
            constraints, key=lambda c: (c.limit_kw, _RANK.get(c.source, len(_RANK)), _number(c.ref))
        )
        policy = by_id.get(winner.ref) if winner.source in POLICY_SOURCES else None
        out[node_id] = NodeLimit(
            node_id=node_id,
            effective_limit_kw=winner.limit_kw,
            limit_source=winner.source,
            active_policy_id=policy.policy_id if policy else None,
            active_schedule=(
                policy.schedule.as_dict()
                if policy and policy.schedule and winner.source == ConstraintSource.TOU_LIMIT
                else None
            ),
            envelope_ids=tuple(
                sorted(
                    c.ref
                    for c in constraints
                    if c.source == ConstraintSource.OPERATING_ENVELOPE and c.ref
                )
            ),
            constraints=tuple(constraints),
            current=_current_limit(amps, by_id, int(node.get("phases") or 3)),
        )
    return out


def _current_limit(
    amps: list[Constraint], by_id: dict[str, PolicySpec], phases: int = 3
) -> CurrentLimit | None:
    if not amps:
        return None
    amps = [
        Constraint(str(c.source), float(c.limit_kw), c.ref, True, c.phase)
        for c in amps
        if c.phase is None or c.phase < phases
    ]
    if not amps:
        return None

    def key(c: Constraint) -> tuple:
        return (c.limit_kw, _RANK.get(c.source, len(_RANK)), _number(c.ref))

    amps.sort(key=lambda c: (_RANK.get(c.source, len(_RANK)), c.limit_kw, _number(c.ref)))
    winner = min(amps, key=key)
    policy = by_id.get(winner.ref) if winner.source in POLICY_SOURCES else None
    phase_limits = phase_sources = None
    if any(c.phase is not None for c in amps):
        # per phase: the smallest of the all-phase constraints and that phase's own
        per = []
        for p in range(3):
            found = [c for c in amps if c.phase is None or c.phase == p]
            per.append(min(found, key=key) if found and p < phases else None)
        phase_limits = tuple(float("inf") if c is None else c.limit_kw for c in per)
        phase_sources = tuple("" if c is None else c.source for c in per)
    return CurrentLimit(
        limit_a=winner.limit_kw,
        source=winner.source,
        active_policy_id=policy.policy_id if policy else None,
        constraints=tuple(amps),
        phase_limits_a=phase_limits,
        phase_sources=phase_sources,
    )


def effective_limits(
    microgrid, at: datetime, *, nodes: list[dict] | None = None
) -> dict[str, NodeLimit]:
    """Every node's effective limit at `at`, keyed by node_id in tree order.

    `nodes` = topology.selectors.node_rows(microgrid) if the caller already has
    them. Two queries plus one per registered constraint provider.
    """
    if nodes is None:
        nodes = node_rows(microgrid)
    return limits_for(microgrid, at, nodes=nodes, policies=policy_specs(microgrid))


def limits_for(
    microgrid,
    at: datetime,
    *,
    nodes: list[dict],
    policies: list[PolicySpec],
    schedules: bool = True,
) -> dict[str, NodeLimit]:
    """`effective_limits` on rows the caller already holds (the other apps' constraints are
    still collected)."""
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime")
    extra: list[tuple[str, Constraint]] = []
    for answer in collect(signals.limit_constraints, microgrid=microgrid, at=at, nodes=nodes):
        extra.extend(answer)
    return evaluate(nodes, policies, at, depot_zone(microgrid), extra, schedules=schedules)


def node_limit_dict(limit: NodeLimit) -> dict[str, Any]:
    return {
        "node_id": limit.node_id,
        "effective_limit_kw": limit.effective_limit_kw,
        "limit_source": limit.limit_source,
        "active_policy_id": limit.active_policy_id,
        "active_schedule": limit.active_schedule,
        "envelope_ids": list(limit.envelope_ids),
        "effective_limit_a": limit.current.limit_a if limit.current else None,
        "limit_a_source": limit.current.source if limit.current else None,
        "active_policy_id_a": limit.current.active_policy_id if limit.current else None,
        **(
            {"phase_limits_a": _phase_limits(limit.current)}
            if limit.current and limit.current.phase_limits_a
            else {}
        ),
    }


def _phase_limits(current: CurrentLimit) -> list[dict[str, Any]]:
    return [
        {"phase": f"L{p + 1}", "limit_a": value, "limit_source": source}
        for p, (value, source) in enumerate(
            zip(current.phase_limits_a or (), current.phase_sources or (), strict=True)
        )
        if value != float("inf")
    ]


def active_limits_document(microgrid, at: datetime) -> dict[str, Any]:
    """The body of GET .../limits/active/: the microgrid's figures are the root node's."""
    limits = effective_limits(microgrid, at)
    root = next(iter(limits.values()), None)
    return {
        "at": at.astimezone(UTC).isoformat(),
        "microgrid": {
            "effective_limit_kw": root.effective_limit_kw if root else None,
            "limit_source": root.limit_source if root else None,
            "active_policy_id": root.active_policy_id if root else None,
        },
        "nodes": [node_limit_dict(limit) for limit in limits.values()],
    }


def policy_dict(spec: PolicySpec) -> dict[str, Any]:
    """The API's shape of a policy."""
    return {
        "policy_id": spec.policy_id,
        "scope": spec.scope,
        "node_id": spec.node_id,
        "limit_kw": spec.limit_kw,
        "limit_a": spec.limit_a,
        "schedule": spec.schedule.as_dict() if spec.schedule else None,
        "source": spec.source,
        "updated_at": spec.updated_at.isoformat() if spec.updated_at else None,
    }


def policy_sort_key(order: dict[str, int]) -> Callable[[PolicySpec], tuple]:
    """Microgrid limits first, then by node in tree order; per target the non-scheduled cap
    first, then schedules by their first window of the week; then policy number."""

    def key(p: PolicySpec) -> tuple:
        target = -1 if p.scope == LimitScope.MICROGRID else order.get(p.node_id, len(order))
        when = (-1, -1) if p.schedule is None else (DAY_INDEX[p.schedule.days[0]], p.schedule.start)
        return (target, p.node_id or "", when, _number(p.policy_id))

    return key


def _number(policy_id: str | None) -> tuple[int, str]:
    text = policy_id or ""
    digits = text.rsplit("-", 1)[-1]
    return (int(digits), text) if digits.isdigit() else (0, text)


def policy_list(microgrid, *, nodes: list[dict] | None = None) -> list[PolicySpec]:
    """Every policy, in the order the API and the Manage page show them (two queries)."""
    if nodes is None:
        nodes = node_rows(microgrid)
    order = {n["node_id"]: i for i, n in enumerate(nodes)}
    return sorted(policy_specs(microgrid), key=policy_sort_key(order))


def policy_get(microgrid, policy_id: str) -> LimitPolicy:
    try:
        return LimitPolicy.objects.select_related("node", "microgrid__depot").get(
            microgrid=microgrid, policy_id=policy_id
        )
    except LimitPolicy.DoesNotExist:
        raise DomainError(
            "LIMIT_NOT_FOUND",
            f"Microgrid {microgrid.microgrid_id!r} has no limit policy {policy_id!r}",
            {"microgrid_id": microgrid.microgrid_id, "policy_id": policy_id},
            status=404,
        ) from None


def spec_of(policy: LimitPolicy) -> PolicySpec:
    return PolicySpec(
        scope=policy.scope,
        node_id=policy.node.node_id if policy.node_id else None,
        limit_kw=policy.limit_kw,
        limit_a=policy.limit_a,
        schedule=policy.schedule,
        source=policy.source,
        policy_id=policy.policy_id,
        updated_at=policy.updated_at,
    )


def limits_card(microgrid) -> dict[str, Any]:
    """The microgrid card's limits section: the root's effective limit now, and the policy count."""
    now = timezone.now()
    policies = policy_specs(microgrid)
    limits = limits_for(microgrid, now, nodes=node_rows(microgrid), policies=policies)
    root = next(iter(limits.values()), None)
    return {
        "at": now.astimezone(UTC).isoformat(),
        "effective_limit_kw": root.effective_limit_kw if root else None,
        "limit_source": root.limit_source if root else None,
        "active_policy_id": root.active_policy_id if root else None,
        "policy_count": len(policies),
    }
