"""A telemetry batch's readings, checked whole at the edge (the API view, and
`services.telemetry_ingest` for in-process producers: the simulator, the OCPP gateway,
the demo feed).

`readings_input` checks every reading and answers the typed `Reading`s that
`services.telemetry_store` stores, or refuses the whole batch: TELEMETRY_INVALID with one
error per bad reading (ASSET_NOT_FOUND, or FIELD_INVALID naming the field, the asset and the
reading's index). A reading's rules depend on its asset's kind, so the batch's assets are
read first (one query). The checks are `common.fields`' checkers, the ones every
CheckedField runs, called directly: a batch holds up to 5,000 readings and a serializer per
reading would cost ten times as much (docs/performance.md, telemetry ingest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import (
    FieldProblem,
    check_amps,
    check_bool,
    check_datetime,
    check_id,
    check_kw,
)
from microgrid.telemetry.selectors import batch_assets
from microgrid.topology.choices import AssetKind

READING_FIELDS = {"asset_id", "power_kw", "observed_at", "connected", "requested_kw", "current_a"}
FUTURE_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True)
class Reading:
    asset_pk: int
    asset_id: str
    power_kw: float
    observed_at: datetime
    connected: bool | None
    requested_kw: float | None
    current_a: tuple[float, float, float] | None = None


def check_currents(value: Any) -> tuple[float, float, float]:
    """`current_a`: the asset's L1, L2, L3 currents in A, three finite numbers >= 0."""
    if not isinstance(value, list) or len(value) != 3:
        raise FieldProblem("must be a list of three currents [l1, l2, l3] in A")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(check_amps(item, minimum=0))
        except FieldProblem as exc:
            raise FieldProblem(f"[{i}] {exc}") from None
    return (out[0], out[1], out[2])


def _validate(raw: Any, index: int, assets: dict[str, tuple[int, str]], now: datetime):
    errors: list[ErrorItem] = []
    if not isinstance(raw, dict):
        return None, [
            ErrorItem(
                "FIELD_INVALID", f"readings[{index}] must be an object", field=f"readings[{index}]"
            )
        ]
    asset_id = raw.get("asset_id") if isinstance(raw.get("asset_id"), str) else None

    def bad(field: str, message: str) -> None:
        errors.append(
            ErrorItem(
                "FIELD_INVALID",
                f"readings[{index}].{field} {message}",
                asset_id=asset_id,
                field=field,
                details={"index": index},
            )
        )

    for key in sorted(set(raw) - READING_FIELDS, key=str):
        bad(str(key), "is not a field of a reading")
    try:
        check_id(raw.get("asset_id"), "asset_id")
    except FieldProblem as exc:
        bad("asset_id", str(exc))
        return None, errors
    found = assets.get(asset_id)
    if found is None:
        return None, [
            ErrorItem(
                "ASSET_NOT_FOUND",
                f"readings[{index}]: asset {asset_id!r} is not in this microgrid",
                asset_id=asset_id,
                details={"index": index},
            )
        ]
    asset_pk, kind = found
    power = observed = requested = connected = None
    if "power_kw" not in raw:
        bad("power_kw", "is required")
    else:
        try:
            power = check_kw(raw["power_kw"], minimum=None if kind == AssetKind.BATTERY else 0)
        except FieldProblem as exc:
            bad("power_kw", str(exc))
    if "observed_at" not in raw:
        bad("observed_at", "is required")
    else:
        try:
            observed = check_datetime(raw["observed_at"])
            if observed > now + FUTURE_TOLERANCE:
                bad("observed_at", "is more than 60 s in the future")
                observed = None
        except FieldProblem as exc:
            bad("observed_at", str(exc))
    if kind == AssetKind.CHARGER:
        if "connected" not in raw:
            bad("connected", "is required for a charger")
        else:
            try:
                connected = check_bool(raw["connected"])
            except FieldProblem as exc:
                bad("connected", str(exc))
        if raw.get("requested_kw") is None:
            requested = 0.0
            if connected:
                bad("requested_kw", "is required while a charger is connected")
        else:
            try:
                requested = check_kw(raw["requested_kw"], minimum=0)
            except FieldProblem as exc:
                bad("requested_kw", str(exc))
    else:
        for name in ("connected", "requested_kw"):
            if name in raw:
                bad(name, f"is only for chargers, not {kind}")
    currents = None
    if raw.get("current_a") is not None:
        if kind not in (AssetKind.CHARGER, AssetKind.METER):
            bad("current_a", f"is only for chargers and meters, not {kind}")
        else:
            try:
                currents = check_currents(raw["current_a"])
            except FieldProblem as exc:
                bad("current_a", str(exc))
    if errors:
        return None, errors
    return Reading(asset_pk, asset_id, power, observed, connected, requested, currents), []


def readings_input(microgrid, readings: Any, *, now: datetime) -> list[Reading]:
    """The batch's readings, typed, or TELEMETRY_INVALID with every bad reading itemised."""
    if not isinstance(readings, list):
        raise DomainError(
            "TELEMETRY_INVALID",
            "readings must be a list",
            errors=[ErrorItem("FIELD_INVALID", "readings must be a list", field="readings")],
        )
    limit = settings.TELEMETRY_MAX_BATCH
    if len(readings) > limit:
        raise DomainError(
            "TELEMETRY_INVALID",
            f"a batch holds at most {limit} readings",
            {"limit": limit},
            errors=[ErrorItem("FIELD_INVALID", f"at most {limit} readings", field="readings")],
        )
    wanted = {
        r.get("asset_id")
        for r in readings
        if isinstance(r, dict) and isinstance(r.get("asset_id"), str)
    }
    assets = batch_assets(microgrid, wanted)
    clean: list[Reading] = []
    errors: list[ErrorItem] = []
    for index, raw in enumerate(readings):
        reading, problems = _validate(raw, index, assets, now)
        errors.extend(problems)
        if reading is not None:
            clean.append(reading)
    if errors:
        raise DomainError(
            "TELEMETRY_INVALID",
            f"{len(errors)} invalid reading(s); nothing was stored",
            errors=errors,
            status=422,
        )
    return clean
