from rest_framework import serializers


class EvseSerializer(serializers.Serializer):
    evse_id = serializers.IntegerField()
    asset_id = serializers.CharField(
        allow_null=True, help_text="the charger naming this station and EVSE (null: none)"
    )
    status = serializers.CharField(allow_null=True, help_text="last StatusNotification")
    status_at = serializers.DateTimeField(allow_null=True)
    profile_status = serializers.CharField(allow_null=True, help_text="last setpoint profile")
    failsafe_status = serializers.CharField(allow_null=True, help_text="stack level 0 profile")
    soc_pct = serializers.FloatField(
        allow_null=True, help_text="the vehicle's state of charge last reported (SoC), %"
    )
    soc_at = serializers.DateTimeField(allow_null=True)


class BootSerializer(serializers.Serializer):
    vendor = serializers.CharField()
    model = serializers.CharField()
    firmware = serializers.CharField()


class StationSerializer(serializers.Serializer):
    station_id = serializers.CharField()
    connected = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    protocol = serializers.CharField(allow_null=True)
    boot = BootSerializer()
    charging_rate_unit = serializers.ChoiceField(choices=["W", "A"])
    gateway = serializers.CharField(allow_null=True)
    evses = EvseSerializer(many=True)


class StationListSerializer(serializers.Serializer):
    microgrid_id = serializers.CharField()
    stations = StationSerializer(many=True)
