"""Canonical limit endpoints: parse, call one service or selector, answer."""

from __future__ import annotations

import re

from django.utils import timezone
from rest_framework import status
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_datetime
from microgrid.common.openapi import AT_PARAM, api_doc, ref
from microgrid.common.roles import READERS, WRITERS
from microgrid.limits import selectors, services
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
        ok={200: ref("LimitList")},
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
        request=ref("LimitPolicyInput"),
        ok={201: ref("LimitPolicy")},
        errors={**POLICY_ERRORS, 404: "MICROGRID_NOT_FOUND"},
        tag=TAG,
        idempotent=True,
    )
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        policy = services.limit_policy_create(
            microgrid=microgrid, data=json_object(request), user=request.user
        )
        return Response(_policy_body(policy), status=status.HTTP_201_CREATED)


class LimitDetailView(ApiView):
    read_roles = READERS
    write_roles = WRITERS

    @api_doc(
        operation_id="limits_get",
        summary="One limit policy",
        ok={200: ref("LimitPolicy")},
        errors={404: "MICROGRID_NOT_FOUND, LIMIT_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str, policy_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        return Response(_policy_body(selectors.policy_get(microgrid, policy_id)))

    @api_doc(
        operation_id="limits_update",
        summary="Replace a limit policy's scope, node, limit, schedule and source",
        request=ref("LimitPolicyInput"),
        ok={200: ref("LimitPolicy")},
        errors=POLICY_ERRORS,
        tag=TAG,
    )
    def put(self, request, microgrid_id: str, policy_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        policy = selectors.policy_get(microgrid, policy_id)
        policy = services.limit_policy_update(
            policy=policy, data=json_object(request), user=request.user
        )
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
        parameters=[AT_PARAM],
        ok={200: ref("ActiveLimits")},
        errors={404: "MICROGRID_NOT_FOUND", 422: "FIELD_INVALID (field at)"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        at = parse_at(request.query_params.get("at"))
        return Response(selectors.active_limits_document(microgrid, at))


def parse_at(raw: str | None):
    """The `at` query parameter (default now); FIELD_INVALID field `at` when it is not a time.

    An unencoded "+" of an offset arrives as a space; it is read as the "+"
    the client meant.
    """
    if raw is None:
        return timezone.now()
    text = _PLUS_AS_SPACE.sub(r"+\1", raw.strip())
    try:
        return check_datetime(text)
    except FieldProblem as exc:
        raise DomainError.from_errors(
            [ErrorItem("FIELD_INVALID", f"at {exc}", field="at")]
        ) from None


_PLUS_AS_SPACE = re.compile(r" (\d{2}(?::?\d{2})?)$")
