"""Reads of stations: the stations page and API (a constant number of queries)."""

from __future__ import annotations

from typing import Any

from microgrid.topology.models import Asset
from stations.models import ChargingStation, StationEvse


def station_list(microgrid) -> list[dict[str, Any]]:
    """Each station with its EVSEs: those a charger names (topology) and those that reported
    (an EVSE no charger names shows `asset_id` null). Three queries whatever the size."""
    stations = list(ChargingStation.objects.filter(microgrid=microgrid).order_by("station_id"))
    state = {
        (e.station_id, e.evse_id): e
        for e in StationEvse.objects.filter(station__microgrid=microgrid)
    }
    pks = {s.station_id: s.pk for s in stations}
    mapped = {
        (pks[sid], evse): asset_id
        for asset_id, sid, evse in Asset.objects.filter(
            microgrid=microgrid, kind="CHARGER", station_id__in=pks
        ).values_list("asset_id", "station_id", "evse_id")
    }
    evses: dict[int, list[dict[str, Any]]] = {}
    for key in sorted(set(state) | set(mapped)):
        e = state.get(key)
        evses.setdefault(key[0], []).append(
            {
                "evse_id": key[1],
                "asset_id": mapped.get(key),
                "status": (e.status or None) if e else None,
                "status_at": e.status_at.isoformat() if e and e.status_at else None,
                "profile_status": (e.profile_status or None) if e else None,
                "failsafe_status": (e.failsafe_status or None) if e else None,
                "soc_pct": e.soc_pct if e else None,
                "soc_at": e.soc_at.isoformat() if e and e.soc_at else None,
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
