"""Reads of telemetry for cycles and pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from microgrid.telemetry.models import LatestReading
from microgrid.topology.models import Asset, Microgrid


def latest_readings(microgrid) -> dict[str, dict[str, Any]]:
    """asset_id -> the latest reading (one query); assets that never reported are absent."""
    rows = LatestReading.objects.filter(microgrid=microgrid, observed_at__isnull=False).values(
        "asset__asset_id",
        "power_kw",
        "observed_at",
        "connected",
        "requested_kw",
        "plugged_in_at",
        "current_l1_a",
        "current_l2_a",
        "current_l3_a",
    )
    out = {}
    for r in rows:
        currents = (r.pop("current_l1_a"), r.pop("current_l2_a"), r.pop("current_l3_a"))
        r["current_a"] = None if currents[0] is None else list(currents)
        out[r.pop("asset__asset_id")] = r
    return out


def freshness(observed_at: datetime | None, now: datetime, stale_after_s: int) -> str:
    """FRESH when now - observed_at <= the threshold, STALE when older, MISSING when none (spec 3.5)."""
    if observed_at is None:
        return "MISSING"
    return "FRESH" if (now - observed_at).total_seconds() <= stale_after_s else "STALE"


def batch_assets(microgrid: Microgrid, wanted: set[str]) -> dict[str, tuple[int, str]]:
    """asset_id -> (pk, kind) of the batch's assets of this microgrid (one query)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT asset_id, id, kind FROM {Asset._meta.db_table} "
                "WHERE microgrid_id = %s AND asset_id = ANY(%s)",
                [microgrid.pk, sorted(wanted)],
            )
            return {asset_id: (pk, kind) for asset_id, pk, kind in cursor.fetchall()}
    return {
        a["asset_id"]: (a["id"], a["kind"])
        for a in Asset.objects.filter(microgrid=microgrid, asset_id__in=wanted).values(
            "id", "asset_id", "kind"
        )
    }
