"""Reads of stations: the stations page and API (two queries whatever the size)."""

from __future__ import annotations

from typing import Any

from stations.models import ChargingStation, StationEvse


def station_list(microgrid) -> list[dict[str, Any]]:
    stations = list(ChargingStation.objects.filter(microgrid=microgrid).order_by("station_id"))
    evses: dict[int, list[dict[str, Any]]] = {}
    for e in StationEvse.objects.filter(station__microgrid=microgrid).order_by("evse_id"):
        evses.setdefault(e.station_id, []).append(
            {
                "evse_id": e.evse_id,
                "asset_id": e.asset_id,
                "status": e.status or None,
                "status_at": e.status_at.isoformat() if e.status_at else None,
                "profile_status": e.profile_status or None,
                "failsafe_status": e.failsafe_status or None,
            }
        )
    return [
        {
            "station_id": s.station_id,
            "connected": s.connected,
            "last_seen_at": s.last_seen_at.isoformat() if s.last_seen_at else None,
            "protocol": s.protocol or None,
            "boot": {"vendor": s.vendor, "model": s.model, "firmware": s.firmware},
            "charging_rate_unit": s.charging_rate_unit,
            "gateway": s.gateway or None,
            "evses": evses.get(s.pk, []),
        }
        for s in stations
    ]


def card_context(microgrid) -> dict[str, Any]:
    """The card's stations block: how many, and which are offline (one query)."""
    rows = list(
        ChargingStation.objects.filter(microgrid=microgrid)
        .order_by("station_id")
        .values_list("station_id", "connected", "last_seen_at")
    )
    return {
        "microgrid": microgrid,
        "count": len(rows),
        "offline": [{"station_id": s, "last_seen_at": seen} for s, c, seen in rows if not c],
    }
