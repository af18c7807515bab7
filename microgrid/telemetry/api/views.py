from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.roles import INGEST
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.selectors import microgrid_get


class TelemetryView(ApiView):
    write_roles = INGEST

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={202: OpenApiTypes.OBJECT},
        operation_id="telemetry_ingest",
    )
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        body = json_object(request)
        if set(body) != {"readings"}:
            raise DomainError.from_errors(
                [ErrorItem("FIELD_INVALID", 'the body is {"readings": [...]}', field="readings")]
            )
        accepted = telemetry_ingest(microgrid=microgrid, readings=body["readings"])
        return Response({"accepted": accepted}, status=202)
