"""Writes to capability bindings and status events. Each service is one transaction.

Binds, releases and transfers of a microgrid are serialised on its row lock
(`select_for_update()` on the Microgrid, as topology saves take it), so of two
competing binds exactly one wins and the other sees it: the overlap rule
needs the tree and cannot be a database constraint. Status events lock only
their binding's row, so a release and an event never interleave, and events
do not wait for cycles.

Every writer (API, admin, the profile loader) comes through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from microgrid.capabilities.choices import BindingEnd
from microgrid.capabilities.models import CapabilityBinding, CapabilityStatusEvent
from microgrid.capabilities.scopes import Scope, overlaps
from microgrid.capabilities.selectors import node_facts
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.topology.models import Microgrid
from microgrid.topology.services import lock_microgrid

# A status observed further ahead of the product's clock than this is refused: it would
# otherwise stay the latest status (and pin external control) until the device's clock
# caught up.
MAX_CLOCK_AHEAD = timedelta(minutes=5)


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


def _lock(microgrid: Microgrid) -> Microgrid:
    return lock_microgrid(microgrid)


def _summary(binding: CapabilityBinding) -> dict[str, Any]:
    return {
        "binding_id": binding.binding_id,
        "scope": binding.scope,
        "source_device_id": binding.source_device_id,
    }


# ---- input ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BindingRequest:
    capability_type: str
    scope: Scope
    source_device_id: str


def _check_node(microgrid: Microgrid, scope: Scope, names: dict[str, str], field="scope.node_id"):
    if scope.is_microgrid or scope.node_id in names:
        return
    raise DomainError(
        "NODE_NOT_FOUND",
        f"Microgrid Node {scope.node_id!r} is not in microgrid {microgrid.microgrid_id!r}",
        {"microgrid_id": microgrid.microgrid_id, "node_id": scope.node_id},
        errors=[
            ErrorItem(
                "NODE_NOT_FOUND",
                f"no Microgrid Node {scope.node_id!r}",
                node_id=scope.node_id,
                field=field,
            )
        ],
    )


# ---- binding --------------------------------------------------------------------------------


@dataclass
class BindOutcome:
    binding: CapabilityBinding
    created: bool  # False: the same source already held this capability and scope


def _api(name: str, **kwargs) -> str:
    return reverse(name, kwargs=kwargs)


def _conflict(
    microgrid: Microgrid, request: BindingRequest, conflicts: list[CapabilityBinding]
) -> DomainError:
    first = conflicts[0]
    mid = microgrid.microgrid_id
    incoming = {"source_device_id": request.source_device_id, "scope": request.scope.to_dict()}
    bind_again = {"capability_type": request.capability_type, **incoming}
    remediation: list[dict[str, Any]] = [
        {
            "action": "RELEASE_THEN_BIND",
            "description": "release the existing binding(s), then bind the incoming source",
            "steps": [
                *(
                    {
                        "method": "POST",
                        "path": _api(
                            "api-capability-binding-release",
                            microgrid_id=mid,
                            binding_id=b.binding_id,
                        ),
                    }
                    for b in conflicts
                ),
                {
                    "method": "POST",
                    "path": _api("api-capability-bindings", microgrid_id=mid),
                    "body": bind_again,
                },
            ],
        }
    ]
    if len(conflicts) == 1 and Scope.of(first) == request.scope:
        remediation.append(
            {
                "action": "TRANSFER",
                "description": "hand the binding to the incoming source if the existing one "
                "is still the active source (compare-and-swap)",
                "method": "POST",
                "path": _api("api-capability-binding-transfer", microgrid_id=mid),
                "body": {
                    "capability_type": request.capability_type,
                    "scope": request.scope.to_dict(),
                    "expected_source_device_id": first.source_device_id,
                    "new_source_device_id": request.source_device_id,
                },
            }
        )
    return DomainError(
        "CAPABILITY_SOURCE_CONFLICT",
        f"{request.capability_type} of microgrid {mid} already has an active source "
        f"{first.source_device_id!r} ({first.binding_id}) whose scope overlaps the incoming "
        f"source {request.source_device_id!r}; nothing was changed",
        {
            "microgrid_id": mid,
            "capability_type": request.capability_type,
            "existing_binding": _summary(first),
            "existing_bindings": [_summary(b) for b in conflicts],
            "incoming": incoming,
            "remediation": remediation,
        },
        status=409,
    )


def _create(
    microgrid: Microgrid,
    request: BindingRequest,
    *,
    user,
    now: datetime,
    transferred_from: CapabilityBinding | None = None,
) -> CapabilityBinding:
    seq = (
        CapabilityBinding.objects.filter(microgrid=microgrid).aggregate(m=Max("seq"))["m"] or 0
    ) + 1
    binding = CapabilityBinding(
        microgrid=microgrid,
        seq=seq,
        binding_id=f"CB-{seq}",
        capability_type=request.capability_type,
        source_device_id=request.source_device_id,
        active=True,
        created_at=now,
        created_by=_user(user),
        transferred_from=transferred_from,
        **request.scope.columns(),
    )
    binding._history_user = _user(user)
    try:
        with transaction.atomic():
            binding.save()
    except IntegrityError as exc:
        # Only reachable if a row was written around the services meanwhile.
        raise DomainError(
            "CAPABILITY_SOURCE_CONFLICT",
            f"{request.capability_type} of microgrid {microgrid.microgrid_id} conflicts with a "
            f"binding stored meanwhile: {exc}",
            {
                "microgrid_id": microgrid.microgrid_id,
                "capability_type": request.capability_type,
                "incoming": {
                    "source_device_id": request.source_device_id,
                    "scope": request.scope.to_dict(),
                },
            },
            status=409,
        ) from None
    return binding


def capability_binding_validate(
    *, microgrid: Microgrid, capability_type: str, scope: Scope, source_device_id: str
) -> BindingRequest:
    """The binding these validated values (`CapabilityBind`) ask for, checked against the
    topology and the active bindings, or DomainError (node, conflict). Writes nothing."""
    request = BindingRequest(capability_type, scope, source_device_id)
    facts = node_facts(microgrid)
    _check_node(microgrid, request.scope, facts.names)
    active = CapabilityBinding.objects.filter(
        microgrid=microgrid, capability_type=request.capability_type, active=True
    ).order_by("seq")
    ancestors = facts.ancestors()
    conflicts = [
        b
        for b in active
        if overlaps(Scope.of(b), request.scope, ancestors)
        and not (Scope.of(b) == request.scope and b.source_device_id == request.source_device_id)
    ]
    if conflicts:
        raise _conflict(microgrid, request, conflicts)
    return request


def capability_binding_create(
    *,
    microgrid: Microgrid,
    capability_type: str,
    scope: Scope,
    source_device_id: str,
    user=None,
    now: datetime | None = None,
) -> BindOutcome:
    """Bind a source device to a capability for a scope (spec 3.4).

    Refused with CAPABILITY_SOURCE_CONFLICT when another active binding of the
    same capability overlaps the scope; the same source binding the same
    capability and scope again while active gets the existing binding back
    (created False) and nothing changes.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock(microgrid)
        request = capability_binding_validate(
            microgrid=locked,
            capability_type=capability_type,
            scope=scope,
            source_device_id=source_device_id,
        )
        same = CapabilityBinding.objects.filter(
            microgrid=locked,
            capability_type=request.capability_type,
            source_device_id=request.source_device_id,
            active=True,
            **request.scope.columns(),
        ).first()
        if same is not None:
            return BindOutcome(same, created=False)
        return BindOutcome(_create(locked, request, user=user, now=now), created=True)


def _end(binding: CapabilityBinding, *, how: str, user, now: datetime) -> None:
    binding.active = False
    binding.released_at = now
    binding.released_by = _user(user)
    binding.ended_by = how
    binding._history_user = _user(user)
    binding.save()


def capability_binding_release(
    *, microgrid: Microgrid, binding_id: str, user=None, now: datetime | None = None
) -> CapabilityBinding:
    """End an active binding; it stays (with its events) in history. BINDING_NOT_ACTIVE if ended."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock(microgrid)
        try:
            binding = CapabilityBinding.objects.select_for_update().get(
                microgrid=microgrid, binding_id=binding_id
            )
        except CapabilityBinding.DoesNotExist:
            raise DomainError(
                "BINDING_NOT_FOUND",
                f"Capability binding {binding_id!r} not found in microgrid "
                f"{microgrid.microgrid_id!r}",
                {"microgrid_id": microgrid.microgrid_id, "binding_id": binding_id},
                status=404,
            ) from None
        if not binding.active:
            raise DomainError(
                "BINDING_NOT_ACTIVE",
                f"Capability binding {binding_id} already ended ({binding.ended_by} at "
                f"{binding.released_at.isoformat()}); nothing was changed",
                {
                    "microgrid_id": microgrid.microgrid_id,
                    "binding_id": binding_id,
                    "ended_by": binding.ended_by,
                    "released_at": binding.released_at.isoformat(),
                },
                status=409,
            )
        _end(binding, how=BindingEnd.RELEASED, user=user, now=now)
    return binding


@dataclass
class TransferOutcome:
    binding: CapabilityBinding
    transferred: bool  # False: the new source already was the active one


def capability_binding_transfer(
    *,
    microgrid: Microgrid,
    capability_type: str,
    scope: Scope,
    expected_source_device_id: str,
    new_source_device_id: str,
    user=None,
    now: datetime | None = None,
) -> TransferOutcome:
    """Compare-and-swap: hand the active binding of (capability, scope) from the expected
    source to the new one, or CAPABILITY_TRANSFER_CONFLICT when the expected source is not
    the active one for exactly that scope. A retried transfer (the new source is already
    the active one) gets that binding back and changes nothing."""
    now = now or timezone.now()
    expected, new = expected_source_device_id, new_source_device_id
    with transaction.atomic():
        _lock(microgrid)
        _check_node(microgrid, scope, node_facts(microgrid).names)
        current = (
            CapabilityBinding.objects.select_for_update()
            .filter(
                microgrid=microgrid, capability_type=capability_type, active=True, **scope.columns()
            )
            .first()
        )
        if current is not None and current.source_device_id == new:
            return TransferOutcome(current, transferred=False)
        if current is None or current.source_device_id != expected:
            now_holds = (
                f"{current.source_device_id!r} ({current.binding_id}) is"
                if current
                else "no source is"
            )
            raise DomainError(
                "CAPABILITY_TRANSFER_CONFLICT",
                f"{capability_type} of microgrid {microgrid.microgrid_id} for that scope: "
                f"{now_holds} the active source, not {expected!r}; nothing was changed",
                {
                    "microgrid_id": microgrid.microgrid_id,
                    "capability_type": capability_type,
                    "scope": scope.to_dict(),
                    "expected_source_device_id": expected,
                    "new_source_device_id": new,
                    "current_binding": _summary(current) if current else None,
                },
                status=409,
            )
        _end(current, how=BindingEnd.TRANSFERRED, user=user, now=now)
        binding = _create(
            microgrid,
            BindingRequest(capability_type, scope, new),
            user=user,
            now=now,
            transferred_from=current,
        )
    return TransferOutcome(binding, transferred=True)


# ---- status events --------------------------------------------------------------------------


@dataclass
class EventOutcome:
    event: CapabilityStatusEvent
    binding: CapabilityBinding
    created: bool  # False: this event_ref was already stored for the binding


def capability_event_record(
    *,
    microgrid: Microgrid,
    capability_type: str,
    scope: Scope,
    source_device_id: str,
    event_ref: str,
    state: str,
    observed_at: datetime,
    detail: str | dict | None = None,
    now: datetime | None = None,
) -> EventOutcome:
    """Store a status event of the active source of (capability, scope).

    CAPABILITY_SOURCE_NOT_ACTIVE when the sender is not that source. A
    repeated `event_ref` for the binding stores nothing and returns the
    stored event (created False).
    """
    now = now or timezone.now()
    if observed_at > now + MAX_CLOCK_AHEAD:
        raise DomainError.from_errors(
            [
                ErrorItem(
                    "FIELD_INVALID",
                    f"observed_at is more than {int(MAX_CLOCK_AHEAD.total_seconds())} s ahead "
                    "of the product's clock",
                    field="observed_at",
                )
            ]
        )
    source = source_device_id
    with transaction.atomic():
        binding = (
            CapabilityBinding.objects.select_for_update()
            .filter(
                microgrid=microgrid, capability_type=capability_type, active=True, **scope.columns()
            )
            .first()
        )
        if binding is None or binding.source_device_id != source:
            raise _not_active(microgrid, capability_type, scope, source)
        stored = CapabilityStatusEvent.objects.filter(binding=binding, event_ref=event_ref).first()
        if stored is not None:
            return EventOutcome(stored, binding, created=False)
        event = CapabilityStatusEvent(
            microgrid=microgrid,
            binding=binding,
            event_ref=event_ref,
            state=state,
            observed_at=observed_at,
            received_at=now,
            detail=detail,
        )
        try:
            with transaction.atomic():
                event.save()
        except IntegrityError:
            # The binding's row lock makes this unreachable through this service; a row
            # written around it is still answered as a repeat.
            stored = CapabilityStatusEvent.objects.get(binding=binding, event_ref=event_ref)
            return EventOutcome(stored, binding, created=False)
    return EventOutcome(event, binding, created=True)


def _not_active(microgrid: Microgrid, capability_type: str, scope: Scope, source: str):
    """Who is the active source, if anyone, for the scope the event named (or overlapping it)."""
    facts = node_facts(microgrid)
    ancestors = facts.ancestors()
    active = [
        b
        for b in CapabilityBinding.objects.filter(
            microgrid=microgrid, capability_type=capability_type, active=True
        ).order_by("seq")
        if overlaps(Scope.of(b), scope, ancestors)
    ]
    exact = next((b for b in active if Scope.of(b) == scope), None)
    if exact is not None:
        why = f"the active source is {exact.source_device_id!r} ({exact.binding_id})"
    elif active:
        why = "no binding has exactly this scope; overlapping: " + ", ".join(
            f"{b.binding_id} ({b.source_device_id!r})" for b in active
        )
    else:
        why = "no source is bound"
    return DomainError(
        "CAPABILITY_SOURCE_NOT_ACTIVE",
        f"{source!r} is not the active {capability_type} source for that scope of microgrid "
        f"{microgrid.microgrid_id}: {why}; the event was not stored",
        {
            "microgrid_id": microgrid.microgrid_id,
            "capability_type": capability_type,
            "scope": scope.to_dict(),
            "source_device_id": source,
            "active_binding": _summary(exact) if exact else None,
            "overlapping_bindings": [_summary(b) for b in active],
        },
        status=409,
    )
