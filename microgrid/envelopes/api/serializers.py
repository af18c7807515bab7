"""The withdrawal body, the envelope documents and the OSCP messages, for the document.

OSCP messages are read by `envelopes.oscp` (the protocol's parser: OSCP_MESSAGE_INVALID with
the spec's field paths); their serializers here state the same shapes. OSCP objects are open:
unknown fields are ignored (and kept in the stored raw message).
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from microgrid.common.fields import check_text
from microgrid.common.serializers import (
    ID_SCHEMA,
    TIMESTAMP_SCHEMA,
    CheckedField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
    validated,
)
from microgrid.envelopes.choices import (
    CapacityUnit,
    Direction,
    Enforcement,
    EnvelopeState,
    EnvelopeStatus,
    ForecastType,
    MeasurementConfiguration,
    Phase,
)
from microgrid.envelopes.oscp import MAX_BLOCKS, MAX_HEARTBEAT_INTERVAL_S, VERSION
from microgrid.topology.api.serializers import ScopeAnswerField

MAX_REASON_CHARS = 500


def _reason(value: Any) -> str:
    return check_text(
        value if value is not None else "", max_length=MAX_REASON_CHARS, allow_empty=True
    )


class EnvelopeWithdraw(RequestSerializer):
    """Why support withdraws the envelope (optional)."""

    unknown_text = "is not a field of a withdrawal"

    reason = CheckedField(
        _reason,
        {"type": "string", "maxLength": MAX_REASON_CHARS, "nullable": True},
        required=False,
        allow_null=True,
        default="",
    )


def withdraw_input(raw: Any) -> dict[str, Any]:
    """`envelope_withdraw`'s keyword arguments for a client's body, or FIELD_INVALID."""
    values = validated(EnvelopeWithdraw, raw)
    return {"reason": values.get("reason") or ""}


# -- answers ------------------------------------------------------------------------------------


class EnvelopeConversion(ResponseSerializer):
    voltage_v = serializers.FloatField()
    phases = serializers.IntegerField()


class EnvelopeSource(ResponseSerializer):
    protocol = serializers.ChoiceField(["OSCP"])
    version = serializers.CharField()
    message_type = serializers.CharField()
    peer = serializers.CharField()
    group_id = serializers.CharField()
    request_id = serializers.CharField()
    correlation_id = serializers.CharField(allow_null=True)
    received_at = serializers.DateTimeField()
    block_index = serializers.IntegerField()


class EnvelopeLegacyCircuit(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    available_capacity_kw = serializers.FloatField()


class Envelope(ResponseSerializer):
    envelope_id = SchemaField({"type": "string", "example": "OE-1"})
    microgrid_id = SchemaField(ID_SCHEMA)
    scope = ScopeAnswerField()
    direction = serializers.ChoiceField(Direction.values)
    forecast_type = serializers.ChoiceField(ForecastType.values)
    capacity = serializers.FloatField()
    unit = serializers.ChoiceField(CapacityUnit.values)
    phase = serializers.ChoiceField(Phase.values)
    capacity_kw = serializers.FloatField()
    capacity_explanation = serializers.CharField(allow_null=True)
    conversion = EnvelopeConversion(allow_null=True)
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    state = serializers.ChoiceField(EnvelopeState.values)
    status = serializers.ChoiceField(EnvelopeStatus.values)
    enforcement = serializers.ChoiceField(Enforcement.values)
    peer_offline = serializers.BooleanField()
    source = EnvelopeSource()
    superseded_by = serializers.CharField(allow_null=True)
    superseded_at = serializers.DateTimeField(allow_null=True)
    split_from = serializers.CharField(allow_null=True)
    withdrawn_at = serializers.DateTimeField(allow_null=True)
    withdrawn_by_peer = serializers.BooleanField()
    withdrawn_by = serializers.CharField(allow_null=True)
    withdraw_reason = serializers.CharField(allow_null=True)
    legacy_circuit = EnvelopeLegacyCircuit(allow_null=True)


class EnvelopeTransition(ResponseSerializer):
    transition = serializers.CharField()
    at = serializers.DateTimeField()
    recorded_at = serializers.DateTimeField()


class EnvelopeHistoryEntry(ResponseSerializer):
    at = serializers.DateTimeField()
    change = serializers.CharField()
    by = serializers.CharField(allow_null=True)
    state = serializers.ChoiceField(EnvelopeState.values)
    superseded_by = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_null=True)


class EnvelopeDetail(Envelope):
    supersedes = serializers.ListField(child=serializers.CharField())
    parts = serializers.ListField(child=serializers.CharField())
    transitions = EnvelopeTransition(many=True)
    history = EnvelopeHistoryEntry(many=True, help_text="oldest first")


class EnvelopeList(ResponseSerializer):
    microgrid_id = SchemaField(ID_SCHEMA)
    at = serializers.DateTimeField()
    envelopes = Envelope(many=True)


class ActiveEnvelope(ResponseSerializer):
    envelope_id = serializers.CharField()
    scope = ScopeAnswerField()
    direction = serializers.ChoiceField(Direction.values)
    forecast_type = serializers.ChoiceField(ForecastType.values)
    capacity_kw = serializers.FloatField()
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    enforcement = serializers.ChoiceField(Enforcement.values)
    peer = serializers.CharField()
    peer_offline = serializers.BooleanField()


# -- OSCP 2.0 inbound ---------------------------------------------------------------------------


class OscpForecastedBlock(serializers.Serializer):
    capacity = serializers.FloatField(min_value=0, help_text="0 means pause")
    phase = serializers.ChoiceField(Phase.values)
    unit = serializers.ChoiceField(CapacityUnit.values)
    start_time = SchemaField(TIMESTAMP_SCHEMA)
    end_time = SchemaField({**TIMESTAMP_SCHEMA, "description": "after start_time"})


class OscpUpdateGroupCapacityForecast(serializers.Serializer):
    group_id = SchemaField({**ID_SCHEMA, "example": "GRP-N"})
    type = serializers.ChoiceField(ForecastType.values)
    forecasted_blocks = serializers.ListField(
        child=OscpForecastedBlock(),
        max_length=MAX_BLOCKS,
        help_text="blocks of one message and phase must not overlap; an empty list withdraws "
        "the peer's forecast of this group and type",
    )


class OscpHeartbeat(serializers.Serializer):
    offline_mode_at = SchemaField(
        {"type": "string", "description": "ISO 8601; without an offset it is taken as UTC"}
    )


class OscpRequiredBehaviour(serializers.Serializer):
    heartbeat_interval = serializers.IntegerField(
        min_value=1, max_value=MAX_HEARTBEAT_INTERVAL_S, required=False, allow_null=True
    )
    measurement_configuration = serializers.ListField(
        child=serializers.ChoiceField(MeasurementConfiguration.values), required=False
    )


class OscpHandshake(serializers.Serializer):
    required_behaviour = OscpRequiredBehaviour(required=False)


class OscpVersionUrl(serializers.Serializer):
    version = SchemaField({"type": "string"})
    base_url = SchemaField({"type": "string", "format": "uri"})


class OscpRegister(serializers.Serializer):
    token = SchemaField({"type": "string", "minLength": 16, "maxLength": 256})
    version_url = serializers.ListField(
        child=OscpVersionUrl(), min_length=1, help_text=f"must offer version {VERSION}"
    )
