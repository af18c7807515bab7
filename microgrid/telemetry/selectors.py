"""Reads of telemetry for cycles and pages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from microgrid.common.errors import DomainError
from microgrid.common.prepared import PreparedRead
from microgrid.telemetry.choices import SessionOrigin
from microgrid.telemetry.models import ChargerSession, LatestReading, SessionDefault
from microgrid.topology.choices import AssetKind
from microgrid.topology.models import Asset, Microgrid

# A latest reading's columns, as the cycle, the API and ingest read and write them (the three
# currents are shown as one `current_a`, `currents_of`).
LATEST_READING_FIELDS = (
    "power_kw",
    "observed_at",
    "connected",
    "requested_kw",
    "plugged_in_at",
    "session_energy_kwh",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
)


def currents_of(reading: dict[str, Any]) -> None:
    """Replace a reading's three current columns by `current_a`: [l1, l2, l3], or None."""
    currents = (reading.pop("current_l1_a"), reading.pop("current_l2_a"))
    currents = (*currents, reading.pop("current_l3_a"))
    reading["current_a"] = None if currents[0] is None else list(currents)


def latest_readings(microgrid) -> dict[str, dict[str, Any]]:
    """asset_id -> the latest reading (one query); assets that never reported are absent."""
    rows = LatestReading.objects.filter(microgrid=microgrid, observed_at__isnull=False).values(
        "asset__asset_id", *LATEST_READING_FIELDS
    )
    out = {}
    for r in rows:
        currents_of(r)
        out[r.pop("asset__asset_id")] = r
    return out


def freshness(observed_at: datetime | None, now: datetime, stale_after_s: int) -> str:
    """FRESH when now - observed_at <= the threshold, STALE when older, MISSING when none (spec 3.5)."""
    if observed_at is None:
        return "MISSING"
    return "FRESH" if (now - observed_at).total_seconds() <= stale_after_s else "STALE"


# ---- charger sessions (spec 4.3, "Departures") --------------------------------------------------


def charger_get(microgrid, asset_id: str) -> Asset:
    """A CHARGER of the microgrid, or 404 CHARGER_NOT_FOUND (also for another kind of asset)."""
    asset = (
        Asset.objects.filter(microgrid=microgrid, asset_id=asset_id, kind=AssetKind.CHARGER)
        .select_related("node")
        .first()
    )
    if asset is None:
        raise DomainError(
            "CHARGER_NOT_FOUND",
            f"Charger {asset_id!r} not found in Microgrid {microgrid.microgrid_id!r}",
            {"microgrid_id": microgrid.microgrid_id, "asset_id": asset_id},
            status=404,
        )
    return asset


_session_defaults = PreparedRead(
    lambda microgrid: (
        SessionDefault.objects.filter(microgrid_id=microgrid)
        .order_by()
        .values_list("node_id", "default_dwell_s", "default_energy_kwh")
    ),
    microgrid=int,
    batch_by="microgrid",  # scheduled cycles read it for a batch of microgrids at once
)


def session_defaults(microgrid) -> dict[str, tuple[int, float | None]]:
    """node_id -> (default dwell in s, default energy in kWh or None), one query (prepared:
    every cycle with a connected charger without a session reads it)."""
    return {
        node_id: (dwell, energy)
        for node_id, dwell, energy in _session_defaults(microgrid=microgrid.pk)
    }


def default_for(
    node_id: str, parents: dict[str, str | None], defaults: dict[str, tuple[int, float | None]]
) -> tuple[int, float | None] | None:
    """The default of the nearest node on the charger's path that has one."""
    node: str | None = node_id
    while node is not None:
        found = defaults.get(node)
        if found is not None:
            return found
        node = parents.get(node)
    return None


def effective_session(
    *,
    connected: bool,
    plugged_in_at: datetime | None,
    delivered_kwh: float | None,
    session: dict[str, Any] | None,
    default: tuple[int, float | None] | None,
) -> dict[str, Any] | None:
    """What a cycle knows of the vehicle on a charger, or None (nothing known, not connected).

    The session sent for the current connection wins; a session of an earlier connection is
    ignored; otherwise the group's default dwell (and energy) from the plug-in time.
    """
    if not connected or plugged_in_at is None:
        return None
    delivered = max(delivered_kwh or 0.0, 0.0)
    if session is not None and session["plugged_in_at"] == plugged_in_at:
        return {
            "departure_at": session["departure_at"],
            "departure_source": SessionOrigin.API,
            "energy_needed_kwh": session["energy_needed_kwh"],
            "energy_source": session["energy_source"],
            "energy_delivered_kwh": delivered,
        }
    if default is None:
        return None
    dwell_s, energy = default
    return {
        "departure_at": plugged_in_at + timedelta(seconds=dwell_s),
        "departure_source": SessionOrigin.DEFAULT_DWELL,
        "energy_needed_kwh": energy,
        "energy_source": None if energy is None else "DEFAULT_ENERGY",
        "energy_delivered_kwh": delivered,
    }


SESSION_COLUMNS = (
    "plugged_in_at",
    "departure_at",
    "energy_needed_kwh",
    "energy_source",
    "target_soc_percent",
    "arrival_soc_percent",
    "battery_capacity_kwh",
)


def session_document(microgrid, asset: Asset, parents: dict[str, str | None]) -> dict[str, Any]:
    """`GET/PUT .../chargers/{asset_id}/session/`: the charger's session as cycles see it."""
    latest = LatestReading.objects.filter(asset=asset).values(
        "connected", "plugged_in_at", "session_energy_kwh"
    )
    reading = latest[0] if latest else {}
    row = ChargerSession.objects.filter(asset=asset).values(*SESSION_COLUMNS).first()
    connected = bool(reading.get("connected"))
    plugged = reading.get("plugged_in_at") if connected else None
    current = row if row is not None and row["plugged_in_at"] == plugged else None
    eff = effective_session(
        connected=connected,
        plugged_in_at=plugged,
        delivered_kwh=reading.get("session_energy_kwh"),
        session=current,
        default=default_for(asset.node.node_id, parents, session_defaults(microgrid)),
    )
    delivered = round(eff["energy_delivered_kwh"], 3) if eff else None
    needed = eff["energy_needed_kwh"] if eff else None
    return {
        "microgrid_id": microgrid.microgrid_id,
        "asset_id": asset.asset_id,
        "connected": connected,
        "plugged_in_at": plugged.isoformat() if plugged else None,
        "departure_at": eff["departure_at"].isoformat() if eff else None,
        "departure_source": eff["departure_source"] if eff else None,
        "energy_needed_kwh": needed,
        "energy_source": eff["energy_source"] if eff else None,
        "energy_delivered_kwh": delivered,
        "energy_remaining_kwh": None
        if needed is None or delivered is None
        else round(max(needed - delivered, 0.0), 3),
        "target_soc_percent": current["target_soc_percent"] if current else None,
        "arrival_soc_percent": current["arrival_soc_percent"] if current else None,
        "battery_capacity_kwh": current["battery_capacity_kwh"] if current else None,
    }


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
