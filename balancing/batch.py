"""Scheduled cycles in batches: one transaction cycles several due microgrids.

At fleet scale a 50-charger cycle costs less in the engine than in the round trips around
it: a dozen reads, each compiled, sent, planned and answered, and a transaction of its own.
A batch pays those once for every microgrid in it (docs/performance.md, "Fleet"):

- one query locks every member (`SELECT ... FOR UPDATE SKIP LOCKED` of their microgrid rows,
  the lock every cycle and every writer takes) and reads each one's previous cycle;
- every per-microgrid read of the cycle (nodes, assets with their latest readings and
  sessions, limit policies, envelopes, capability bindings, session defaults, open breaches)
  is answered for all members by one query (`microgrid.common.prepared.batched`);
- then each member's cycle is the single path's own code (`services.plan_locked`, the
  row written, `PlannedCycle.stored`, then `services.hand_over`): the same engine, the same
  document, snapshot, breaches and outbox, so a batched cycle is the cycle `cycle_request`
  would have written;
- the members' cycle rows are written with one INSERT (`microgrid.common.bulk.insert_rows`
  of the model's fields, each record encoded as `Cycle.save` does), and the fleet overview's
  states with one upsert
  (the `cycles_created` signal, for what `post_save` tells it of a cycle saved on its own);
- the triggers are written set-based: one read finds those waiting for any member (usually
  none), one UPDATE serves them, one INSERT records the batch's own, served;
- everything commits together, so a crash leaves no partial batch.

The rules of the single path hold for each member: a microgrid whose lock another
transaction holds (a topology save, a rebalance) is not in the batch; the caller runs it on
its own afterwards (`cycle_request`, which waits for the lock and coalesces). A microgrid
without a topology is not cycled; a disabled one neither. Should anything fail, the whole
batch rolls back and the caller runs every member on its own, as before batching.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, OuterRef, Subquery, Value, When
from django.utils import timezone

from balancing.models import Cycle, CycleTrigger, parts_columns
from balancing.services import LAST_CYCLE_FIELDS, hand_over, plan_locked
from balancing.signals import cycles_created
from microgrid.common.bulk import insert_rows
from microgrid.common.prepared import PreparedRead, batched
from microgrid.topology.models import Microgrid

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    cycles: dict[str, Cycle] = field(default_factory=dict)  # microgrid_id -> its cycle
    busy: list[str] = field(default_factory=list)  # locked by another transaction, or gone
    idle: list[str] = field(default_factory=list)  # disabled, or without a topology
    committed: bool = False  # set once the batch's transaction has committed


def _lock(microgrid_ids: list[str]) -> dict[str, Microgrid]:
    """The members nobody else holds, locked, with their previous cycle's seq and part."""
    previous = Cycle.objects.filter(microgrid_id=OuterRef("pk")).order_by("-seq")
    rows = (
        Microgrid.objects.select_for_update(of=("self",), skip_locked=True)
        .select_related("depot")
        .filter(microgrid_id__in=microgrid_ids)
        .annotate(
            **{f"_last_{name}": Subquery(previous.values(name)[:1]) for name in LAST_CYCLE_FIELDS}
        )
        .order_by()
    )
    return {m.microgrid_id: m for m in rows}


# The triggers a batch's cycles serve (read for all members at once, balancing/batch.py).
_waiting = PreparedRead(
    lambda microgrid, at: (
        CycleTrigger.objects.filter(
            microgrid_id=microgrid, served_by__isnull=True, requested_at__lte=at
        )
        .order_by()
        .values_list("pk", flat=True)
    ),
    microgrid=int,
    at=datetime,
    batch_by="microgrid",
)


def _insert(cycles: list[Cycle]) -> None:
    """The members' cycle rows with one INSERT: each record encoded as `Cycle.save` encodes
    it, the rows from the model's own fields (`insert_rows`: one array per column, SQL
    compiled once; it gives each its pk), then `cycles_created` for what `post_save` would
    have told the receivers of each."""
    for cycle in cycles:
        if cycle._pending:
            cycle._encode()
    insert_rows(cycles)
    cycles_created.send(sender=Cycle, cycles=cycles)


def _last(microgrid: Microgrid) -> tuple[Any, ...] | None:
    values = tuple(getattr(microgrid, f"_last_{name}") for name in LAST_CYCLE_FIELDS)
    return None if values[0] is None else values


def cycle_batch(
    microgrid_ids: list[str],
    *,
    trigger: dict[str, Any],
    requested_at: datetime | None = None,
    now: Callable[[], datetime] | None = None,
    valid_for_s: int | None = None,
) -> BatchOutcome:
    """Cycle every member that is free, enabled and has a topology, in one transaction.

    The cycles are scheduled ones of the whole microgrid: scope MICROGRID, one trigger row
    each (`requested_at`: when the schedule found them due, if earlier than now)."""
    clock = now or timezone.now
    scope = {"type": "MICROGRID"}
    asked = clock()
    if requested_at is not None and requested_at < asked:
        asked = requested_at
    out = BatchOutcome()
    try:
        _cycle_members(out, microgrid_ids, trigger, scope, asked, clock, valid_for_s)
    except Exception:
        if not out.committed:
            raise  # rolled back whole: the caller cycles the members one by one
        # Something run after the commit failed (a receiver's on_commit): the cycles are
        # stored, and running them again would double them.
        log.exception("after the batch of %s committed", microgrid_ids)
    return out


def _cycle_members(out, microgrid_ids, trigger, scope, asked, clock, valid_for_s) -> None:
    with transaction.atomic():
        # Registered first, so it runs first once the batch has committed.
        transaction.on_commit(lambda: setattr(out, "committed", True))
        if connection.vendor == "postgresql":
            # A batch's reads are indexed lookups of a few thousand rows, in tables that hold
            # the whole fleet's (255,000 latest readings at 5,000 x 50 chargers), read from
            # memory. PostgreSQL's defaults plan them for disks: its cost of a random page
            # (4) made 1,275 index probes look dearer than scanning the readings and nodes
            # whole with a hash join, in parallel workers (25 ms a batch instead of 6, and
            # processes started for it); its JIT spends 200 ms compiling what runs in 5.
            # For this transaction only: index lookups priced as cached, no parallel
            # workers, no JIT.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('jit', 'off', true), "
                    "set_config('random_page_cost', '1.1', true), "
                    "set_config('max_parallel_workers_per_gather', '0', true)"
                )
        locked = _lock(microgrid_ids)
        members = []
        for microgrid_id in microgrid_ids:
            microgrid = locked.get(microgrid_id)
            if microgrid is None:
                out.busy.append(microgrid_id)
            elif not microgrid.enabled or microgrid.topology_version == 0:
                out.idle.append(microgrid_id)
            else:
                members.append(microgrid)
        if not members:
            return
        # The shared columns the members' previous records used, in one query (each cycle's
        # record is stored as its difference from them).
        parts_columns([last[1] for last in map(_last, members) if last is not None])
        # One instant for the batch: its inputs are all read now, under all its locks.
        started_at = clock()
        with batched(microgrid=[m.pk for m in members]):
            planned = [
                plan_locked(
                    microgrid,
                    trigger=trigger,
                    scope=scope,
                    started_at=started_at,
                    clock=clock,
                    valid_for_s=valid_for_s,
                    last=_last(microgrid),
                )
                for microgrid in members
            ]
            _insert([p.cycle for p in planned])
            for p in planned:
                p.stored()
                hand_over(p.microgrid, p.cycle)
                out.cycles[p.microgrid.microgrid_id] = p.cycle
            # Every trigger waiting when the batch started is served by its microgrid's
            # cycle: found for all members by one read (usually there is none), then one
            # UPDATE of those found.
            waiting = {m.pk: _waiting(microgrid=m.pk, at=started_at) for m in members}
        serve = {pk: ids for pk, ids in waiting.items() if ids}
        if serve:
            by_pk = {m.pk: out.cycles[m.microgrid_id].pk for m in members if m.pk in serve}
            CycleTrigger.objects.filter(pk__in=[t for ids in serve.values() for t in ids]).update(
                served_by=Case(*(When(microgrid_id=mg, then=Value(c)) for mg, c in by_pk.items()))
            )
        CycleTrigger.objects.bulk_create(
            [
                CycleTrigger(
                    microgrid=m,
                    trigger=trigger,
                    scope=scope,
                    requested_at=asked,
                    served_by=out.cycles[m.microgrid_id],
                )
                for m in members
            ]
        )
