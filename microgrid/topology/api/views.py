"""Canonical topology endpoints: parse, call one service or selector, answer."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.openapi import api_doc
from microgrid.common.roles import READERS, SUPPORT_ONLY, WRITERS
from microgrid.common.serializers import validated
from microgrid.topology import selectors, services
from microgrid.topology.api import serializers as answers
from microgrid.topology.api.serializers import MicrogridCreate, TopologyReplace, microgrid_input
from microgrid.topology.card import microgrid_card, microgrid_summary
from microgrid.topology.filters import MicrogridFilter

TAG = "topology"


class MicrogridListView(ApiView):
    read_roles = READERS
    write_roles = SUPPORT_ONLY

    @api_doc(
        operation_id="microgrids_list",
        path_ids=False,
        summary="List the microgrids",
        parameters=MicrogridFilter.parameters(),
        ok={200: answers.MicrogridList},
        errors={422: "FIELD_INVALID (field depot_id)"},
        tag=TAG,
    )
    def get(self, request):
        rows = selectors.microgrid_list(user=request.user, params=request.query_params)
        return Response({"microgrids": [microgrid_summary(m) for m in rows]})

    @api_doc(
        operation_id="microgrids_create",
        path_ids=False,
        summary="Create a depot (when new) and an empty microgrid (support)",
        request=MicrogridCreate,
        ok={201: (answers.MicrogridCard, "The new microgrid's card (topology_version 0)")},
        errors={400: None, 409: "MICROGRID_EXISTS", 413: None, 422: None},
        tag=TAG,
        idempotent=True,
    )
    def post(self, request):
        values = microgrid_input(json_object(request))
        microgrid = services.microgrid_create(**values, user=request.user)
        return Response(
            microgrid_card(selectors.microgrid_get(microgrid.microgrid_id, user=request.user)),
            status=status.HTTP_201_CREATED,
        )


class MicrogridDetailView(ApiView):
    @api_doc(
        operation_id="microgrids_card",
        summary="The microgrid card",
        ok={200: answers.MicrogridCard},
        errors={404: "MICROGRID_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        return Response(microgrid_card(selectors.microgrid_get(microgrid_id, user=request.user)))


class TopologyView(ApiView):
    write_roles = WRITERS

    @api_doc(
        operation_id="topology_get",
        summary="The topology: every node in tree order and every asset",
        ok={200: answers.Topology},
        errors={404: "MICROGRID_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        return Response(
            selectors.topology_document(selectors.microgrid_get(microgrid_id, user=request.user))
        )

    @api_doc(
        operation_id="topology_replace",
        summary="Replace the nodes and assets (operator, support)",
        description="Validated as a whole; nothing changes on any error.",
        request=TopologyReplace,
        ok={200: (answers.Topology, "The new topology")},
        errors={
            400: None,
            404: "MICROGRID_NOT_FOUND",
            409: "TOPOLOGY_VERSION_CONFLICT: details {base_version, current_version, "
            "updated_at, updated_by}",
            413: None,
            422: "every validation error (spec 3.1), sorted; the first one's code on top",
        },
        tag=TAG,
    )
    def put(self, request, microgrid_id: str):
        microgrid = selectors.microgrid_get(microgrid_id, user=request.user)
        body = validated(TopologyReplace, json_object(request))
        document = services.topology_replace(
            microgrid=microgrid,
            base_version=body["base_version"],
            nodes=body["nodes"],
            assets=body["assets"],
            user=request.user,
        )
        return Response(document)


class RevisionListView(ApiView):
    @api_doc(
        operation_id="topology_revisions_list",
        summary="The saved topology versions, newest first",
        ok={200: answers.RevisionList},
        errors={404: "MICROGRID_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        microgrid = selectors.microgrid_get(microgrid_id, user=request.user)
        return Response(
            {
                "microgrid_id": microgrid.microgrid_id,
                "revisions": [
                    selectors.revision_summary(r) for r in selectors.revision_list(microgrid)
                ],
            }
        )


class RevisionDetailView(ApiView):
    @api_doc(
        operation_id="topology_revisions_get",
        summary="One saved version with its snapshot and what changed from the one before",
        ok={200: answers.RevisionDetail},
        errors={404: "MICROGRID_NOT_FOUND, REVISION_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str, version: int):
        microgrid = selectors.microgrid_get(microgrid_id, user=request.user)
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
