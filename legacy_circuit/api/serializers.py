"""The frozen legacy answers, for the document (their bodies are read by `services`, whose
messages the legacy contract fixes)."""

from __future__ import annotations

from rest_framework import serializers

from microgrid.common.serializers import ID_SCHEMA, ResponseSerializer, SchemaField, ref
from microgrid.limits.api.serializers import HHMM_SCHEMA
from microgrid.limits.schedules import DAYS


class LegacyCircuit(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    name = serializers.CharField()
    available_capacity_kw = serializers.FloatField()
    configured_capacity_kw = serializers.FloatField()


class LegacyRebalance(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    microgrid_id = SchemaField(ID_SCHEMA)
    scope = SchemaField(ref("LegacyScope"))
    cycle_id = serializers.CharField()
    status = serializers.ChoiceField(["COMPLETED"])


class LegacyTouLimit(ResponseSerializer):
    start = SchemaField(HHMM_SCHEMA)
    end = SchemaField(HHMM_SCHEMA)
    days = SchemaField(
        {
            "type": "array",
            "items": {"type": "string", "enum": list(DAYS)},
            "minItems": 1,
            "maxItems": 7,
            "uniqueItems": True,
        }
    )
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
    scope = SchemaField({"allOf": [ref("AliasScope")], "nullable": True})
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
