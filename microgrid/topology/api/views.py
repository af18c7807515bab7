"""Canonical topology endpoints: parse, call one service or selector, answer."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.roles import READERS, SUPPORT_ONLY, WRITERS
from microgrid.topology import selectors, services
from microgrid.topology.card import microgrid_card, microgrid_summary

OBJ = OpenApiTypes.OBJECT


class MicrogridListView(ApiView):
    read_roles = READERS
    write_roles = SUPPORT_ONLY

    @extend_schema(
        parameters=[OpenApiParameter("depot_id", str, required=False)],
        responses={200: OBJ},
        operation_id="microgrids_list",
    )
    def get(self, request):
        depot_id = request.query_params.get("depot_id") or None
        return Response(
            {
                "microgrids": [
                    microgrid_summary(m) for m in selectors.microgrid_list(depot_id=depot_id)
                ]
            }
        )

    @extend_schema(request=OBJ, responses={201: OBJ}, operation_id="microgrids_create")
    def post(self, request):
        microgrid = services.microgrid_create(data=json_object(request), user=request.user)
        return Response(
            microgrid_card(selectors.microgrid_get(microgrid.microgrid_id)),
            status=status.HTTP_201_CREATED,
        )


class MicrogridDetailView(ApiView):
    @extend_schema(responses={200: OBJ}, operation_id="microgrids_card")
    def get(self, request, microgrid_id: str):
        return Response(microgrid_card(selectors.microgrid_get(microgrid_id)))


class TopologyView(ApiView):
    write_roles = WRITERS

    @extend_schema(responses={200: OBJ}, operation_id="topology_get")
    def get(self, request, microgrid_id: str):
        return Response(selectors.topology_document(selectors.microgrid_get(microgrid_id)))

    @extend_schema(request=OBJ, responses={200: OBJ}, operation_id="topology_replace")
    def put(self, request, microgrid_id: str):
        microgrid = selectors.microgrid_get(microgrid_id)
        body = json_object(request)
        unknown = sorted(set(body) - {"base_version", "nodes", "assets"} - _READ_ONLY_TOPOLOGY_KEYS)
        if unknown:
            raise DomainError.from_errors(
                [
                    ErrorItem("FIELD_INVALID", f"{k} is not a field of a topology save", field=k)
                    for k in unknown
                ]
            )
        missing = [k for k in ("base_version", "nodes", "assets") if k not in body]
        if missing:
            raise DomainError.from_errors(
                [ErrorItem("FIELD_INVALID", f"{k} is required", field=k) for k in missing]
            )
        document = services.topology_replace(
            microgrid=microgrid,
            base_version=body["base_version"],
            nodes=body["nodes"],
            assets=body["assets"],
            user=request.user,
        )
        return Response(document)


# A client may PUT back the document it read: its read-only keys are ignored.
_READ_ONLY_TOPOLOGY_KEYS = {
    "microgrid_id",
    "depot_id",
    "depot_name",
    "topology_version",
    "updated_at",
    "updated_by",
}


class RevisionListView(ApiView):
    @extend_schema(responses={200: OBJ}, operation_id="topology_revisions_list")
    def get(self, request, microgrid_id: str):
        microgrid = selectors.microgrid_get(microgrid_id)
        return Response(
            {
                "microgrid_id": microgrid.microgrid_id,
                "revisions": [
                    selectors.revision_summary(r) for r in selectors.revision_list(microgrid)
                ],
            }
        )


class RevisionDetailView(ApiView):
    @extend_schema(responses={200: OBJ}, operation_id="topology_revisions_get")
    def get(self, request, microgrid_id: str, version: int):
        microgrid = selectors.microgrid_get(microgrid_id)
        rev = selectors.revision_get(microgrid, version)
        previous = selectors.revision_list(microgrid).filter(version__lt=version).first()
        return Response(
            {
                **selectors.revision_summary(rev),
                "changes": selectors.diff_snapshots(
                    previous.snapshot if previous else None, rev.snapshot
                ),
                "topology": rev.snapshot,
            }
        )
