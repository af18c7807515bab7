"""GET /api/microgrids/{id}/setpoints/: what every charger should be doing now (the pull
channel: an integration that polls this needs no webhook)."""

from __future__ import annotations

from rest_framework.response import Response

from dispatch import selectors
from dispatch.api.serializers import SetpointsSerializer
from dispatch.filters import SetpointFilter
from microgrid.common.api import ApiView
from microgrid.common.openapi import api_doc
from microgrid.common.roles import INTEGRATION, READERS
from microgrid.topology.selectors import microgrid_get


class SetpointsView(ApiView):
    read_roles = READERS | {INTEGRATION}

    @api_doc(
        operation_id="setpoints_current",
        summary="The currently valid setpoint of every charger, and scope budgets "
        "(integration, operator, support)",
        parameters=SetpointFilter.parameters(),
        ok={200: SetpointsSerializer},
        errors={404: "MICROGRID_NOT_FOUND", 422: "FIELD_INVALID naming the filter"},
        tag="dispatch",
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        asset_id = SetpointFilter(request.query_params).value("asset_id")
        return Response(selectors.setpoints_current(microgrid, asset_id=asset_id))
