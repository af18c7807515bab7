"""The setpoints API's query and answer, stated once (drf-spectacular derives the schema)."""

from __future__ import annotations

from rest_framework import serializers

from dispatch.choices import DeliveryStatus


class SetpointSerializer(serializers.Serializer):
    asset_id = serializers.CharField()
    limit_kw = serializers.FloatField(allow_null=True, help_text="null: no valid setpoint")
    valid_until = serializers.DateTimeField(allow_null=True)
    cycle_id = serializers.CharField(allow_null=True)
    dispatch_status = serializers.ChoiceField(choices=DeliveryStatus.choices, allow_null=True)


class ScopeBudgetSerializer(serializers.Serializer):
    scope = serializers.DictField(help_text='{"type": "MICROGRID"} or {"type": "NODE", "node_id"}')
    budget_kw = serializers.FloatField()
    valid_until = serializers.DateTimeField()
    cycle_id = serializers.CharField()
    dispatch_status = serializers.ChoiceField(choices=DeliveryStatus.choices)


class SetpointsSerializer(serializers.Serializer):
    microgrid_id = serializers.CharField()
    at = serializers.DateTimeField()
    setpoints = SetpointSerializer(many=True, help_text="every charger, by asset_id")
    scope_budgets = ScopeBudgetSerializer(many=True)
