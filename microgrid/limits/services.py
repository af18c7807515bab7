"""Writes to limit policies. Each service is one transaction; nothing changes on any error.

Every writer (API, Manage pages, admin, the profile loader, the legacy TOU
path) comes through here, so the rules of `validation.py` hold everywhere.
Writes lock the microgrid row, as topology saves do, so a policy is checked
against the topology it is stored with and policy ids are numbered in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from microgrid.common.errors import DomainError
from microgrid.common.signals import send_on_commit
from microgrid.limits import signals
from microgrid.limits.choices import LimitScope, LimitSource
from microgrid.limits.models import LimitPolicy, LimitState, ScheduleActivation
from microgrid.limits.schedules import Schedule, transitions
from microgrid.limits.selectors import depot_zone, node_facts, policy_specs, spec_of
from microgrid.limits.validation import (
    PolicySpec,
    check_policy_set,
    check_rules,
    raise_problems,
)
from microgrid.topology.models import Microgrid, MicrogridNode
from microgrid.topology.services import lock_microgrid

# The beat task looks back at most this far (a worker that was down for a
# week records the last day, not a week of stale transitions) ...
MAX_CATCH_UP = timedelta(days=1)
# ... and on its first run for a microgrid, one beat interval.
FIRST_LOOK_BACK = timedelta(minutes=1)


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


def _lock(microgrid: Microgrid) -> Microgrid:
    return lock_microgrid(microgrid)


def _changed(microgrid_id: str) -> None:
    send_on_commit(signals.limits_changed, microgrid_id=microgrid_id)


def _next_policy_id(microgrid: Microgrid) -> str:
    state, _ = LimitState.objects.get_or_create(microgrid=microgrid)
    number = state.policies_created + 1
    while LimitPolicy.objects.filter(microgrid=microgrid, policy_id=f"LP-{number}").exists():
        number += 1  # only if rows were written around the services (a restored backup)
    LimitState.objects.filter(pk=state.pk).update(policies_created=number)
    return f"LP-{number}"


def _schedule_columns(schedule: Schedule | None) -> dict[str, Any]:
    if schedule is None:
        return {"schedule_days": "", "schedule_start": None, "schedule_end": None}
    return {
        "schedule_days": ",".join(schedule.days),
        "schedule_start": time(schedule.start // 60, schedule.start % 60),
        "schedule_end": time(schedule.end // 60, schedule.end % 60),
    }


def _nodes_by_id(microgrid: Microgrid, node_ids) -> dict[str, MicrogridNode]:
    ids = {n for n in node_ids if n}
    if not ids:
        return {}
    return {
        n.node_id: n for n in MicrogridNode.objects.filter(microgrid=microgrid, node_id__in=ids)
    }


def _write(policy: LimitPolicy, spec: PolicySpec, node: MicrogridNode | None, user) -> None:
    policy.scope = spec.scope
    policy.node = node
    policy.limit_kw = spec.limit_kw
    policy.limit_a = spec.limit_a
    policy.source = spec.source
    for name, value in _schedule_columns(spec.schedule).items():
        setattr(policy, name, value)
    policy.updated_by = _user(user)
    policy._history_user = _user(user)
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError as exc:
        # Only reachable if a row was written around the services meanwhile.
        raise DomainError(
            "LIMIT_ALREADY_EXISTS",
            f"{spec.label()} conflicts with a policy stored meanwhile: {exc}",
            {"scope": spec.scope, "node_id": spec.node_id},
            status=409,
        ) from None


def limit_policy_validate(
    *,
    microgrid: Microgrid,
    scope: str,
    limit_kw: float,
    node_id: str | None = None,
    limit_a: float | None = None,
    schedule: Schedule | None = None,
    source: str = LimitSource.MANUAL,
    policy: LimitPolicy | None = None,
) -> PolicySpec:
    """The policy these validated values make (as a new one, or replacing `policy`) checked
    against the topology and the other policies, or DomainError. Writes nothing: admin forms
    call it from clean() to show errors inline."""
    spec = PolicySpec(scope, node_id, limit_kw, schedule, source, limit_a)
    spec = spec.with_id(policy.policy_id if policy else None)
    problems, conflicts = check_rules(spec, node_facts(microgrid), policy_specs(microgrid))
    raise_problems(problems, conflicts)
    return spec


def limit_policy_create(
    *,
    microgrid: Microgrid,
    scope: str,
    limit_kw: float,
    node_id: str | None = None,
    limit_a: float | None = None,
    schedule: Schedule | None = None,
    source: str = LimitSource.MANUAL,
    user=None,
) -> LimitPolicy:
    """Create one Node Limit or Microgrid limit from validated values (`LimitPolicyInput`)."""
    with transaction.atomic():
        locked = _lock(microgrid)
        spec = limit_policy_validate(
            microgrid=locked,
            scope=scope,
            node_id=node_id,
            limit_kw=limit_kw,
            limit_a=limit_a,
            schedule=schedule,
            source=source,
        )
        node = _nodes_by_id(locked, [spec.node_id]).get(spec.node_id)
        policy = LimitPolicy(
            microgrid=locked, policy_id=_next_policy_id(locked), created_by=_user(user)
        )
        _write(policy, spec, node, user)
        _changed(locked.microgrid_id)
    return policy


def limit_policy_update(
    *,
    policy: LimitPolicy,
    scope: str,
    limit_kw: float,
    node_id: str | None = None,
    limit_a: float | None = None,
    schedule: Schedule | None = None,
    source: str = LimitSource.MANUAL,
    user=None,
) -> LimitPolicy:
    """Replace a policy's scope, target, limit, schedule and source (its id stays)."""
    with transaction.atomic():
        locked = _lock(policy.microgrid)
        current = LimitPolicy.objects.select_for_update().filter(pk=policy.pk).first()
        if current is None:
            raise DomainError(
                "LIMIT_NOT_FOUND",
                f"Limit policy {policy.policy_id!r} was deleted meanwhile",
                {"microgrid_id": locked.microgrid_id, "policy_id": policy.policy_id},
                status=404,
            )
        spec = limit_policy_validate(
            microgrid=locked,
            scope=scope,
            node_id=node_id,
            limit_kw=limit_kw,
            limit_a=limit_a,
            schedule=schedule,
            source=source,
            policy=current,
        )
        if spec.values == spec_of(current).values:
            return current  # nothing to change: no history row, nobody to tell
        node = _nodes_by_id(locked, [spec.node_id]).get(spec.node_id)
        _write(current, spec, node, user)
        _changed(locked.microgrid_id)
    return current


def limit_policy_delete(*, policy: LimitPolicy, user=None) -> None:
    with transaction.atomic():
        locked = _lock(policy.microgrid)
        current = LimitPolicy.objects.filter(pk=policy.pk).first()
        if current is None:
            return  # already gone: deleting is idempotent
        current._history_user = _user(user)
        current.delete()
        _changed(locked.microgrid_id)


@dataclass
class ReplaceResult:
    created: list[str]
    updated: list[str]
    deleted: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


def limit_policies_replace(
    *,
    microgrid: Microgrid,
    specs: list[tuple[str, PolicySpec]],
    replaces: Callable[[PolicySpec], bool],
    user=None,
) -> ReplaceResult:
    """Make the policies matched by `replaces` equal to `specs`, touching only what differs.

    `specs` are validated policies (`limits.api.serializers.parse_policy`), each with the
    prefix its findings are named by (`limits[2].`). Policies not matched stay and the new
    set is checked against them. A policy already stored with the same values is kept as it
    is (same id, no history row); one with the same target and schedule but another limit
    or source is updated in place; the rest are deleted and created. So writing the same set
    twice changes nothing. Used by the profile loader and the legacy TOU path (replace the
    scheduled policies of one target).
    """
    with transaction.atomic():
        locked = _lock(microgrid)
        current = list(
            LimitPolicy.objects.filter(microgrid=locked).select_related("node").order_by("id")
        )
        current_specs = [(p, spec_of(p)) for p in current]
        kept = [s for _, s in current_specs if not replaces(s)]
        problems = check_policy_set(specs, node_facts(locked), kept)
        raise_problems(
            [e for e in problems if e.code != "LIMIT_ALREADY_EXISTS"],
            [e for e in problems if e.code == "LIMIT_ALREADY_EXISTS"],
        )

        old = [(p, s) for p, s in current_specs if replaces(s)]
        wanted = [s for _, s in specs]
        # Exact matches stay untouched.
        remaining_new: list[PolicySpec] = []
        for spec in wanted:
            match = next((pair for pair in old if pair[1].values == spec.values), None)
            if match is not None:
                old.remove(match)
            else:
                remaining_new.append(spec)
        # Same target and schedule: update in place (the id is kept).
        updates: list[tuple[LimitPolicy, PolicySpec]] = []
        creates: list[PolicySpec] = []
        for spec in remaining_new:
            match = next(
                (
                    pair
                    for pair in old
                    if pair[1].target == spec.target and pair[1].schedule == spec.schedule
                ),
                None,
            )
            if match is not None:
                old.remove(match)
                updates.append((match[0], spec))
            else:
                creates.append(spec)

        result = ReplaceResult(created=[], updated=[], deleted=[])
        for policy, _ in old:
            policy._history_user = _user(user)
            policy.delete()
            result.deleted.append(policy.policy_id)
        nodes = _nodes_by_id(locked, [s.node_id for s in wanted])
        for policy, spec in updates:
            _write(policy, spec, nodes.get(spec.node_id), user)
            result.updated.append(policy.policy_id)
        for spec in creates:
            policy = LimitPolicy(
                microgrid=locked, policy_id=_next_policy_id(locked), created_by=_user(user)
            )
            _write(policy, spec, nodes.get(spec.node_id), user)
            result.created.append(policy.policy_id)
        if result.changed:
            _changed(locked.microgrid_id)
    return result


def schedule_transitions_record(
    *, now: datetime | None = None, microgrid: Microgrid | None = None
) -> int:
    """Record every schedule start and end since the last run; returns how many were new.

    Per microgrid, in its own transaction: the window is (watermark, now],
    the watermark moves to `now`, and each transition is written once
    (the window is half-open and (microgrid, policy, transition, at) is
    unique), so running twice for the same instant writes nothing. A policy
    is looked at only from its last change on: a transition before it was
    written is not one it had. Hooks (balancing) are told after the commit.
    `microgrid` limits the run to one microgrid (the simulator, whose clock
    must not move the others' watermarks).
    """
    now = now or timezone.now()
    policies = LimitPolicy.objects.filter(schedule_start__isnull=False)
    if microgrid is not None:
        policies = policies.filter(microgrid=microgrid)
    rows = list(policies.select_related("microgrid__depot", "node").order_by("microgrid_id", "id"))
    by_microgrid: dict[int, list[LimitPolicy]] = {}
    for policy in rows:
        by_microgrid.setdefault(policy.microgrid_id, []).append(policy)
    written = 0
    for policies in by_microgrid.values():
        written += _record_for(policies[0].microgrid, policies, now)
    return written


def _record_for(microgrid: Microgrid, policies: list[LimitPolicy], now: datetime) -> int:
    zone = depot_zone(microgrid)
    with transaction.atomic():
        state, _ = LimitState.objects.get_or_create(microgrid=microgrid)
        state = LimitState.objects.select_for_update().get(pk=state.pk)
        since = state.transitions_checked_until or (now - FIRST_LOOK_BACK)
        since = max(since, now - MAX_CATCH_UP)
        if since >= now:
            return 0
        found: list[signals.ScheduleTransition] = []
        for policy in policies:
            schedule = policy.schedule
            if schedule is None:
                continue
            start = max(since, policy.updated_at) if policy.updated_at else since
            for kind, at in transitions(schedule, zone, start, now):
                found.append(
                    signals.ScheduleTransition(
                        policy_id=policy.policy_id,
                        scope=policy.scope,
                        node_id=policy.node.node_id if policy.scope == LimitScope.NODE else None,
                        transition=kind,
                        at=at,
                        limit_kw=policy.limit_kw,
                    )
                )
        if found:
            # A watermark moved back by hand must not record or announce a transition twice.
            earliest = min(t.at for t in found)
            seen = set(
                ScheduleActivation.objects.filter(
                    microgrid=microgrid, at__gte=earliest, at__lte=now
                ).values_list("policy_id", "transition", "at")
            )
            found = [t for t in found if (t.policy_id, t.transition, t.at) not in seen]
        found.sort(key=lambda t: (t.at, t.transition != "END", t.policy_id))
        schedules = {p.policy_id: p.schedule.as_dict() for p in policies if p.schedule}
        ScheduleActivation.objects.bulk_create(
            [
                ScheduleActivation(
                    microgrid=microgrid,
                    policy_id=t.policy_id,
                    scope=t.scope,
                    node_id=t.node_id,
                    transition=t.transition,
                    at=t.at,
                    limit_kw=t.limit_kw,
                    schedule=schedules[t.policy_id],
                    recorded_at=now,
                )
                for t in found
            ],
            ignore_conflicts=True,
        )
        LimitState.objects.filter(pk=state.pk).update(transitions_checked_until=now)
        if found:
            send_on_commit(
                signals.schedule_transitioned,
                microgrid_id=microgrid.microgrid_id,
                transitions=found,
            )
    return len(found)
