"""Data lifecycle of the outbox (spec 4.7, Lifecycle): settled rows leave, bounded per run.

`dispatch_prune(now=, limit=)`: the dispatch rows (`DeliveryBatch`, `Delivery`,
`DeliveryAttempt`) of up to `limit` cycles created before DISPATCH_RETENTION_HOURS are
deleted, a cycle's rows all at once and only when every one of them is settled (no PENDING,
SENT or FAILED: a FAILED one is still retried until it expires) and the cycle is not its
microgrid's newest (the card's trouble list and the setpoints API read the newest cycle's
deliveries). Each microgrid's `DispatchPruned` mark says up to which seq its rows were
pruned: the readers show such a cycle's dispatch as pruned, not pulled. What the change-only rule reads is kept in `ReceiverState` and `LastAccepted`,
which name no cycle; the one thing it reads from the batches is whether a message sent after
the last accepted one has an unknown outcome (its message is then full). Pruning such a batch
first makes the receiver's state forget what it held (as a 409 does), so the next message is
full: never a difference against a state the product no longer knows.

A fixed number of statements whatever `limit`: two reads of the candidate cycles (one per
table, in cycle order: the oldest first), one read that keeps the settled, not newest ones,
the microgrids' pruning marks (`DispatchPruned`: one read, one upsert), one UPDATE of the
receivers' states, three DELETEs, in one transaction. Settled rows never
change again, so two runs at once at worst delete the same rows twice. The balancing
maintenance run calls it (the `cycles_maintaining` signal) before compaction, so the cycles it
freed move into blocks in the same run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from balancing.models import Cycle
from dispatch.choices import OPEN_STATUSES, DeliveryStatus
from dispatch.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryBatch,
    DispatchPruned,
    ReceiverState,
)
from dispatch.services import receiver_states_forget


def dispatch_horizon(now: datetime) -> datetime:
    """Dispatch rows of cycles created before this may have been pruned."""
    return now - timedelta(hours=settings.DISPATCH_RETENTION_HOURS)


def dispatch_prune(*, now: datetime, limit: int | None = None) -> int:
    """Delete the settled dispatch rows of up to `limit` old cycles; returns how many cycles."""
    limit = limit or settings.DISPATCH_PRUNE_BATCH
    horizon = dispatch_horizon(now)
    with transaction.atomic():
        candidates = set(
            DeliveryBatch.objects.filter(created_at__lt=horizon)
            .order_by("cycle_id")
            .values_list("cycle_id", flat=True)[:limit]
        ) | set(
            Delivery.objects.filter(created_at__lt=horizon)
            .order_by("cycle_id")
            .values_list("cycle_id", flat=True)
            .distinct()[:limit]
        )
        if not candidates:
            return 0
        doomed = list(
            Cycle.objects.filter(pk__in=sorted(candidates)[:limit])
            .filter(
                Exists(
                    Cycle.objects.filter(
                        microgrid_id=OuterRef("microgrid_id"), seq__gt=OuterRef("seq")
                    )
                )
            )
            .exclude(
                Exists(
                    DeliveryBatch.objects.filter(cycle_id=OuterRef("pk"), status__in=OPEN_STATUSES)
                )
            )
            .exclude(
                Exists(Delivery.objects.filter(cycle_id=OuterRef("pk"), status__in=OPEN_STATUSES))
            )
            .values_list("pk", "microgrid_id", "seq")
        )
        if not doomed:
            return 0
        through: dict[int, int] = {}
        for _, microgrid_pk, seq in doomed:
            through[microgrid_pk] = max(seq, through.get(microgrid_pk, 0))
        for microgrid_pk, seq in DispatchPruned.objects.filter(
            microgrid_id__in=through
        ).values_list("microgrid_id", "through_seq"):
            through[microgrid_pk] = max(seq, through[microgrid_pk])
        DispatchPruned.objects.bulk_create(
            [
                DispatchPruned(microgrid_id=microgrid_pk, through_seq=seq, pruned_at=now)
                for microgrid_pk, seq in through.items()
            ],
            update_conflicts=True,
            unique_fields=["microgrid"],
            update_fields=["through_seq", "pruned_at"],
        )
        doomed_pks = [pk for pk, _, _ in doomed]
        # A pruned message sent after the last accepted one, whose outcome is unknown: what
        # the receiver holds is not known, and the next message must be full (spec 4.7).
        stale = ReceiverState.objects.filter(valid_until__isnull=False).filter(
            Exists(
                DeliveryBatch.objects.filter(
                    cycle_id__in=doomed_pks,
                    microgrid_id=OuterRef("microgrid_id"),
                    channel=OuterRef("channel"),
                    seq__gt=OuterRef("seq"),
                    attempts__gt=0,
                ).exclude(status__in=(DeliveryStatus.ACCEPTED, DeliveryStatus.REJECTED))
            )
        )
        receiver_states_forget(stale, now)
        for model in (DeliveryAttempt, DeliveryBatch, Delivery):
            model.objects.filter(cycle_id__in=doomed_pks)._raw_delete(model.objects.db)
    return len(doomed)
