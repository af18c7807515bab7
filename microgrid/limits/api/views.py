"""Canonical limit endpoints: parse, call one service or selector, answer."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.filters import AtQuery, query_at
from microgrid.common.openapi import api_doc
from microgrid.common.roles import READERS, WRITERS
from microgrid.limits import selectors, services
from microgrid.limits.api.serializers import (
    ActiveLimits,
    LimitList,
    LimitPolicy,
    LimitPolicyInput,
    policy_input,
)
from microgrid.topology.selectors import microgrid_get

TAG = "limits"
POLICY_ERRORS = {
    400: None,
    404: "MICROGRID_NOT_FOUND, LIMIT_NOT_FOUND",
    409: "LIMIT_ALREADY_EXISTS: a second non-scheduled cap on one target",
    413: None,
    422: "FIELD_INVALID, NODE_NOT_FOUND, LIMIT_EXCEEDS_PHYSICAL_RATING, LIMIT_SCHEDULE_OVERLAP",
}


def _policy_body(policy) -> dict:
    return selectors.policy_dict(selectors.spec_of(policy))


class LimitListView(ApiView):
    read_roles = READERS
    write_roles = WRITERS

    @api_doc(
        operation_id="limits_list",
        summary="The limit policies: Microgrid limits first, then by node in tree order",
        ok={200: LimitList},
        errors={404: "MICROGRID_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        return Response(
            {
                "microgrid_id": microgrid.microgrid_id,
                "timezone": microgrid.depot.timezone,
                "limits": [selectors.policy_dict(p) for p in selectors.policy_list(microgrid)],
            }
        )

    @api_doc(
        operation_id="limits_create",
        summary="Create a Node Limit or Microgrid limit, optionally scheduled (TOU)",
        request=LimitPolicyInput,
        ok={201: LimitPolicy},
        errors={**POLICY_ERRORS, 404: "MICROGRID_NOT_FOUND"},
        tag=TAG,
        idempotent=True,
    )
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        values = policy_input(json_object(request))
        policy = services.limit_policy_create(microgrid=microgrid, **values, user=request.user)
        return Response(_policy_body(policy), status=status.HTTP_201_CREATED)


class LimitDetailView(ApiView):
    read_roles = READERS
    write_roles = WRITERS

    @api_doc(
        operation_id="limits_get",
        summary="One limit policy",
        ok={200: LimitPolicy},
        errors={404: "MICROGRID_NOT_FOUND, LIMIT_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str, policy_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        return Response(_policy_body(selectors.policy_get(microgrid, policy_id)))

    @api_doc(
        operation_id="limits_update",
        summary="Replace a limit policy's scope, node, limit, schedule and source",
        request=LimitPolicyInput,
        ok={200: LimitPolicy},
        errors=POLICY_ERRORS,
        tag=TAG,
    )
    def put(self, request, microgrid_id: str, policy_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        policy = selectors.policy_get(microgrid, policy_id)
        values = policy_input(json_object(request), policy_id=policy.policy_id)
        policy = services.limit_policy_update(policy=policy, **values, user=request.user)
        return Response(_policy_body(selectors.policy_get(microgrid, policy.policy_id)))

    @api_doc(
        operation_id="limits_delete",
        summary="Delete a limit policy (kept in history)",
        ok={204: None},
        errors={404: "MICROGRID_NOT_FOUND, LIMIT_NOT_FOUND"},
        tag=TAG,
    )
    def delete(self, request, microgrid_id: str, policy_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        services.limit_policy_delete(
            policy=selectors.policy_get(microgrid, policy_id), user=request.user
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ActiveLimitsView(ApiView):
    read_roles = READERS

    @api_doc(
        operation_id="limits_active",
        summary="The effective limit of every node at a time, and what gives it",
        parameters=AtQuery.parameters(),
        ok={200: ActiveLimits},
        errors={404: "MICROGRID_NOT_FOUND", 422: "FIELD_INVALID (field at)"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        at = query_at(request.query_params)
        return Response(selectors.active_limits_document(microgrid, at))
