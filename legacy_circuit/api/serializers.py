"""The frozen legacy answers, for the document (their bodies are read by `services`, whose
messages the legacy contract fixes)."""

from __future__ import annotations

from rest_framework import serializers

from legacy_circuit.services import MAX_TOU_LIMITS
from microgrid.common.serializers import (
    ID_SCHEMA,
    KwField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
    nullable,
)
from microgrid.limits.api.serializers import HHMM_SCHEMA
from microgrid.limits.schedules import DAYS

DAYS_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "enum": list(DAYS)},
    "minItems": 1,
    "maxItems": 7,
    "uniqueItems": True,
}


class LegacyScope(ResponseSerializer):
    """The frozen legacy shape: node_id is null for the whole microgrid."""

    type = serializers.ChoiceField(["MICROGRID", "NODE"])
    node_id = SchemaField(nullable(ID_SCHEMA))


class AliasScope(ResponseSerializer):
    """A circuit alias's scope as resolved (ASSET for a per-charger circuit)."""

    type = serializers.ChoiceField(["MICROGRID", "NODE", "ASSET"])
    node_id = SchemaField(ID_SCHEMA, required=False)
    asset_id = SchemaField(ID_SCHEMA, required=False)


class LegacyCircuit(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    name = serializers.CharField()
    available_capacity_kw = serializers.FloatField()
    configured_capacity_kw = serializers.FloatField()


class LegacyRebalance(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    microgrid_id = SchemaField(ID_SCHEMA)
    scope = LegacyScope()
    cycle_id = serializers.CharField()
    status = serializers.ChoiceField(["COMPLETED"])


class LegacyTouLimit(ResponseSerializer):
    start = SchemaField(HHMM_SCHEMA)
    end = SchemaField(HHMM_SCHEMA)
    days = SchemaField(DAYS_SCHEMA)
    limit_kw = serializers.FloatField()


class LegacyTouLimits(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    tou_limits = LegacyTouLimit(many=True)


class AliasUsageFilters(ResponseSerializer):
    circuit_id = serializers.CharField(allow_null=True)
    client = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)


class AliasUsageRow(ResponseSerializer):
    circuit_id = serializers.CharField()
    endpoint = serializers.CharField()
    method = serializers.CharField()
    client = serializers.CharField(allow_null=True)
    status_code = serializers.IntegerField()
    microgrid_id = serializers.CharField(allow_null=True)
    scope = AliasScope(allow_null=True)
    failure_code = serializers.CharField(allow_null=True)
    failure_reason = serializers.CharField(allow_null=True)
    cycle_id = serializers.CharField(allow_null=True)
    at = serializers.DateTimeField()


class AliasUsageSummary(ResponseSerializer):
    client = serializers.CharField(allow_null=True)
    circuit_id = serializers.CharField()
    calls = serializers.IntegerField()
    failures = serializers.IntegerField()
    first_used_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField()


class AliasUsageReport(ResponseSerializer):
    filters = AliasUsageFilters()
    usage = AliasUsageRow(many=True, help_text="newest first")
    summary = AliasUsageSummary(many=True, help_text="by client, then circuit")


# -- the TOU body, for the document (`services.tou_policies` reads it, in legacy wording) -------


class LegacyTouLimitInput(RequestSerializer):
    """One TOU limit: limit_kw from start to end on the days named."""

    start = SchemaField(HHMM_SCHEMA)
    end = SchemaField(HHMM_SCHEMA)
    days = SchemaField(DAYS_SCHEMA)
    limit_kw = KwField(exclusive_minimum=0)


class LegacyTouLimitsInput(RequestSerializer):
    """Every TOU limit of the circuit (replaces them all)."""

    tou_limits = serializers.ListField(child=LegacyTouLimitInput(), max_length=MAX_TOU_LIMITS)
    circuit_id = SchemaField(
        {**ID_SCHEMA, "description": "may be sent back as read: the URL's circuit"},
        required=False,
    )
