"""Cycle, rebalance and breach endpoints."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from balancing import selectors
from balancing.services import check_scope, cycle_request, trigger_of
from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.roles import WRITERS
from microgrid.topology.selectors import microgrid_get

OBJ = OpenApiTypes.OBJECT


class RebalanceView(ApiView):
    write_roles = WRITERS

    @extend_schema(request=OBJ, responses={200: OBJ}, operation_id="rebalance")
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        body = json_object(request) if request.body else {}
        unknown = sorted(set(body) - {"scope"})
        if unknown:
            raise DomainError.from_errors(
                [
                    ErrorItem(
                        "FIELD_INVALID", f"{k} is not a field of a rebalance request", field=k
                    )
                    for k in unknown
                ]
            )
        scope = check_scope(microgrid, body.get("scope"))
        outcome = cycle_request(microgrid=microgrid, trigger=trigger_of("API"), scope=scope)
        return Response(selectors.cycle_document(outcome.cycle))


class CycleListView(ApiView):
    @extend_schema(
        parameters=[
            OpenApiParameter("trigger", str, required=False),
            OpenApiParameter("outcome", str, required=False),
            OpenApiParameter("source_mode", str, required=False),
            OpenApiParameter("since", str, required=False),
            OpenApiParameter("limit", int, required=False),
        ],
        responses={200: OBJ},
        operation_id="cycles_list",
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        cycles = selectors.cycle_list(microgrid, params=request.query_params)
        return Response({"microgrid_id": microgrid.microgrid_id, "cycles": cycles})


class CycleDetailView(ApiView):
    @extend_schema(responses={200: OBJ}, operation_id="cycles_get")
    def get(self, request, microgrid_id: str, cycle_id: str):
        microgrid = microgrid_get(microgrid_id)
        return Response(selectors.cycle_document(selectors.cycle_get(microgrid, cycle_id)))


class BreachListView(ApiView):
    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, required=False, enum=["OPEN", "RESOLVED"]),
            OpenApiParameter("node_id", str, required=False),
            OpenApiParameter("limit", int, required=False),
        ],
        responses={200: OBJ},
        operation_id="breaches_list",
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        rows = selectors.breach_list(microgrid, params=request.query_params)
        return Response(
            {"microgrid_id": microgrid.microgrid_id, "breaches": [b.to_dict() for b in rows]}
        )


class BreachDetailView(ApiView):
    @extend_schema(responses={200: OBJ}, operation_id="breaches_get")
    def get(self, request, microgrid_id: str, breach_id: str):
        microgrid = microgrid_get(microgrid_id)
        return Response(selectors.breach_get(microgrid, breach_id).to_dict())
