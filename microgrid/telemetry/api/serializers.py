"""The telemetry batch and its answer, for the document.

A batch's readings are checked by `telemetry.services` (a reading's rules depend on its
asset's kind, which only the database knows), the body's shape by the view:
`{"readings": [...]}`.
"""

from __future__ import annotations

from rest_framework import serializers

from microgrid.common.fields import MAX_A, MAX_KW
from microgrid.common.serializers import (
    TIMESTAMP_SCHEMA,
    BoolField,
    IdField,
    KwField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
    nullable,
)


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

    readings = TelemetryReadingInput(many=True)


class TelemetryAccepted(ResponseSerializer):
    accepted = serializers.IntegerField(min_value=0)
