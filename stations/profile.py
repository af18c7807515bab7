"""The `ocpp_stations:` section of depot profiles (spec 8.1, 4.8), registered with the loader.

`[{station_id, password, charging_rate_unit?}]`: each station is created or updated (a
changed password replaces the stored hash; the same file loaded again changes nothing).
Which charger is which EVSE is said by the chargers themselves (`station_id`, `evse_id` in
`assets:`), so this section applies before the topology (ORDER < 0): the topology save
checks that every station a charger names exists (STATION_NOT_FOUND). Stations are never
deleted by a profile.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from microgrid.common.errors import ErrorItem
from microgrid.common.fields import ID_RE
from stations.models import ChargingStation
from stations.services import _hash, password_matches

SECTION = "ocpp_stations"
FIELDS = {"station_id", "password", "charging_rate_unit"}


def check_stations(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    def bad(field: str, message: str) -> ErrorItem:
        return ErrorItem("FIELD_INVALID", f"{field} {message}", field=field)

    if not isinstance(value, list):
        return [bad(SECTION, "must be a list of {station_id, password}")]
    errors: list[ErrorItem] = []
    seen_ids: set[str] = set()
    for i, raw in enumerate(value):
        p = f"{SECTION}[{i}]"
        if not isinstance(raw, dict):
            errors.append(bad(p, "must be {station_id, password}"))
            continue
        for key in sorted(set(raw) - FIELDS, key=str):
            why = (
                "is not a field of a station: a charger names its station and EVSE "
                "(station_id, evse_id in assets)"
                if key == "evses"
                else "is not a field of a station"
            )
            errors.append(bad(f"{p}.{key}", why))
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
    # A charger of this profile that names a station: one of this section's, when the section
    # is given (a station made in admin is checked when the topology is saved).
    for j, asset in enumerate(profile.get("assets") or []):
        if not isinstance(asset, dict) or asset.get("kind") != "CHARGER":
            continue
        named = asset.get("station_id")
        if isinstance(named, str) and named not in seen_ids:
            errors.append(
                ErrorItem(
                    "STATION_NOT_FOUND",
                    f"charger {asset.get('asset_id')!r} names OCPP station {named!r}, which "
                    f"is not in {SECTION}",
                    asset_id=asset.get("asset_id")
                    if isinstance(asset.get("asset_id"), str)
                    else None,
                    field=f"assets[{j}].station_id",
                    details={"station_id": named},
                )
            )
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


# Found by the simulator's profile loader (simulator/loader.py): the section, its order (before
# the topology, which names the stations), its check and how it is applied.
ORDER = -10
check = check_stations
apply = apply_stations
