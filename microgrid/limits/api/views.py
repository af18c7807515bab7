"""Canonical limit endpoints: parse, call one service or selector, answer."""

from __future__ import annotations

import re

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_datetime
from microgrid.common.roles import READERS, WRITERS
from microgrid.limits import selectors, services
from microgrid.topology.selectors import microgrid_get

OBJ = OpenApiTypes.OBJECT


def _policy_body(policy) -> dict:
    return selectors.policy_dict(selectors.spec_of(policy))


class LimitListView(ApiView):
    read_roles = READERS
    write_roles = WRITERS

    @extend_schema(responses={200: OBJ}, operation_id="limits_list")
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        return Response(
            {
                "microgrid_id": microgrid.microgrid_id,
                "timezone": microgrid.depot.timezone,
                "limits": [selectors.policy_dict(p) for p in selectors.policy_list(microgrid)],
            }
        )

    @extend_schema(request=OBJ, responses={201: OBJ}, operation_id="limits_create")
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        policy = services.limit_policy_create(
            microgrid=microgrid, data=json_object(request), user=request.user
        )
        return Response(_policy_body(policy), status=status.HTTP_201_CREATED)


class LimitDetailView(ApiView):
    read_roles = READERS
    write_roles = WRITERS

    @extend_schema(responses={200: OBJ}, operation_id="limits_get")
    def get(self, request, microgrid_id: str, policy_id: str):
        microgrid = microgrid_get(microgrid_id)
        return Response(_policy_body(selectors.policy_get(microgrid, policy_id)))

    @extend_schema(request=OBJ, responses={200: OBJ}, operation_id="limits_update")
    def put(self, request, microgrid_id: str, policy_id: str):
        microgrid = microgrid_get(microgrid_id)
        policy = selectors.policy_get(microgrid, policy_id)
        policy = services.limit_policy_update(
            policy=policy, data=json_object(request), user=request.user
        )
        return Response(_policy_body(selectors.policy_get(microgrid, policy.policy_id)))

    @extend_schema(responses={204: None}, operation_id="limits_delete")
    def delete(self, request, microgrid_id: str, policy_id: str):
        microgrid = microgrid_get(microgrid_id)
        services.limit_policy_delete(
            policy=selectors.policy_get(microgrid, policy_id), user=request.user
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ActiveLimitsView(ApiView):
    read_roles = READERS

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "at", OpenApiTypes.DATETIME, required=False, description="ISO 8601; default now"
            )
        ],
        responses={200: OBJ},
        operation_id="limits_active",
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
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
