"""The telemetry batch, validated here, at the edge, and its answer.

`TelemetryBatch` reads the body (`{"readings": [...]}`); `readings_input` checks every
reading of it and answers the typed `Reading`s that `services.telemetry_store` stores, or
refuses the whole batch: TELEMETRY_INVALID with one error per bad reading (ASSET_NOT_FOUND,
or FIELD_INVALID naming the field, the asset and the reading's index). A reading's rules
depend on its asset's kind, so the batch's assets are read first (one query). The checks
are `common.fields`' checkers, the ones every CheckedField runs, called directly: a batch
holds up to 5,000 readings and a serializer per reading would cost ten times as much
(docs/performance.md, telemetry ingest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from rest_framework import serializers

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import (
    MAX_A,
    MAX_KW,
    FieldProblem,
    check_amps,
    check_bool,
    check_datetime,
    check_id,
    check_kw,
)
from microgrid.common.serializers import (
    TIMESTAMP_SCHEMA,
    BoolField,
    IdField,
    KwField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
    ShapeField,
    TimestampField,
    nullable,
    validated,
)
from microgrid.telemetry.choices import EnergySource, SessionOrigin
from microgrid.telemetry.selectors import batch_assets
from microgrid.topology.choices import AssetKind


class TelemetryReadingInput(RequestSerializer):
    """One reading of one asset."""

    asset_id = IdField()
    power_kw = KwField(
        maximum=MAX_KW, help_text=">= 0 except for batteries (negative: discharging)"
    )
    observed_at = SchemaField(TIMESTAMP_SCHEMA)
    connected = BoolField(required=False, help_text="chargers only (required there)")
    requested_kw = KwField(minimum=0, required=False, allow_null=True, help_text="chargers only")
    current_a = SchemaField(
        nullable(
            {
                "type": "array",
                "items": {"type": "number", "minimum": 0, "maximum": MAX_A},
                "minItems": 3,
                "maxItems": 3,
                "description": "chargers and meters only: the currents (A) of the asset's own "
                "L1, L2, L3",
            }
        ),
        required=False,
    )


class TelemetryBatch(RequestSerializer):
    """A batch of readings: all or nothing."""

    unknown_text = 'is not a field of a telemetry batch (the body is {"readings": [...]})'

    # Taken as sent, then checked by `readings_input` (TELEMETRY_INVALID, reading by reading).
    readings = ShapeField(TelemetryReadingInput, many=True)


class TelemetryAccepted(ResponseSerializer):
    accepted = serializers.IntegerField(min_value=0)


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


# Energies in kWh and SoC in percent read like powers: finite numbers, 3 decimals.
MAX_SESSION_KWH = 10_000.0


class SessionInput(RequestSerializer):
    """`PUT .../chargers/{asset_id}/session/`: when the vehicle leaves and the energy it needs,
    either as `energy_needed_kwh` or as target and arrival SoC with the battery capacity."""

    departure_at = TimestampField()
    energy_needed_kwh = KwField(exclusive_minimum=0, maximum=MAX_SESSION_KWH, required=False)
    target_soc_percent = KwField(exclusive_minimum=0, maximum=100, required=False)
    arrival_soc_percent = KwField(minimum=0, maximum=100, required=False)
    battery_capacity_kwh = KwField(exclusive_minimum=0, maximum=MAX_SESSION_KWH, required=False)

    _SOC = ("target_soc_percent", "arrival_soc_percent", "battery_capacity_kwh")

    def validate(self, attrs):
        soc_given = [k for k in self._SOC if k in attrs]
        if "energy_needed_kwh" in attrs and soc_given:
            raise serializers.ValidationError(
                {
                    "energy_needed_kwh": "energy_needed_kwh and a target SoC are alternatives: "
                    "send one of them"
                }
            )
        if soc_given and len(soc_given) != len(self._SOC):
            missing = [k for k in self._SOC if k not in attrs]
            raise serializers.ValidationError(
                {k: f"{k} is required with {', '.join(soc_given)}" for k in missing}
            )
        if soc_given and attrs["target_soc_percent"] <= attrs["arrival_soc_percent"]:
            raise serializers.ValidationError(
                {"target_soc_percent": "target_soc_percent must be above arrival_soc_percent"}
            )
        return attrs


def session_input(data) -> dict:
    return dict(validated(SessionInput, data))


class ChargerSessionAnswer(ResponseSerializer):
    microgrid_id = serializers.CharField()
    asset_id = serializers.CharField()
    connected = serializers.BooleanField()
    plugged_in_at = serializers.DateTimeField(allow_null=True)
    departure_at = serializers.DateTimeField(allow_null=True)
    departure_source = serializers.ChoiceField(SessionOrigin.choices, allow_null=True)
    energy_needed_kwh = serializers.FloatField(allow_null=True)
    energy_source = serializers.ChoiceField(
        [*EnergySource.values, "DEFAULT_ENERGY"], allow_null=True
    )
    energy_delivered_kwh = serializers.FloatField(allow_null=True)
    energy_remaining_kwh = serializers.FloatField(allow_null=True)
    target_soc_percent = serializers.FloatField(allow_null=True)
    arrival_soc_percent = serializers.FloatField(allow_null=True)
    battery_capacity_kwh = serializers.FloatField(allow_null=True)
