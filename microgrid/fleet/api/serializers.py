"""The fleet list's answer, for the OpenAPI document (views answer `selectors.fleet_row`)."""

from __future__ import annotations

from rest_framework import serializers

from microgrid.common.serializers import ID_SCHEMA as ID
from microgrid.common.serializers import ResponseSerializer, SchemaField
from microgrid.fleet.choices import FleetState


class FleetCycle(ResponseSerializer):
    cycle_id = serializers.CharField()
    seq = serializers.IntegerField()
    completed_at = serializers.DateTimeField()
    trigger = serializers.DictField()
    outcome = serializers.CharField()
    source_mode = serializers.CharField()
    reason_codes = serializers.ListField(child=serializers.CharField())


class FleetRootLoad(ResponseSerializer):
    node_id = SchemaField(ID)
    load_kw = serializers.FloatField()
    effective_limit_kw = serializers.FloatField()
    load_pct = serializers.FloatField(allow_null=True)


class FleetRow(ResponseSerializer):
    microgrid_id = SchemaField(ID)
    name = serializers.CharField()
    depot_id = SchemaField(ID)
    depot_name = serializers.CharField()
    timezone = serializers.CharField()
    topology_version = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    enabled = serializers.BooleanField()
    state = serializers.ChoiceField(choices=FleetState.values)
    latest_cycle = FleetCycle(allow_null=True)
    root = FleetRootLoad(allow_null=True)
    open_breaches = serializers.IntegerField()
    active_envelopes = serializers.IntegerField()
    envelope_capacity_kw = serializers.FloatField(allow_null=True)
    stations = serializers.IntegerField(help_text="OCPP stations of the microgrid")
    stations_offline = serializers.IntegerField(help_text="of them, not connected now")
    failed_deliveries = serializers.IntegerField(
        help_text="the latest cycle's setpoint deliveries FAILED, REJECTED or EXPIRED"
    )
    vehicles_at_risk = serializers.IntegerField(
        allow_null=True,
        help_text="in the latest cycle: vehicles that cannot finish by their departure even "
        "at full power (spec 4.3); null before the first cycle",
    )


class FleetCounts(ResponseSerializer):
    all = serializers.IntegerField()
    OK = serializers.IntegerField()
    CONSTRAINED = serializers.IntegerField()
    FAILSAFE = serializers.IntegerField()
    NO_CYCLE = serializers.IntegerField()
    with_open_breaches = serializers.IntegerField()


class FleetList(ResponseSerializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    pages = serializers.IntegerField()
    counts = FleetCounts()
    microgrids = FleetRow(many=True)
