"""The telemetry API's bodies and answers: `TelemetryBatch` reads the body
(`{"readings": [...]}`), whose readings `telemetry.readings.readings_input` checks; the
charger session body and answer."""

from __future__ import annotations

from rest_framework import serializers

from microgrid.common.fields import (
    MAX_A,
    MAX_KW,
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
