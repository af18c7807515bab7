"""Reads of the dispatch app: the setpoints a microgrid's chargers should follow now, a
cycle's dispatch summary, the card's trouble list. Constant query counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.utils import timezone

from balancing.models import Cycle
from dispatch.choices import TROUBLE, TargetType
from dispatch.models import Delivery, DeliveryAttempt, DispatchConfig
from microgrid.topology.choices import AssetKind
from microgrid.topology.models import Asset


def _latest_cycle_pk(microgrid) -> int | None:
    """The latest cycle: every cycle writes its chargers' deliveries."""
    row = (
        Cycle.objects.filter(microgrid=microgrid)
        .order_by("-started_at", "-seq")
        .values_list("pk", flat=True)[:1]
    )
    return row[0] if row else None


def setpoints_current(microgrid, *, asset_id: str | None = None) -> dict[str, Any]:
    """Every charger (or the one asked for) with the setpoint of the latest cycle that gave it
    one, if that is still valid, and the latest cycle's valid scope budgets."""
    now = timezone.now()
    chargers = Asset.objects.filter(microgrid=microgrid, kind=AssetKind.CHARGER)
    if asset_id is not None:
        chargers = chargers.filter(asset_id=asset_id)
    names = list(chargers.order_by("asset_id").values_list("asset_id", flat=True))
    rows: list[dict[str, Any]] = []
    latest = _latest_cycle_pk(microgrid)
    if latest is not None:
        qs = Delivery.objects.filter(cycle_id=latest, valid_until__gt=now)
        if asset_id is not None:
            qs = qs.filter(target_type=TargetType.CHARGER, target_id=asset_id)
        rows = list(
            qs.values(
                "target_type",
                "target_id",
                "scope",
                "limit_kw",
                "valid_until",
                "status",
                "cycle__cycle_id",
            )
        )
    by_asset = {r["target_id"]: r for r in rows if r["target_type"] == TargetType.CHARGER}
    setpoints = []
    for name in names:
        r = by_asset.get(name)
        setpoints.append(
            {
                "asset_id": name,
                "limit_kw": r["limit_kw"] if r else None,
                "valid_until": r["valid_until"].isoformat() if r else None,
                "cycle_id": r["cycle__cycle_id"] if r else None,
                "dispatch_status": r["status"] if r else None,
            }
        )
    budgets = [
        {
            "scope": r["scope"],
            "budget_kw": r["limit_kw"],
            "valid_until": r["valid_until"].isoformat(),
            "cycle_id": r["cycle__cycle_id"],
            "dispatch_status": r["status"],
        }
        for r in sorted(rows, key=lambda r: r["target_id"])
        if r["target_type"] == TargetType.SCOPE
    ]
    return {
        "microgrid_id": microgrid.microgrid_id,
        "at": now.isoformat(),
        "setpoints": setpoints,
        "scope_budgets": budgets,
    }


def cycle_dispatch(cycle: Cycle) -> tuple[dict[str, Any], dict[str, str]]:
    """`{"channels", "counts"}` of a cycle and each charger's delivery status (one query)."""
    rows = list(
        Delivery.objects.filter(cycle=cycle).values_list(
            "target_type", "target_id", "channel", "status"
        )
    )
    counts = Counter(status for _, _, _, status in rows)
    summary = {
        "channels": sorted({channel for _, _, channel, _ in rows}),
        "counts": dict(sorted(counts.items())),
    }
    statuses = {
        target: status
        for target_type, target, _, status in rows
        if target_type == TargetType.CHARGER
    }
    return summary, statuses


def enrich_cycle_document(sender, *, cycle: Cycle, document: dict[str, Any], **kwargs) -> None:
    """Receiver of balancing's `cycle_document_read`."""
    summary, statuses = cycle_dispatch(cycle)
    document["dispatch"] = summary
    document["chargers"] = [
        {**c, "dispatch_status": statuses.get(c["asset_id"])} for c in document.get("chargers", [])
    ]


def card_context(microgrid) -> dict[str, Any]:
    """The card's dispatch block: the channel and the chargers whose latest delivery is in
    trouble (FAILED, REJECTED, EXPIRED)."""
    config = DispatchConfig.objects.filter(microgrid=microgrid).first()
    latest = _latest_cycle_pk(microgrid)
    trouble = []
    if latest is not None:
        trouble = list(
            Delivery.objects.filter(cycle_id=latest, status__in=TROUBLE)
            .order_by("target_type", "target_id")
            .values("target_type", "target_id", "status", "attempts", "last_error")[:50]
        )
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
