"""Running a cycle: lock, gather, compute, store, dispatch.

At most one cycle runs per microgrid at a time: the cycle holds the
microgrid's row lock (PostgreSQL `SELECT ... FOR UPDATE`; on SQLite the
IMMEDIATE transaction serialises writers) from reading its inputs to storing
its result, so a topology save never interleaves with a cycle either. A
trigger that arrives meanwhile waits for the lock; if the cycle that held it
already served that trigger (it was pending when that cycle started), the
trigger is answered with that cycle: coalesced, never lost, never run in
parallel. A crash anywhere leaves no partial cycle: everything is written in
one transaction: the `cycle_stored` signal lets the dispatch app write the
cycle's deliveries (its outbox) in that same transaction, and an explicitly
passed dispatcher (tooling) is called only after commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from balancing import headroom
from balancing.breaches import detect_breaches
from balancing.choices import BreachStatus, TriggerType
from balancing.dispatch import Dispatcher
from balancing.engine import allocate
from balancing.inputs import CycleInputs, gather_inputs
from balancing.models import Breach, Cycle, CycleTrigger, HeadroomHistory, cycle_id_of
from balancing.selectors import cycle_setpoints
from balancing.signals import cycle_stored
from microgrid.capabilities.scopes import Scope
from microgrid.common.errors import DomainError
from microgrid.common.prepared import PreparedRead
from microgrid.envelopes.selectors import enrich_binding
from microgrid.envelopes.signals import cycle_completed
from microgrid.topology.models import Microgrid
from microgrid.topology.selectors import check_scope
from microgrid.topology.services import lock_microgrid, try_lock_microgrid


def cycle_scope(microgrid: Microgrid, scope: Scope | None) -> dict[str, Any]:
    """A validated scope as a cycle's scope, or NODE_NOT_FOUND when its node is not in the
    microgrid (None: the whole microgrid)."""
    return check_scope(microgrid, None if scope is None else scope.to_dict())


_ID_NAMESPACE = uuid.UUID("6f1d3c2a-9a57-4d0e-8f7b-2b8e4c1d5a90")


def stable_id(*parts: object) -> str:
    """A globally unique id derived from what identifies the row (not random, not a database pk).

    The same microgrid, sequence and node give the same id, so a simulator run
    replayed from scratch writes byte-identical artifacts.
    """
    return uuid.uuid5(_ID_NAMESPACE, ":".join(str(p) for p in parts)).hex


@dataclass
class CycleOutcome:
    cycle: Cycle
    coalesced: bool  # True when an earlier-running cycle served this trigger


def cycle_request(
    *,
    microgrid: Microgrid,
    trigger: dict[str, Any],
    scope: dict[str, Any] | None = None,
    now: Callable[[], datetime] | None = None,
    dispatcher: Dispatcher | None = None,
    valid_for_s: int | None = None,
    requested_at: datetime | None = None,
) -> CycleOutcome:
    """Record a trigger and make sure a cycle serves it; returns that cycle.

    `now` is a clock (the simulator passes its own); `valid_for_s` is the
    interval at which cycles actually run (setpoints are valid for 3 of them).
    `requested_at` is when the cycle was asked for if that was earlier than now
    (the schedule found the microgrid due, then the task waited in the queue).

    When no cycle holds the microgrid, the trigger waits for nothing: it is
    recorded, served and committed in the cycle's own transaction. Only when
    the lock is taken is the trigger committed first, so that the running
    cycle can see it and serve it (coalescing) while this call waits.
    """
    clock = now or timezone.now
    scope = scope or {"type": "MICROGRID"}
    asked = clock()
    if requested_at is not None and requested_at < asked:
        asked = requested_at
    out = dispatcher
    with transaction.atomic():
        locked = try_lock_microgrid(microgrid)
        if locked is not None:
            _check_topology(locked)
            pending = CycleTrigger(
                microgrid=locked, trigger=trigger, scope=scope, requested_at=asked
            )
            cycle = _serve(locked, pending, trigger, scope, clock, valid_for_s, out)
            return CycleOutcome(cycle, coalesced=False)
    pending = CycleTrigger.objects.create(
        microgrid=microgrid, trigger=trigger, scope=scope, requested_at=asked
    )
    with transaction.atomic():
        locked = lock_microgrid(microgrid)
        pending.refresh_from_db(fields=["served_by"])
        _check_topology(locked)
        if pending.served_by_id is not None:
            return CycleOutcome(Cycle.objects.get(pk=pending.served_by_id), coalesced=True)
        cycle = _serve(locked, pending, trigger, scope, clock, valid_for_s, out)
    return CycleOutcome(cycle, coalesced=False)


def _check_topology(locked: Microgrid) -> None:
    if locked.topology_version == 0:
        raise DomainError(
            "MICROGRID_HAS_NO_TOPOLOGY",
            f"Microgrid {locked.microgrid_id!r} has no topology yet: there is nothing to balance",
            {"microgrid_id": locked.microgrid_id},
        )


def _serve(locked, pending: CycleTrigger, trigger, scope, clock, valid_for_s, out) -> Cycle:
    """Inside the transaction, the microgrid locked: run the cycle, serve the waiting
    triggers, hand the setpoints to the outbox (and a tooling dispatcher after the commit)."""
    cycle = run_locked(
        locked,
        trigger=trigger,
        scope=scope,
        started_at=clock(),
        clock=clock,
        valid_for_s=valid_for_s,
    )
    # Every trigger waiting when this cycle started is served by it.
    CycleTrigger.objects.filter(
        microgrid=locked, served_by__isnull=True, requested_at__lte=cycle.started_at
    ).update(served_by=cycle)
    if pending.pk is None:
        pending.served_by = cycle
        pending.save()
    else:
        CycleTrigger.objects.filter(pk=pending.pk).update(served_by=cycle)
    hand_over(locked, cycle, out)
    return cycle


def hand_over(locked, cycle: Cycle, out: Dispatcher | None = None) -> None:
    """The stored cycle's setpoints to the outbox, in its transaction (the `cycle_stored`
    receivers), and to a tooling dispatcher after the commit."""
    limits, budgets = cycle_setpoints(cycle)
    # The outbox is written here, in the cycle's transaction (the dispatch app's receiver).
    cycle_stored.send(sender=Cycle, cycle=cycle, limits=limits, budgets=budgets)
    if out is not None:
        transaction.on_commit(
            lambda: out.dispatch(microgrid_id=locked.microgrid_id, limits=limits, budgets=budgets)
        )


# What a cycle needs of the microgrid's previous one: its seq and the part its record used.
LAST_CYCLE_FIELDS = ("seq", "record_part_id")
# Reads every cycle makes (prepared: compiled once per process, see microgrid.common.prepared).
_last_seq = PreparedRead(
    lambda microgrid: (
        Cycle.objects.filter(microgrid_id=microgrid)
        .order_by("-seq")
        .values_list(*LAST_CYCLE_FIELDS)[:1]
    ),
    microgrid=int,
)
_UNREAD = object()
_open_breaches = PreparedRead(
    lambda microgrid: Breach.objects.filter(
        microgrid_id=microgrid, status=BreachStatus.OPEN
    ).order_by(),
    microgrid=int,
    batch_by="microgrid",  # scheduled cycles read it for a batch (balancing/batch.py)
)


def run_locked(microgrid, **kwargs) -> Cycle:
    """Inside the transaction, the microgrid locked: read, compute and store one cycle
    (`plan_locked`'s arguments)."""
    planned = plan_locked(microgrid, **kwargs)
    planned.cycle.save()
    planned.stored()
    return planned.cycle


@dataclass
class PlannedCycle:
    """A cycle computed and ready to store: its row not written yet (a batch writes its
    members' rows with one INSERT, balancing/batch.py), then `stored()` once it is."""

    microgrid: Microgrid
    cycle: Cycle
    result: Any
    inputs: CycleInputs
    breaches: BreachPlan

    def stored(self) -> None:
        """What follows the cycle's row in its transaction: its breaches, and the envelopes
        app's facts after the commit."""
        self.breaches.apply(self.cycle)
        _announce(self.microgrid, self.cycle, self.result, self.inputs, self.breaches)


def plan_locked(
    microgrid, *, trigger, scope, started_at, clock, valid_for_s, last=_UNREAD
) -> PlannedCycle:
    """Inside the transaction, the microgrid locked: read and compute one cycle, and plan its
    breaches; the cycle row is not saved.

    `last` is the microgrid's previous cycle as (seq, record part), or None when it has
    none, when the caller read it already (a batch reads them all at once)."""
    interval = valid_for_s or microgrid.cycle_interval_s
    adaptive = microgrid.headroom_mode == headroom.ADAPTIVE
    history = _headroom_history(microgrid) if adaptive else None
    inputs = gather_inputs(
        microgrid,
        started_at,
        interval_s=interval,
        headroom_history=history.samples if history is not None else None,
    )
    result = allocate(inputs.engine)
    if history is not None:
        _remember_loads(history, started_at, result, inputs)
    findings = detect_breaches(inputs.breach_nodes, inputs.meters)
    completed_at = clock()
    valid_until = completed_at + timedelta(seconds=3 * interval)
    if last is _UNREAD:
        found = _last_seq(microgrid=microgrid.pk)
        last = found[0] if found else None
    seq = (last[0] if last else 0) + 1
    cycle_id = cycle_id_of(microgrid.microgrid_id, seq)
    document = _document(
        microgrid, cycle_id, scope, trigger, started_at, completed_at, result, inputs, valid_until
    )
    # The breaches are worked out before the cycle row exists, so that the cycle is
    # written once, whole, with its breaches in its document.
    breaches = _plan_breaches(microgrid, seq, started_at, findings, inputs)
    document["breaches"] = breaches.documents
    cycle = Cycle(
        cycle_id=cycle_id,
        microgrid=microgrid,
        seq=seq,
        trigger_type=trigger["type"],
        scope=scope,
        started_at=started_at,
        completed_at=completed_at,
        topology_version=microgrid.topology_version,
        outcome=result.outcome,
        source_mode=result.source_mode,
        reason_codes=list(result.reason_codes),
        vehicles_at_risk=sum(
            1 for c in result.chargers if c.departure is not None and c.departure.at_risk
        ),
        document=document,
        snapshot=inputs.snapshot(topology_version=microgrid.topology_version),
    )
    # The previous cycle's shared columns: the record stores only what differs from them.
    cycle.base_part = last[1] if last else None
    return PlannedCycle(microgrid, cycle, result, inputs, breaches)


def _headroom_history(microgrid) -> HeadroomHistory:
    """The microgrid's recent uncontrolled loads (a row created on its first adaptive cycle)."""
    found = HeadroomHistory.objects.filter(microgrid=microgrid).first()
    return found if found is not None else HeadroomHistory(microgrid=microgrid, samples={})


def _remember_loads(history: HeadroomHistory, at: datetime, result, inputs: CycleInputs) -> None:
    """Add this cycle's uncontrolled load of every node that has a margin (in the cycle's
    transaction: a cycle that rolls back leaves no sample)."""
    measured = {n.node_id for n in inputs.engine.nodes if n.margin_basis is not None}
    history.samples = headroom.remember(
        history.samples,
        at_s=at.timestamp(),
        loads={n.node_id: n.uncontrolled_load_kw for n in result.nodes if n.node_id in measured},
    )
    history.save()


def _announce(microgrid, cycle: Cycle, result, inputs: CycleInputs, breaches: BreachPlan) -> None:
    """After the commit, tell the envelopes app what it needs for OSCP compliance errors
    (a signal: it sits below balancing). Only when some node had an enforced envelope."""
    nodes = [
        {
            "node_id": n.node_id,
            "uncontrolled_load_kw": n.uncontrolled_load_kw,
            "envelope_ids": list(inputs.limits[n.node_id].envelope_ids),
        }
        for n in result.nodes
        if n.node_id in inputs.limits and inputs.limits[n.node_id].envelope_ids
    ]
    if not nodes:
        return
    facts = {
        "microgrid_pk": microgrid.pk,
        "cycle_id": cycle.cycle_id,
        "at": cycle.started_at,
        "nodes": nodes,
        "breaches": [
            {key: b[key] for key in ("breach_id", "node_id", "measured_kw", "exceeded", "new")}
            for b in breaches.documents
        ],
    }
    transaction.on_commit(lambda: cycle_completed.send_robust(sender=Cycle, **facts))


def _document(
    microgrid, cycle_id, scope, trigger, started_at, completed_at, result, inputs, valid_until
):
    until = valid_until.isoformat()
    nodes = []
    for node in result.nodes:
        entry = node.to_dict()
        nodes.append(entry)
    chargers = []
    for charger in result.chargers:
        entry = charger.to_dict()
        binding = entry.get("binding")
        if binding:
            # The envelopes app names the envelope that binds (envelope_id, peer_offline).
            enrich_binding(binding, inputs.limits.get(binding["node_id"]))
        if entry.get("allocated_kw") is not None:
            entry["valid_until"] = until
        chargers.append(entry)
    # Each budget goes to the external controller in the scope it was bound for (a
    # MICROGRID binding controls the root), naming the binding and its source device.
    scope_budgets = [
        {
            "scope": inputs.external.get(n["node_id"], {}).get("scope")
            or {"type": "NODE", "node_id": n["node_id"]},
            "budget_kw": n["budget_kw"],
            "valid_until": until,
            **{
                key: inputs.external[n["node_id"]][key]
                for key in ("binding_id", "source_device_id")
                if key in inputs.external.get(n["node_id"], {})
            },
        }
        for n in nodes
        if n.get("budget_kw") is not None
    ]
    return {
        "cycle_id": cycle_id,
        "microgrid_id": microgrid.microgrid_id,
        "scope": scope,
        "trigger": trigger,
        "started_at": started_at.isoformat(),
        "completed_at": completed_at.isoformat(),
        "topology_version": microgrid.topology_version,
        "outcome": result.outcome,
        "source_mode": result.source_mode,
        "reason_codes": list(result.reason_codes),
        "nodes": nodes,
        "chargers": chargers,
        "scope_budgets": scope_budgets,
        "breaches": [],
    }


@dataclass
class BreachPlan:
    """What a cycle does to breaches, decided before the cycle row is written."""

    documents: list[dict[str, Any]]
    opened: list[Breach]
    resolved: list[Breach]

    def apply(self, cycle: Cycle) -> None:
        for row in self.opened:
            row.cycle = cycle
        if self.opened:
            bulk_create_with_history(self.opened, Breach)
        for row in self.resolved:
            row.resolved_by = cycle
            row.save(update_fields=["status", "resolved_at", "resolved_by"])


def _plan_breaches(microgrid, seq: int, started_at, findings, inputs: CycleInputs) -> BreachPlan:
    """Open new breaches, keep ongoing ones open, resolve those back within limits.

    One open breach per node for its kW limit, and one per node and phase for its per-phase
    current limit (`phase` "" for the former)."""
    open_rows = {(b.node_id, b.phase): b for b in _open_breaches(microgrid=microgrid.pk)}
    found = {f.key: f for f in findings}
    out = []
    creates = []
    for key, f in sorted(found.items()):
        node_id, phase = key
        row = open_rows.get(key)
        if row is None:
            row = Breach(
                breach_id=stable_id("breach", microgrid.microgrid_id, seq, node_id)
                if not phase
                else stable_id("breach", microgrid.microgrid_id, seq, node_id, phase),
                microgrid=microgrid,
                node_id=node_id,
                measured_kw=f.measured_kw,
                limit_kw=f.limit_kw,
                excess_kw=f.excess_kw,
                exceeded=list(f.exceeded),
                primary_reason_code=f.primary_reason_code,
                phase=phase,
                measured_a=f.measured_a,
                limit_a=f.limit_a,
                excess_a=f.excess_a,
                detected_at=started_at,
            )
            creates.append(row)
        doc = {
            "breach_id": row.breach_id,
            "node_id": node_id,
            "measured_kw": f.measured_kw,
            "limit_kw": f.limit_kw,
            "excess_kw": f.excess_kw,
            "exceeded": list(f.exceeded),
            "primary_reason_code": f.primary_reason_code,
            "status": BreachStatus.OPEN,
            "new": row in creates,
        }
        if phase:
            doc.update(phase=phase, measured_a=f.measured_a, limit_a=f.limit_a, excess_a=f.excess_a)
        out.append(doc)
    # A node is back within its limit only when a fresh meter says so; a phase only when a
    # fresh meter with phase currents does (or the node no longer has a current limit).
    metered = {m.node_id for m in inputs.meters if m.freshness == "FRESH"}
    metered_a = {
        m.node_id for m in inputs.meters if m.freshness == "FRESH" and m.current_a is not None
    }
    resolved = []
    for (node_id, phase), row in sorted(open_rows.items()):
        if (node_id, phase) in found:
            continue
        lim = inputs.limits.get(node_id)
        if phase:
            back = node_id in metered_a or lim is None or lim.current is None
        else:
            back = node_id in metered or lim is None
        if back:
            row.status = BreachStatus.RESOLVED
            row.resolved_at = started_at
            resolved.append(row)
    return BreachPlan(out, creates, resolved)


def trigger_of(kind: str, **extra: Any) -> dict[str, Any]:
    if kind not in TriggerType.values:
        raise ValueError(kind)
    return {"type": kind, **extra}
