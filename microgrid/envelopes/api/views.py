"""Canonical operating-envelope endpoints: list, detail with history, withdraw (support)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.roles import READERS, SUPPORT_ONLY
from microgrid.envelopes import selectors, services
from microgrid.envelopes.interim import legacy_values
from microgrid.limits.api.views import parse_at
from microgrid.topology.selectors import microgrid_get

OBJ = OpenApiTypes.OBJECT


class EnvelopeListView(ApiView):
    read_roles = READERS

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                str,
                required=False,
                description="PENDING, ACTIVE, EXPIRED, WITHDRAWN, SUPERSEDED (comma-separated)",
            ),
            OpenApiParameter(
                "at", OpenApiTypes.DATETIME, required=False, description="default now"
            ),
            OpenApiParameter("limit", int, required=False, description="1-1000, default 200"),
        ],
        responses={200: OBJ},
        operation_id="operating_envelopes_list",
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        params = request.query_params
        statuses = selectors.parse_statuses(params.get("status"))
        limit = selectors.parse_limit(params.get("limit"))
        at = parse_at(params.get("at"))
        rows = selectors.envelope_list(microgrid, at=at, statuses=statuses, limit=limit)
        legacy = legacy_values(microgrid) if rows else {}
        return Response(
            {
                "microgrid_id": microgrid.microgrid_id,
                "at": at.isoformat(),
                "envelopes": [selectors.envelope_dict(e, at=at, legacy=legacy) for e in rows],
            }
        )


class EnvelopeDetailView(ApiView):
    read_roles = READERS

    @extend_schema(
        parameters=[
            OpenApiParameter("at", OpenApiTypes.DATETIME, required=False, description="default now")
        ],
        responses={200: OBJ},
        operation_id="operating_envelopes_get",
    )
    def get(self, request, microgrid_id: str, envelope_id: str):
        microgrid = microgrid_get(microgrid_id)
        envelope = selectors.envelope_get(microgrid, envelope_id)
        at = parse_at(request.query_params.get("at"))
        return Response(selectors.envelope_detail(envelope, at=at, legacy=legacy_values(microgrid)))


class EnvelopeWithdrawView(ApiView):
    write_roles = SUPPORT_ONLY

    @extend_schema(request=OBJ, responses={200: OBJ}, operation_id="operating_envelopes_withdraw")
    def post(self, request, microgrid_id: str, envelope_id: str):
        microgrid = microgrid_get(microgrid_id)
        envelope = selectors.envelope_get(microgrid, envelope_id)
        body = json_object(request) if request.body else {}
        unknown = sorted(set(body) - {"reason"})
        if unknown:
            raise DomainError.from_errors(
                [
                    ErrorItem("FIELD_INVALID", f"{k} is not a field of a withdrawal", field=k)
                    for k in unknown
                ]
            )
        envelope = services.envelope_withdraw(
            envelope=envelope, user=request.user, reason=body.get("reason", "")
        )
        envelope = selectors.envelope_get(microgrid, envelope.envelope_id)
        return Response(
            selectors.envelope_detail(
                envelope, at=envelope.withdrawn_at, legacy=legacy_values(microgrid)
            )
        )
