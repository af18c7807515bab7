"""The `session_defaults:` section of depot profiles (spec 8.1), registered with the loader.

Support's default per charger group for a connected vehicle nobody described (spec 4.3,
"Departures"), as the admin sets it: `{node_id, default_dwell_s, default_energy_kwh}` (the
energy optional). `check` validates without writing, against the profile's own Microgrid
Nodes: the node must be one of its CHARGER_GROUPs, once; the dwell a whole number of seconds
from 60 to 7 days; the energy above 0. `apply` writes each entry with history, leaving an
entry that already has these values as it is, so loading the same file twice changes
nothing; defaults the profile does not list are left alone.
"""

from __future__ import annotations

from math import inf
from typing import Any

from microgrid.common.errors import ErrorItem
from microgrid.common.fields import is_number
from microgrid.telemetry.models import MAX_DWELL_S, MIN_DWELL_S, SessionDefault

SECTION = "session_defaults"
FIELDS = ("node_id", "default_dwell_s", "default_energy_kwh")


def _node_kinds(profile: dict[str, Any]) -> dict[str, Any]:
    nodes = profile.get("nodes")
    return {
        raw["node_id"]: raw.get("kind")
        for raw in (nodes if isinstance(nodes, list) else [])
        if isinstance(raw, dict) and isinstance(raw.get("node_id"), str)
    }


def check_session_defaults(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    if not isinstance(value, list):
        return [
            ErrorItem(
                "FIELD_INVALID",
                "session_defaults must be a list of {node_id, default_dwell_s, default_energy_kwh}",
                field=SECTION,
            )
        ]
    kinds = _node_kinds(profile)
    errors: list[ErrorItem] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(value):
        prefix = f"{SECTION}[{i}]."
        if not isinstance(raw, dict):
            errors.append(ErrorItem("FIELD_INVALID", "must be a mapping", field=f"{SECTION}[{i}]"))
            continue
        for key in sorted(set(raw) - set(FIELDS), key=str):
            errors.append(
                ErrorItem("PROFILE_INVALID", f"unknown field {key!r}", field=f"{prefix}{key}")
            )
        node_id = raw.get("node_id")
        if not isinstance(node_id, str):
            errors.append(
                ErrorItem("FIELD_INVALID", "node_id is required", field=f"{prefix}node_id")
            )
        elif node_id not in kinds:
            errors.append(
                ErrorItem(
                    "NODE_NOT_FOUND",
                    f"no Microgrid Node {node_id!r} in this profile",
                    node_id=node_id,
                    field=f"{prefix}node_id",
                )
            )
        elif kinds[node_id] != "CHARGER_GROUP":
            errors.append(
                ErrorItem(
                    "FIELD_INVALID",
                    f"{node_id!r} is not a CHARGER_GROUP",
                    field=f"{prefix}node_id",
                )
            )
        elif node_id in seen:
            errors.append(
                ErrorItem(
                    "FIELD_INVALID",
                    f"{node_id!r} already has a default in {SECTION}[{seen[node_id]}]",
                    field=f"{prefix}node_id",
                )
            )
        else:
            seen[node_id] = i
        dwell = raw.get("default_dwell_s")
        if (
            isinstance(dwell, bool)
            or not isinstance(dwell, int)
            or not MIN_DWELL_S <= dwell <= MAX_DWELL_S
        ):
            errors.append(
                ErrorItem(
                    "FIELD_INVALID",
                    f"default_dwell_s must be whole seconds from {MIN_DWELL_S} to {MAX_DWELL_S}",
                    field=f"{prefix}default_dwell_s",
                )
            )
        energy = raw.get("default_energy_kwh")
        if energy is not None and (not is_number(energy) or not 0 < energy < inf):
            errors.append(
                ErrorItem(
                    "FIELD_INVALID",
                    "default_energy_kwh must be a number above 0, or left out",
                    field=f"{prefix}default_energy_kwh",
                )
            )
    return errors


def apply_session_defaults(microgrid, value: Any, user) -> None:
    """Write a checked section (`check_session_defaults` found nothing)."""
    current = {d.node_id: d for d in SessionDefault.objects.filter(microgrid=microgrid)}
    for raw in value:
        dwell = int(raw["default_dwell_s"])
        energy = raw.get("default_energy_kwh")
        energy = float(energy) if energy is not None else None
        row = current.get(raw["node_id"])
        if row is not None and (row.default_dwell_s, row.default_energy_kwh) == (dwell, energy):
            continue
        if row is None:
            row = SessionDefault(microgrid=microgrid, node_id=raw["node_id"])
        row.default_dwell_s = dwell
        row.default_energy_kwh = energy
        row._history_user = user if getattr(user, "is_authenticated", False) else None
        row.save()


# Found by the simulator's profile loader (simulator/loader.py): the section, its order, its
# check and how it is applied.
ORDER = 50
check = check_session_defaults
apply = apply_session_defaults
