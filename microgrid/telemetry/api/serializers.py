"""The telemetry answer. A batch's readings are checked by `telemetry.services` (a reading's
rules depend on its asset's kind, which only the database knows), the body's shape by the
view: `{"readings": [...]}`."""

from __future__ import annotations

from rest_framework import serializers

from microgrid.common.serializers import ResponseSerializer


class TelemetryAccepted(ResponseSerializer):
    accepted = serializers.IntegerField(min_value=0)
