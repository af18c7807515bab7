"""The `ocpp_stations:` section of depot profiles (spec 8.1, 4.8), registered with the loader.

`[{station_id, password, charging_rate_unit?, evses: [{evse_id, asset_id}]}]`: each station
is created or updated (a changed password replaces the stored hash; the same file loaded
again changes nothing) with exactly these EVSEs. Stations are never deleted by a profile.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from microgrid.common.errors import ErrorItem
from microgrid.common.fields import ID_RE
from stations.models import ChargingStation, StationEvse
from stations.services import _hash, password_matches

SECTION = "ocpp_stations"


def check_stations(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    def bad(field: str, message: str) -> ErrorItem:
        return ErrorItem("FIELD_INVALID", f"{field} {message}", field=field)

    if not isinstance(value, list):
        return [bad(SECTION, "must be a list of {station_id, password, evses}")]
    chargers = {
        a.get("asset_id")
        for a in profile.get("assets") or []
        if isinstance(a, dict) and a.get("kind") == "CHARGER"
    }
    errors: list[ErrorItem] = []
    seen_ids: set[str] = set()
    mapped: set[str] = set()
    for i, raw in enumerate(value):
        p = f"{SECTION}[{i}]"
        if not isinstance(raw, dict):
            errors.append(bad(p, "must be {station_id, password, evses}"))
            continue
        for key in sorted(set(raw) - {"station_id", "password", "charging_rate_unit", "evses"}):
            errors.append(bad(f"{p}.{key}", "is not a field of a station"))
        sid = raw.get("station_id")
        if not isinstance(sid, str) or not ID_RE.match(sid):
            errors.append(bad(f"{p}.station_id", "must be an id of the spec's pattern"))
        elif sid in seen_ids:
            errors.append(bad(f"{p}.station_id", "is listed twice"))
        else:
            seen_ids.add(sid)
        pw = raw.get("password")
        if not isinstance(pw, str) or len(pw) < 16 or len(pw) > 200:
            errors.append(bad(f"{p}.password", "must be 16 to 200 characters"))
        if raw.get("charging_rate_unit", "W") not in ("W", "A"):
            errors.append(bad(f"{p}.charging_rate_unit", "must be W or A"))
        evses = raw.get("evses", [])
        if not isinstance(evses, list):
            errors.append(bad(f"{p}.evses", "must be a list of {evse_id, asset_id}"))
            continue
        numbers: set[int] = set()
        for j, evse in enumerate(evses):
            q = f"{p}.evses[{j}]"
            if not isinstance(evse, dict) or set(evse) != {"evse_id", "asset_id"}:
                errors.append(bad(q, "must be {evse_id, asset_id}"))
                continue
            n = evse["evse_id"]
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000 or n in numbers:
                errors.append(bad(f"{q}.evse_id", "must be a distinct whole number from 1"))
            else:
                numbers.add(n)
            if evse["asset_id"] not in chargers:
                errors.append(
                    ErrorItem(
                        "ASSET_NOT_FOUND",
                        f"{evse['asset_id']!r} is not a CHARGER of this profile",
                        field=f"{q}.asset_id",
                    )
                )
            elif evse["asset_id"] in mapped:
                errors.append(bad(f"{q}.asset_id", "is mapped to two EVSEs"))
            else:
                mapped.add(evse["asset_id"])
    return errors


def apply_stations(microgrid, value: Any, user) -> None:
    import secrets

    with transaction.atomic():
        for raw in value:
            station, _ = ChargingStation.objects.get_or_create(
                station_id=raw["station_id"], defaults={"microgrid": microgrid}
            )
            changed = False
            if station.microgrid_id != microgrid.pk:
                station.microgrid, changed = microgrid, True
            if not password_matches(raw["password"], station.password_hash):
                station.password_hash = _hash(raw["password"], secrets.token_hex(8))
                changed = True
            unit = raw.get("charging_rate_unit", "W")
            if station.charging_rate_unit != unit:
                station.charging_rate_unit, changed = unit, True
            if changed:
                station.save()
            wanted = {(e["evse_id"], e["asset_id"]) for e in raw.get("evses", [])}
            current = set(
                StationEvse.objects.filter(station=station).values_list("evse_id", "asset_id")
            )
            if wanted != current:
                StationEvse.objects.filter(station=station).delete()
                for evse_id, asset_id in sorted(wanted):
                    StationEvse.objects.create(station=station, evse_id=evse_id, asset_id=asset_id)
