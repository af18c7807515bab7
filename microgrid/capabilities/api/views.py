"""Canonical capability endpoints (spec 6): parse, call one service or selector, answer."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from microgrid.capabilities import selectors, services
from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.roles import INGEST, READERS, SUPPORT_ONLY
from microgrid.topology.selectors import microgrid_get

OBJ = OpenApiTypes.OBJECT


def _empty_body(request) -> None:
    """Release takes no fields; an empty body or {} is fine, anything else is refused."""
    if not request.body:
        return
    body = json_object(request)
    if body:
        raise DomainError.from_errors(
            [
                ErrorItem("FIELD_INVALID", f"{name} is not a known field", field=str(name))
                for name in sorted(body, key=str)
            ]
        )


class CapabilitiesView(ApiView):
    read_roles = READERS

    @extend_schema(responses={200: OBJ}, operation_id="capabilities_list")
    def get(self, request, microgrid_id: str):
        return Response(selectors.capabilities_document(microgrid_get(microgrid_id)))


class BindingsView(ApiView):
    write_roles = SUPPORT_ONLY

    @extend_schema(request=OBJ, responses={201: OBJ, 200: OBJ}, operation_id="capabilities_bind")
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        outcome = services.capability_binding_create(
            microgrid=microgrid, data=json_object(request), user=request.user
        )
        return Response(
            selectors.binding_answer(outcome.binding),
            status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        )


class BindingReleaseView(ApiView):
    write_roles = SUPPORT_ONLY

    @extend_schema(request=None, responses={200: OBJ}, operation_id="capabilities_release")
    def post(self, request, microgrid_id: str, binding_id: str):
        microgrid = microgrid_get(microgrid_id)
        _empty_body(request)
        binding = services.capability_binding_release(
            microgrid=microgrid, binding_id=binding_id, user=request.user
        )
        return Response(selectors.binding_answer(binding))


class BindingTransferView(ApiView):
    write_roles = SUPPORT_ONLY

    @extend_schema(request=OBJ, responses={200: OBJ}, operation_id="capabilities_transfer")
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        outcome = services.capability_binding_transfer(
            microgrid=microgrid, data=json_object(request), user=request.user
        )
        return Response(selectors.binding_answer(outcome.binding))


class EventsView(ApiView):
    write_roles = INGEST

    @extend_schema(request=OBJ, responses={201: OBJ, 200: OBJ}, operation_id="capabilities_event")
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id)
        outcome = services.capability_event_record(microgrid=microgrid, data=json_object(request))
        return Response(
            {
                "event": selectors.event_dict(outcome.event, outcome.binding),
                "binding": selectors.binding_answer(outcome.binding),
            },
            status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        )
