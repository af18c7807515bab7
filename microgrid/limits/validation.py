"""The one validator of limit policies, used by the API, Manage pages, admin and the loader.

Pure: the fields of one policy are checked by its serializer
(`limits.api.serializers`); `check_rules` checks the clean policy against the Microgrid Nodes (existence, the physical rating
guardrail) and the other policies of the microgrid (one non-scheduled cap per
target, no overlapping schedules per target). Services add the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from microgrid.common.errors import DomainError, ErrorItem, sort_errors
from microgrid.limits.choices import LimitScope
from microgrid.limits.schedules import (
    Schedule,
    schedules_overlap,
)


@dataclass(frozen=True)
class PolicySpec:
    """A policy's canonical values (what the API shows, minus bookkeeping)."""

    scope: str
    node_id: str | None  # None for MICROGRID
    limit_kw: float
    schedule: Schedule | None
    source: str
    limit_a: float | None = None  # per-phase current cap, on top of limit_kw
    policy_id: str | None = None
    updated_at: datetime | None = None

    @property
    def target(self) -> tuple[str, str | None]:
        return (self.scope, self.node_id)

    @property
    def values(self) -> tuple:
        """What makes two policies the same policy (ids and times aside)."""
        return (self.scope, self.node_id, self.limit_kw, self.limit_a, self.schedule, self.source)

    def fields(self) -> dict[str, Any]:
        """The policy's values as the services' keyword arguments."""
        return {
            "scope": self.scope,
            "node_id": self.node_id,
            "limit_kw": self.limit_kw,
            "limit_a": self.limit_a,
            "schedule": self.schedule,
            "source": self.source,
        }

    def with_id(self, policy_id: str | None) -> PolicySpec:
        return replace(self, policy_id=policy_id)

    def label(self) -> str:
        if self.scope == LimitScope.MICROGRID:
            return "Microgrid limit"
        return f"Node Limit on Microgrid Node {self.node_id!r}"


@dataclass(frozen=True)
class NodeFacts:
    """What the rules need to know of a topology: ratings (None = unknown) and the root."""

    ratings: Mapping[str, float | None]
    root_id: str | None
    ratings_a: Mapping[str, float | None] = field(default_factory=dict)  # per phase, A


def check_rules(
    spec: PolicySpec, facts: NodeFacts, others: Iterable[PolicySpec], *, prefix: str = ""
) -> tuple[list[ErrorItem], list[ErrorItem]]:
    """(422 problems, 409 conflicts) of one policy among the microgrid's other policies."""
    errors: list[ErrorItem] = []
    conflicts: list[ErrorItem] = []
    if spec.scope == LimitScope.NODE:
        if spec.node_id not in facts.ratings:
            errors.append(
                ErrorItem(
                    "NODE_NOT_FOUND",
                    f"{prefix}node_id names Microgrid Node {spec.node_id!r}, which is not in this microgrid",
                    node_id=spec.node_id,
                    field=prefix + "node_id",
                    details={"node_id": spec.node_id},
                )
            )
            return errors, conflicts
        rated_node = spec.node_id
    else:
        if facts.root_id is None:
            errors.append(
                ErrorItem(
                    "NODE_NOT_FOUND",
                    f"{prefix}a Microgrid limit needs a root Microgrid Node (GRID_CONNECTION); "
                    "this microgrid has none yet",
                    field=prefix + "scope",
                    details={"node_id": None},
                )
            )
            return errors, conflicts
        rated_node = facts.root_id

    rating = facts.ratings.get(rated_node)
    if rating is not None and spec.limit_kw > rating:
        what = "Node Limit" if spec.scope == LimitScope.NODE else "Microgrid limit"
        errors.append(
            ErrorItem(
                "LIMIT_EXCEEDS_PHYSICAL_RATING",
                f"{what} {spec.limit_kw:g} kW exceeds the physical rating {rating:g} kW "
                f"of Microgrid Node {rated_node!r} (field {prefix}limit_kw)",
                node_id=rated_node,
                field=prefix + "limit_kw",
                details={
                    "node_id": rated_node,
                    "field": "limit_kw",
                    "limit_kw": spec.limit_kw,
                    "physical_rating_kw": rating,
                },
            )
        )

    rating_a = facts.ratings_a.get(rated_node)
    if rating_a is not None and spec.limit_a is not None and spec.limit_a > rating_a:
        what = "Node Limit" if spec.scope == LimitScope.NODE else "Microgrid limit"
        errors.append(
            ErrorItem(
                "LIMIT_EXCEEDS_PHYSICAL_RATING",
                f"{what} {spec.limit_a:g} A per phase exceeds the rating {rating_a:g} A per "
                f"phase of Microgrid Node {rated_node!r} (field {prefix}limit_a)",
                node_id=rated_node,
                field=prefix + "limit_a",
                details={
                    "node_id": rated_node,
                    "field": "limit_a",
                    "limit_a": spec.limit_a,
                    "rating_a": rating_a,
                },
            )
        )

    for other in others:
        if other.target != spec.target or (spec.policy_id and other.policy_id == spec.policy_id):
            continue
        if spec.schedule is None and other.schedule is None:
            conflicts.append(
                ErrorItem(
                    "LIMIT_ALREADY_EXISTS",
                    f"{spec.label()} already has a non-scheduled cap"
                    + (f" ({other.policy_id})" if other.policy_id else "")
                    + "; update that one or add a schedule",
                    node_id=spec.node_id,
                    field=prefix + "schedule",
                    details=_target_details(spec, other),
                )
            )
        elif (
            spec.schedule is not None
            and other.schedule is not None
            and schedules_overlap(spec.schedule, other.schedule)
        ):
            errors.append(
                ErrorItem(
                    "LIMIT_SCHEDULE_OVERLAP",
                    f"the schedule {spec.schedule.describe()} overlaps "
                    + (f"{other.policy_id}: " if other.policy_id else "")
                    + f"{other.schedule.describe()} on the same target ({spec.label()})",
                    node_id=spec.node_id,
                    field=prefix + "schedule",
                    details={
                        **_target_details(spec, other),
                        "schedule": other.schedule.as_dict(),
                    },
                )
            )
    return errors, conflicts


def _target_details(spec: PolicySpec, other: PolicySpec) -> dict[str, Any]:
    return {"scope": spec.scope, "node_id": spec.node_id, "policy_id": other.policy_id}


def check_policy_set(
    items: list[tuple[str, PolicySpec]], facts: NodeFacts, kept: Iterable[PolicySpec] = ()
) -> list[ErrorItem]:
    """Rules for new policies (prefix, spec) checked against kept ones and each other.

    Used where a whole set is written at once (profiles, replacements): every
    problem is reported, conflicts included.
    """
    errors: list[ErrorItem] = []
    seen: list[PolicySpec] = list(kept)
    for prefix, spec in items:
        problems, conflicts = check_rules(spec, facts, seen, prefix=prefix)
        errors.extend(problems)
        errors.extend(conflicts)
        seen.append(spec)
    return errors


def raise_problems(errors: list[ErrorItem], conflicts: list[ErrorItem] = ()) -> None:
    """422 with every problem (details of the first), else 409 for a conflict, else nothing."""
    if errors:
        ordered = sort_errors(errors)
        first = ordered[0]
        details = dict(first.details)
        if first.node_id is not None:
            details.setdefault("node_id", first.node_id)
        if first.field is not None:
            details.setdefault("field", first.field)
        message = (
            first.message
            if len(ordered) == 1
            else f"{len(ordered)} problems; first: {first.message}"
        )
        raise DomainError(first.code, message, details, errors=ordered, status=422)
    if conflicts:
        first = sort_errors(list(conflicts))[0]
        raise DomainError(first.code, first.message, first.details, status=409)
