from django.utils import timezone
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.openapi import api_doc
from microgrid.common.roles import INGEST, INTEGRATION, READERS
from microgrid.common.serializers import validated
from microgrid.telemetry.api import serializers as answers
from microgrid.telemetry.api.serializers import TelemetryBatch
from microgrid.telemetry.readings import readings_input
from microgrid.telemetry.selectors import charger_get, session_document
from microgrid.telemetry.services import (
    charger_session_delete,
    charger_session_put,
    telemetry_store,
)
from microgrid.topology.selectors import microgrid_get, node_rows


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


class ChargerSessionView(ApiView):
    """A charger's current session: when the vehicle leaves and the energy it needs."""

    read_roles = READERS | {INTEGRATION}
    write_roles = INGEST

    def _charger(self, request, microgrid_id: str, asset_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        return microgrid, charger_get(microgrid, asset_id)

    def _answer(self, microgrid, asset, status: int = 200) -> Response:
        parents = {n["node_id"]: n["parent_id"] for n in node_rows(microgrid)}
        return Response(session_document(microgrid, asset, parents), status=status)

    @api_doc(
        operation_id="charger_session_get",
        summary="A charger's session as cycles see it (sent, or the group's default dwell)",
        ok={200: answers.ChargerSessionAnswer},
        errors={404: "MICROGRID_NOT_FOUND, CHARGER_NOT_FOUND"},
        tag="telemetry",
    )
    def get(self, request, microgrid_id: str, asset_id: str):
        microgrid, asset = self._charger(request, microgrid_id, asset_id)
        return self._answer(microgrid, asset)

    @api_doc(
        operation_id="charger_session_put",
        summary="Set the departure and energy need of the vehicle connected now (idempotent)",
        request=answers.SessionInput,
        ok={200: answers.ChargerSessionAnswer},
        errors={
            400: None,
            404: "MICROGRID_NOT_FOUND, CHARGER_NOT_FOUND",
            409: "CHARGER_NOT_CONNECTED: no vehicle is connected",
            413: None,
            422: "FIELD_INVALID",
        },
        tag="telemetry",
        idempotent=True,
    )
    def put(self, request, microgrid_id: str, asset_id: str):
        microgrid, asset = self._charger(request, microgrid_id, asset_id)
        values = answers.session_input(json_object(request))
        charger_session_put(asset=asset, **values, user=request.user)
        return self._answer(microgrid, asset)

    @api_doc(
        operation_id="charger_session_delete",
        summary="Forget the charger's session (idempotent; kept in history)",
        ok={204: None},
        errors={404: "MICROGRID_NOT_FOUND, CHARGER_NOT_FOUND"},
        tag="telemetry",
    )
    def delete(self, request, microgrid_id: str, asset_id: str):
        _, asset = self._charger(request, microgrid_id, asset_id)
        charger_session_delete(asset=asset, user=request.user)
        return Response(status=204)
