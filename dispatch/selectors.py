"""Reads of the dispatch app: the setpoints a microgrid's chargers should follow now, a
cycle's dispatch summary, the card's trouble list. Constant query counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from balancing.models import Cycle
from balancing.selectors import cycle_setpoints_of
from dispatch.choices import TROUBLE, Channel, DeliveryStatus, TargetType
from dispatch.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryBatch,
    DispatchConfig,
    DispatchPruned,
)
from dispatch.packing import unpack_targets
from microgrid.topology.choices import AssetKind
from microgrid.topology.models import Asset, Microgrid


def _latest_cycle_pk(microgrid) -> int | None:
    """The latest cycle: every cycle hands out its chargers' setpoints."""
    row = (
        Cycle.objects.filter(microgrid=microgrid)
        .order_by("-started_at", "-seq")
        .values_list("pk", flat=True)[:1]
    )
    return row[0] if row else None


@dataclass(frozen=True)
class Target:
    """One setpoint of a cycle as dispatch sees it: a delivery row, or one that is pulled."""

    target_type: str
    target_id: str
    scope: dict[str, Any] | None
    limit_kw: float
    valid_until: datetime
    channel: str
    status: str


def cycle_targets(
    cycle: Cycle, *, document: dict[str, Any] | None = None, is_latest: bool | None = None
) -> list[Target]:
    """Every setpoint of a cycle with its channel and status, by target: an OCPP charger's
    delivery row, the targets packed in a batch (a sent one has its batch's status; an
    UNCHANGED one keeps that status unless the batch that renews it failed, was rejected or
    expired: then it has the batch's), and the pulled ones, which have no row (spec 4.7): the
    cycle's own, PENDING while the cycle is the latest and they are valid, then EXPIRED, or
    SUPERSEDED once a newer cycle exists. None for a cycle whose rows were pruned
    (`cycle_pruned`): its setpoints were pushed or pulled, which is no longer known."""
    return _cycle_targets(cycle, _rows_of(cycle), document, is_latest)[0]


def _rows_of(cycle: Cycle) -> list[Target]:
    """The targets of a cycle's delivery rows. A compacted cycle (no row: balancing/blocks.py)
    has none left: pruned before it was compacted, or it had only pulled ones."""
    if cycle.pk is None:
        return []
    rows = [
        Target(*values)
        for values in Delivery.objects.filter(cycle=cycle).values_list(
            "target_type", "target_id", "scope", "limit_kw", "valid_until", "channel", "status"
        )
    ]
    for batch in DeliveryBatch.objects.filter(cycle=cycle).values(
        "channel", "targets", "full", "valid_until", "status"
    ):
        rows += batch_targets(batch)
    return rows


def _cycle_targets(
    cycle: Cycle, rows: list[Target], document, is_latest: bool | None
) -> tuple[list[Target], bool]:
    """`cycle_targets` from the cycle's rows, and whether its rows were pruned."""
    if not rows and is_latest is not True:
        # The newest cycle's rows are never pruned; whether it is the newest and whether the
        # microgrid's rows were pruned past it are one query.
        if cycle.pk is None:
            is_latest, pruned = False, cycle_pruned(cycle)
        elif is_latest is None:
            is_latest, pruned = _latest_or_pruned(cycle)
        else:
            pruned = cycle_pruned(cycle)
        if pruned:
            return [], True  # its rows were pruned: what they said is no longer known
    have = {(t.target_type, t.target_id) for t in rows}
    pulled = _pulled(cycle, document, have)
    if pulled:
        if is_latest is None:
            is_latest = cycle.pk is not None and _latest_cycle_pk(cycle.microgrid_id) == cycle.pk
        if not is_latest:
            status = DeliveryStatus.SUPERSEDED
        elif pulled[0][4] <= timezone.now():  # a cycle's setpoints share its valid_until
            status = DeliveryStatus.EXPIRED
        else:
            status = DeliveryStatus.PENDING
        rows += [Target(*p, Channel.PULL, status) for p in pulled]
    return sorted(rows, key=lambda t: (t.target_type, t.target_id)), False


def _latest_or_pruned(cycle: Cycle) -> tuple[bool, bool]:
    """Whether a cycle (a row) is its microgrid's latest, and whether its dispatch rows were
    pruned, in one query."""
    latest = Cycle.objects.filter(microgrid=OuterRef("pk")).order_by("-started_at", "-seq")
    marks = DispatchPruned.objects.filter(microgrid=OuterRef("pk"), through_seq__gte=cycle.seq)
    found = (
        Microgrid.objects.filter(pk=cycle.microgrid_id)
        .annotate(latest=Subquery(latest.values("pk")[:1]), pruned=Exists(marks))
        .values_list("latest", "pruned")
        .first()
    )
    if found is None:
        return False, False
    return found[0] == cycle.pk, bool(found[1])


def cycle_pruned(cycle: Cycle) -> bool:
    """Whether the cycle's dispatch rows, if it had any, were pruned (dispatch/lifecycle.py):
    its seq is at or below its microgrid's pruning mark. One query."""
    return DispatchPruned.objects.filter(
        microgrid_id=cycle.microgrid_id, through_seq__gte=cycle.seq
    ).exists()


def batch_targets(batch: dict[str, Any]) -> list[Target]:
    """The targets packed in a batch (`channel`, `targets`, `full`, `valid_until`, `status`),
    each with its derived status."""
    status, until, channel = batch["status"], batch["valid_until"], batch["channel"]
    unchanged = status if status in TROUBLE else DeliveryStatus.UNCHANGED
    chargers, budgets = unpack_targets(batch["targets"])
    out = [
        Target(
            TargetType.CHARGER,
            asset_id,
            None,
            limit_kw,
            until,
            channel,
            status if send or batch["full"] else unchanged,
        )
        for asset_id, limit_kw, send in chargers
    ]
    out += [
        Target(
            TargetType.SCOPE, scope.get("node_id") or "MICROGRID", scope, kw, until, channel, status
        )
        for scope, kw in budgets
    ]
    return out


def _pulled(cycle: Cycle, document, have: set[tuple[str, str]]) -> list[tuple]:
    if document is None:
        document = cycle.document
    if not document:
        return []
    limits, budgets = cycle_setpoints_of(document)
    out = [
        (TargetType.CHARGER, c.asset_id, None, c.limit_kw, datetime.fromisoformat(c.valid_until))
        for c in limits
        if (TargetType.CHARGER, c.asset_id) not in have
    ]
    for b in budgets:
        scope = b.scope or {"type": "MICROGRID"}
        target = scope.get("node_id") or "MICROGRID"
        if (TargetType.SCOPE, target) not in have:
            out.append(
                (
                    TargetType.SCOPE,
                    target,
                    scope,
                    b.budget_kw,
                    datetime.fromisoformat(b.valid_until),
                )
            )
    return out


def setpoints_current(microgrid, *, asset_id: str | None = None) -> dict[str, Any]:
    """Every charger (or the one asked for) with the setpoint of the latest cycle that gave it
    one, if that is still valid, and the latest cycle's valid scope budgets."""
    now = timezone.now()
    chargers = Asset.objects.filter(microgrid=microgrid, kind=AssetKind.CHARGER)
    if asset_id is not None:
        chargers = chargers.filter(asset_id=asset_id)
    names = list(chargers.order_by("asset_id").values_list("asset_id", flat=True))
    latest = Cycle.objects.filter(microgrid=microgrid).order_by("-started_at", "-seq").first()
    targets = (
        []
        if latest is None
        else [t for t in cycle_targets(latest, is_latest=True) if t.valid_until > now]
    )
    by_asset = {t.target_id: t for t in targets if t.target_type == TargetType.CHARGER}
    setpoints = []
    for name in names:
        t = by_asset.get(name)
        setpoints.append(
            {
                "asset_id": name,
                "limit_kw": t.limit_kw if t else None,
                "valid_until": t.valid_until.isoformat() if t else None,
                "cycle_id": latest.cycle_id if t else None,
                "dispatch_status": t.status if t else None,
            }
        )
    budgets = [
        {
            "scope": t.scope,
            "budget_kw": t.limit_kw,
            "valid_until": t.valid_until.isoformat(),
            "cycle_id": latest.cycle_id,
            "dispatch_status": t.status,
        }
        for t in targets
        if t.target_type == TargetType.SCOPE
    ]
    return {
        "microgrid_id": microgrid.microgrid_id,
        "at": now.isoformat(),
        "setpoints": setpoints,
        "scope_budgets": budgets,
    }


def cycle_dispatch(
    cycle: Cycle, document: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """`{"channels", "counts"}` of a cycle and each charger's delivery status."""
    targets, pruned = _cycle_targets(cycle, _rows_of(cycle), document, None)
    counts = Counter(t.status for t in targets)
    summary: dict[str, Any] = {
        "channels": sorted({t.channel for t in targets}),
        "counts": dict(sorted(counts.items())),
    }
    if pruned:
        summary["pruned"] = True  # past DISPATCH_RETENTION_HOURS: its deliveries are gone
    statuses = {t.target_id: t.status for t in targets if t.target_type == TargetType.CHARGER}
    return summary, statuses


def enrich_cycle_document(sender, *, cycle: Cycle, document: dict[str, Any], **kwargs) -> None:
    """Receiver of balancing's `cycle_document_read`."""
    summary, statuses = cycle_dispatch(cycle, document)
    document["dispatch"] = summary
    document["chargers"] = [
        {**c, "dispatch_status": statuses.get(c["asset_id"])} for c in document.get("chargers", [])
    ]


def card_context(microgrid) -> dict[str, Any]:
    """The card's dispatch block: the channel and the chargers whose latest delivery is in
    trouble (FAILED, REJECTED, EXPIRED), with the attempts and last error of what carried it."""
    config = DispatchConfig.objects.filter(microgrid=microgrid).first()
    latest = _latest_cycle_pk(microgrid)
    trouble: list[dict[str, Any]] = []
    if latest is not None:
        trouble = list(
            Delivery.objects.filter(cycle_id=latest, status__in=TROUBLE)
            .order_by("target_type", "target_id")
            .values("target_type", "target_id", "status", "attempts", "last_error")[:50]
        )
        for batch in DeliveryBatch.objects.filter(cycle_id=latest, status__in=TROUBLE).values(
            "channel", "targets", "full", "valid_until", "status", "attempts", "last_error"
        ):
            carried = {"attempts": batch["attempts"], "last_error": batch["last_error"]}
            trouble += [
                {"target_type": t.target_type, "target_id": t.target_id, "status": t.status}
                | carried
                for t in batch_targets(batch)
            ] or [
                {"target_type": "", "target_id": "(renewal)", "status": batch["status"]} | carried
            ]
        trouble = sorted(trouble, key=lambda d: (d["target_type"], d["target_id"]))[:50]
    last_attempt = (
        DeliveryAttempt.objects.filter(microgrid=microgrid)
        .order_by("-started_at")
        .values("channel", "outcome", "started_at", "http_status", "error")
        .first()
    )
    return {
        "microgrid": microgrid,
        "webhook": bool(config and config.webhook_url),
        "trouble": trouble,
        "last_attempt": last_attempt,
    }
