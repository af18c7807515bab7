from django.utils import timezone
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.openapi import api_doc
from microgrid.common.roles import INGEST
from microgrid.common.serializers import validated
from microgrid.telemetry.api import serializers as answers
from microgrid.telemetry.api.serializers import TelemetryBatch, readings_input
from microgrid.telemetry.services import telemetry_store
from microgrid.topology.selectors import microgrid_get


class TelemetryView(ApiView):
    write_roles = INGEST

    @api_doc(
        operation_id="telemetry_ingest",
        summary="Ingest a batch of readings (integration, support)",
        description="All or nothing: one bad reading refuses the batch.",
        request=answers.TelemetryBatch,
        ok={202: answers.TelemetryAccepted},
        errors={
            400: None,
            404: "MICROGRID_NOT_FOUND",
            413: None,
            422: "TELEMETRY_INVALID with one errors entry per bad reading (ASSET_NOT_FOUND or "
            "FIELD_INVALID); FIELD_INVALID for a body that is not {readings}",
        },
        tag="telemetry",
        idempotent=True,
    )
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        body = validated(TelemetryBatch, json_object(request))
        now = timezone.now()
        readings = readings_input(microgrid, body["readings"], now=now)
        accepted = telemetry_store(microgrid=microgrid, readings=readings, now=now)
        return Response({"accepted": accepted}, status=202)
