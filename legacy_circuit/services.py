"""Writes of the legacy circuit app: rebalance and TOU through canonical services, the audit, setup.

A legacy call never has rules of its own: a rebalance is one canonical cycle
(`balancing.services.cycle_request`) and a TOU write is a replacement of the
target's scheduled limit policies (`microgrid.limits.services
.limit_policies_replace`), so the canonical views, the active-limit selector
and cycles see exactly what a legacy client wrote.

Every legacy call leaves one `AliasUsage` row. A successful write records it
in the transaction of the write; a refused call is recorded by the view after
the refusal rolled back (`alias_usage_record`), so the audit outlives it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from balancing.dispatch import Dispatcher
from balancing.services import cycle_request, trigger_of
from legacy_circuit.api.serializers import TouLimit, legacy_field, legacy_item
from legacy_circuit.choices import AliasScope
from legacy_circuit.models import AliasUsage, CircuitAlias, LegacyCircuit
from legacy_circuit.selectors import (
    Resolution,
    circuit_resolution,
    limit_target,
    tou_document,
    tou_target,
)
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import MAX_KW, FieldProblem, check_id, check_kw, check_text
from microgrid.limits.choices import LimitSource
from microgrid.limits.services import limit_policies_replace
from microgrid.limits.validation import PolicySpec, raise_problems
from microgrid.topology.models import Depot

MAX_CAPACITY_KW = MAX_KW


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


# --- The audit -------------------------------------------------------------------------------


@dataclass
class UsageContext:
    """What one legacy call has learnt so far, for its AliasUsage row."""

    circuit_id: str
    endpoint: str
    method: str
    client: str = ""
    microgrid_id: str = ""
    scope: dict[str, Any] | None = None
    cycle_id: str = ""
    recorded: bool = False

    def note(self, resolution: Resolution) -> None:
        """Remember the mapping as soon as one alias is found (also when the call is refused later)."""
        if resolution.alias is not None:
            self.microgrid_id = resolution.alias.microgrid.microgrid_id
            self.scope = resolution.alias.scope_dict()


def alias_usage_record(
    *,
    usage: UsageContext,
    status_code: int,
    failure_code: str = "",
    failure_reason: str = "",
    at: datetime | None = None,
) -> AliasUsage:
    """Write the call's audit row (once per call)."""
    with transaction.atomic():
        row = AliasUsage.objects.create(
            circuit_id=usage.circuit_id[:200],
            endpoint=usage.endpoint,
            method=usage.method[:10],
            client=usage.client[:150],
            microgrid_id=usage.microgrid_id,
            scope=usage.scope,
            failure_code=failure_code[:40],
            failure_reason=failure_reason[:40],
            status_code=status_code,
            cycle_id=usage.cycle_id,
            at=at or timezone.now(),
        )
    usage.recorded = True
    return row


# --- Rebalance -------------------------------------------------------------------------------


def circuit_rebalance(
    *,
    circuit_id: str,
    usage: UsageContext,
    user,
    now: Callable[[], datetime] | None = None,
    dispatcher: Dispatcher | None = None,
    valid_for_s: int | None = None,
) -> dict[str, Any]:
    """Resolve the circuit and run one canonical cycle for its microgrid and scope.

    The cycle runs in its own transaction (it holds the microgrid's lock and
    serves triggers that arrive meanwhile), so the audit row follows it in
    a second one rather than wrapping it. `now`, `dispatcher` and
    `valid_for_s` go to `cycle_request` (the simulator runs on its own clock). `user` is the
    caller: a circuit it may not call resolves as an unknown one (`SYSTEM` for trusted code).
    """
    resolution = circuit_resolution(circuit_id, user=user)
    usage.note(resolution)
    if resolution.failure is not None:
        raise resolution.error()
    scope = resolution.cycle_scope
    outcome = cycle_request(
        microgrid=resolution.microgrid,
        trigger=trigger_of("LEGACY_ALIAS", circuit_id=resolution.circuit.circuit_id),
        scope=scope,
        now=now,
        dispatcher=dispatcher,
        valid_for_s=valid_for_s,
    )
    usage.cycle_id = outcome.cycle.cycle_id
    body = {
        "circuit_id": resolution.circuit.circuit_id,
        "microgrid_id": resolution.microgrid.microgrid_id,
        # The frozen shape lists both keys: a whole-microgrid scope says node_id null.
        "scope": {"type": scope["type"], "node_id": scope.get("node_id")},
        "cycle_id": outcome.cycle.cycle_id,
        "status": "COMPLETED",
    }
    alias_usage_record(usage=usage, status_code=200, at=now() if now else None)
    return body


# --- TOU limits ------------------------------------------------------------------------------


def _legacy_error(exc: DomainError) -> DomainError:
    details = dict(exc.details)
    if isinstance(details.get("field"), str):
        details["field"] = legacy_field(details["field"])
    return DomainError(
        exc.code,
        exc.message,
        details,
        errors=[legacy_item(e) for e in exc.errors],
        status=exc.status,
    )


def circuit_tou_replace(
    *, circuit_id: str, tou_limits: list[TouLimit], usage: UsageContext, user
) -> dict[str, Any]:
    """Replace the scheduled policies of the circuit's target with the legacy TOU limits
    (validated by `legacy_circuit.api.serializers.tou_limits_input`).

    The legacy TOU limits of a circuit are every scheduled policy on its
    mapped node or microgrid, whatever their source; the written ones get
    source LEGACY_TOU, replaced ones are deleted (kept in history), unchanged
    ones stay as they are. Answers as the GET does. Nothing changes on any
    error: the replacement and the audit row are one transaction.
    """
    with transaction.atomic():
        resolution = circuit_resolution(circuit_id, user=user)
        usage.note(resolution)
        tou_target(resolution)
        scope, node_id = target = limit_target(resolution)
        policies = [
            (
                t.field_prefix,
                PolicySpec(
                    scope=scope,
                    node_id=node_id,
                    limit_kw=t.limit_kw,
                    schedule=t.schedule,
                    source=LimitSource.LEGACY_TOU,
                ),
            )
            for t in tou_limits
        ]
        try:
            limit_policies_replace(
                microgrid=resolution.microgrid,
                specs=policies,
                replaces=lambda spec: spec.target == target and spec.schedule is not None,
                user=user,
            )
        except DomainError as exc:
            raise _legacy_error(exc) from None
        body = tou_document(resolution)
        alias_usage_record(usage=usage, status_code=200)
    return body


def circuit_tou_check(*, circuit_id: str, usage: UsageContext, user) -> None:
    """The refusals of a TOU read or write that come before its body is read: the circuit
    resolves (409 CIRCUIT_ALIAS_NOT_RESOLVABLE) to one node or microgrid (422
    TOU_MAPPING_AMBIGUOUS, TOU_SCOPE_UNSUPPORTED)."""
    resolution = circuit_resolution(circuit_id, user=user)
    usage.note(resolution)
    tou_target(resolution)


def circuit_tou_read(*, circuit_id: str, usage: UsageContext, user) -> dict[str, Any]:
    """The circuit's TOU limits (the GET); refusals as for a write. The view records the call."""
    resolution = circuit_resolution(circuit_id, user=user)
    usage.note(resolution)
    tou_target(resolution)
    return tou_document(resolution)


# --- Circuits and aliases (admin, profiles) --------------------------------------------------


def legacy_circuit_save(
    *,
    circuit_id: str,
    name: str,
    configured_capacity_kw: float,
    depot: Depot | None = None,
    user=None,
) -> tuple[LegacyCircuit, bool]:
    """Create a circuit or update its name, depot and configured capacity; (circuit, changed).

    A new circuit's available capacity starts at its configured value. While
    no operating envelope holds it lower (available equals configured), the
    available capacity follows a change of the configured one.
    """
    errors: list[ErrorItem] = []
    try:
        check_id(circuit_id, "circuit_id")
    except FieldProblem as exc:
        errors.append(ErrorItem("FIELD_INVALID", str(exc), field="circuit_id"))
    try:
        name = check_text(name, max_length=200)
    except FieldProblem as exc:
        errors.append(ErrorItem("FIELD_INVALID", f"name {exc}", field="name"))
    try:
        configured_capacity_kw = check_kw(
            configured_capacity_kw, minimum=0, maximum=MAX_CAPACITY_KW
        )
    except FieldProblem as exc:
        errors.append(
            ErrorItem(
                "FIELD_INVALID",
                f"configured_capacity_kw {exc}",
                field="configured_capacity_kw",
            )
        )
    raise_problems(errors)
    with transaction.atomic():
        circuit = LegacyCircuit.objects.select_for_update().filter(circuit_id=circuit_id).first()
        if circuit is None:
            circuit = LegacyCircuit(
                circuit_id=circuit_id,
                name=name,
                depot=depot,
                configured_capacity_kw=configured_capacity_kw,
                available_capacity_kw=configured_capacity_kw,
            )
            circuit._history_user = _user(user)
            circuit.save()
            return circuit, True
        changed = False
        if (
            circuit.available_capacity_kw
            == circuit.configured_capacity_kw
            != configured_capacity_kw
        ):
            circuit.available_capacity_kw = configured_capacity_kw
            changed = True
        for attr, value in (
            ("name", name),
            ("configured_capacity_kw", configured_capacity_kw),
            ("depot_id", depot.pk if depot else None),
        ):
            if getattr(circuit, attr) != value:
                setattr(circuit, attr, value)
                changed = True
        if changed:
            circuit._history_user = _user(user)
            circuit.save()
    return circuit, changed


def alias_problems(
    *, scope_type: str, node_id: str, asset_id: str, prefix: str = ""
) -> list[ErrorItem]:
    """Whether an alias's fields fit its scope type (what the database constraint also says)."""
    errors: list[ErrorItem] = []

    def bad(field: str, message: str) -> None:
        errors.append(
            ErrorItem("FIELD_INVALID", f"{prefix}{field} {message}", field=prefix + field)
        )

    if scope_type not in AliasScope.values:
        bad("type", f"must be one of {', '.join(AliasScope.values)}")
        return errors
    for field, value, wanted in (
        ("node_id", node_id, scope_type == AliasScope.NODE),
        ("asset_id", asset_id, scope_type == AliasScope.ASSET),
    ):
        if wanted:
            try:
                check_id(value, field)
            except FieldProblem as exc:
                bad(field, f"is required for a {scope_type} alias: {exc}")
        elif value:
            bad(field, f"must be empty for a {scope_type} alias")
    return errors


def circuit_alias_save(*, alias: CircuitAlias, user=None) -> CircuitAlias:
    """Store a new or changed alias (admin, profiles). Its target need not exist yet: a missing
    target is shown as TARGET_MISSING rather than refused, so setup order does not matter."""
    raise_problems(
        alias_problems(
            scope_type=alias.scope_type, node_id=alias.node_id or "", asset_id=alias.asset_id or ""
        )
    )
    with transaction.atomic():
        alias._history_user = _user(user)
        alias.save()
    return alias


def circuit_alias_set_active(*, alias: CircuitAlias, active: bool, user=None) -> bool:
    """Activate or deactivate an alias (kept in history); False when it already was."""
    with transaction.atomic():
        current = CircuitAlias.objects.select_for_update().get(pk=alias.pk)
        if current.active == active:
            return False
        current.active = active
        current._history_user = _user(user)
        current.save()
    alias.active = active
    return True
