"""GET /api/microgrids/{id}/stations/: the microgrid's OCPP stations (operator, support)."""

from rest_framework.response import Response

from microgrid.common.api import ApiView
from microgrid.common.openapi import api_doc
from microgrid.topology.selectors import microgrid_get
from stations.api.serializers import StationListSerializer
from stations.selectors import station_list


class StationListView(ApiView):
    @api_doc(
        operation_id="stations_list",
        summary="OCPP charging stations: connected, last seen, protocol, boot info, EVSEs",
        ok={200: StationListSerializer},
        errors={404: "MICROGRID_NOT_FOUND"},
        tag="stations",
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        return Response(
            {"microgrid_id": microgrid.microgrid_id, "stations": station_list(microgrid)}
        )
