"""Cycle, rebalance and breach endpoints."""

from __future__ import annotations

from rest_framework.response import Response

from balancing import selectors
from balancing.choices import BreachStatus, Outcome, SourceMode, TriggerType
from balancing.services import check_scope, cycle_request, trigger_of
from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.openapi import ID, LIMIT_PARAM, api_doc, query, ref
from microgrid.common.roles import WRITERS
from microgrid.topology.selectors import microgrid_get

TAG = "balancing"


class RebalanceView(ApiView):
    write_roles = WRITERS

    @api_doc(
        operation_id="rebalance",
        summary="Run one cycle now, in the request (operator, support)",
        request=ref("Rebalance"),
        ok={200: (ref("Cycle"), "The cycle that served the request")},
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
    @api_doc(
        operation_id="cycles_list",
        summary="The latest cycles, newest first",
        parameters=[
            query("trigger", {"type": "string", "enum": TriggerType.values}),
            query("outcome", {"type": "string", "enum": Outcome.values}),
            query("source_mode", {"type": "string", "enum": SourceMode.values}),
            query("since", {"type": "string", "format": "date-time"}, "started at or after"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 50"),
        ],
        ok={200: ref("CycleList")},
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
        ok={200: ref("Cycle")},
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
        parameters=[
            query("status", {"type": "string", "enum": BreachStatus.values}),
            query("node_id", ID),
            LIMIT_PARAM,
        ],
        ok={200: ref("BreachList")},
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
        ok={200: ref("Breach")},
        errors={404: "MICROGRID_NOT_FOUND, BREACH_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str, breach_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        return Response(selectors.breach_get(microgrid, breach_id).to_dict())
