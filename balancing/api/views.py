"""Cycle, rebalance and breach endpoints."""

from __future__ import annotations

from rest_framework.response import Response

from balancing import selectors
from balancing.api import serializers as answers
from balancing.api.serializers import Rebalance
from balancing.filters import BreachFilter, CycleFilter
from balancing.services import cycle_request, cycle_scope, trigger_of
from microgrid.common.api import ApiView, json_object
from microgrid.common.openapi import api_doc
from microgrid.common.roles import WRITERS
from microgrid.common.serializers import validated
from microgrid.topology.selectors import microgrid_get

TAG = "balancing"


class RebalanceView(ApiView):
    write_roles = WRITERS

    @api_doc(
        operation_id="rebalance",
        summary="Run one cycle now, in the request (operator, support)",
        request=Rebalance,
        ok={200: (answers.Cycle, "The cycle that served the request")},
        errors={
            400: None,
            404: "MICROGRID_NOT_FOUND",
            409: "MICROGRID_HAS_NO_TOPOLOGY",
            413: None,
            422: "FIELD_INVALID, NODE_NOT_FOUND (field scope.node_id)",
        },
        tag=TAG,
        idempotent=True,
    )
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        values = validated(Rebalance, json_object(request) if request.body else {})
        scope = cycle_scope(microgrid, values.get("scope"))
        outcome = cycle_request(microgrid=microgrid, trigger=trigger_of("API"), scope=scope)
        return Response(selectors.cycle_document(outcome.cycle))


class CycleListView(ApiView):
    @api_doc(
        operation_id="cycles_list",
        summary="The latest cycles, newest first",
        parameters=CycleFilter.parameters(),
        ok={200: answers.CycleList},
        errors={404: "MICROGRID_NOT_FOUND", 422: "FIELD_INVALID naming the filter"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        cycles = selectors.cycle_list(microgrid, params=request.query_params)
        return Response({"microgrid_id": microgrid.microgrid_id, "cycles": cycles})


class CycleDetailView(ApiView):
    @api_doc(
        operation_id="cycles_get",
        summary="One cycle document",
        ok={200: answers.Cycle},
        errors={404: "MICROGRID_NOT_FOUND, CYCLE_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str, cycle_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        return Response(selectors.cycle_document(selectors.cycle_get(microgrid, cycle_id)))


class BreachListView(ApiView):
    @api_doc(
        operation_id="breaches_list",
        summary="Breaches, newest first",
        parameters=BreachFilter.parameters(),
        ok={200: answers.BreachList},
        errors={404: "MICROGRID_NOT_FOUND", 422: "FIELD_INVALID naming the filter"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        rows = selectors.breach_list(microgrid, params=request.query_params)
        return Response(
            {"microgrid_id": microgrid.microgrid_id, "breaches": [b.to_dict() for b in rows]}
        )


class BreachDetailView(ApiView):
    @api_doc(
        operation_id="breaches_get",
        summary="One breach",
        ok={200: answers.Breach},
        errors={404: "MICROGRID_NOT_FOUND, BREACH_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str, breach_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        return Response(selectors.breach_get(microgrid, breach_id).to_dict())
