"""`GET /api/microgrids/`: the fleet overview's data (POST, creating a microgrid, is topology's)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from microgrid.common.openapi import api_doc
from microgrid.common.serializers import ID_SCHEMA as ID
from microgrid.fleet import selectors
from microgrid.fleet.api.serializers import FleetList
from microgrid.fleet.choices import FleetState
from microgrid.fleet.filters import SORTS
from microgrid.topology.api.views import MicrogridListView

STRING = {"type": "string"}


def query(name: str, schema: dict, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, schema, OpenApiParameter.QUERY, required=False, description=description
    )


class FleetListView(MicrogridListView):
    @api_doc(
        operation_id="microgrids_list",
        path_ids=False,
        summary="List the microgrids with their live state (the fleet overview), paged",
        description=(
            "Filter, search, sort and page the fleet. `counts` gives, for the other filters, "
            "how many microgrids are in each state (ignoring `state`)."
        ),
        parameters=[
            query("q", STRING, "search in microgrid id, name, depot id and depot name"),
            query(
                "state",
                {"type": "string", "enum": FleetState.values},
                "latest cycle outcome or NO_CYCLE; repeat for several",
            ),
            query(
                "source_mode",
                {"type": "string", "enum": ["MEASURED", "FALLBACK_DERIVED", "FAILSAFE"]},
                "latest cycle's source mode",
            ),
            query("breaches", {"type": "string", "enum": ["open", "none"]}, "open breaches"),
            query("depot_id", ID, "only this depot's"),
            query("enabled", {"type": "boolean"}, "scheduled cycles on or off"),
            query("sort", {"type": "string", "enum": list(SORTS)}, "default microgrid_id"),
            query("page", {"type": "integer", "minimum": 1}, "default 1"),
            query(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": selectors.MAX_PAGE_SIZE},
                f"default {selectors.DEFAULT_PAGE_SIZE}",
            ),
        ],
        ok={200: FleetList},
        errors={422: "FIELD_INVALID (the field named)"},
        tag="topology",
    )
    def get(self, request):
        page = selectors.fleet_page(request.query_params, user=request.user)
        return Response(
            {
                "count": page.count,
                "page": page.page,
                "page_size": page.page_size,
                "pages": page.pages,
                "counts": page.counts,
                "microgrids": [selectors.fleet_row(m) for m in page.rows],
            }
        )
