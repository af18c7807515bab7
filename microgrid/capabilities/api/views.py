"""Canonical capability endpoints (spec 6): parse, call one service or selector, answer."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response

from microgrid.capabilities import selectors, services
from microgrid.common.api import ApiView, json_object
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.openapi import api_doc, ref
from microgrid.common.roles import INGEST, READERS, SUPPORT_ONLY
from microgrid.topology.selectors import microgrid_get

TAG = "capabilities"
WRITE_ERRORS = {400: None, 413: None, 422: "FIELD_INVALID, NODE_NOT_FOUND (field scope.node_id)"}


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

    @api_doc(
        operation_id="capabilities_list",
        summary="Capability bindings with their latest status, active first",
        ok={200: ref("CapabilityList")},
        errors={404: "MICROGRID_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        return Response(
            selectors.capabilities_document(microgrid_get(microgrid_id, user=request.user))
        )


class BindingsView(ApiView):
    write_roles = SUPPORT_ONLY

    @api_doc(
        operation_id="capabilities_bind",
        summary="Bind an external source to a capability and scope (support)",
        request=ref("CapabilityBind"),
        ok={
            201: (ref("CapabilityBinding"), "A new binding"),
            200: (ref("CapabilityBinding"), "The same source already holds this binding"),
        },
        errors={
            **WRITE_ERRORS,
            404: "MICROGRID_NOT_FOUND",
            409: "CAPABILITY_SOURCE_CONFLICT, with the remediation paths",
        },
        tag=TAG,
        idempotent=True,
    )
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        outcome = services.capability_binding_create(
            microgrid=microgrid, data=json_object(request), user=request.user
        )
        return Response(
            selectors.binding_answer(outcome.binding),
            status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        )


class BindingReleaseView(ApiView):
    write_roles = SUPPORT_ONLY

    @api_doc(
        operation_id="capabilities_release",
        summary="End a binding (support); it stays in history",
        request=ref("CapabilityRelease"),
        ok={200: (ref("CapabilityBinding"), "The ended binding")},
        errors={
            400: None,
            404: "MICROGRID_NOT_FOUND, BINDING_NOT_FOUND",
            409: "BINDING_NOT_ACTIVE",
            413: None,
            422: "FIELD_INVALID: release takes no fields",
        },
        tag=TAG,
        idempotent=True,
    )
    def post(self, request, microgrid_id: str, binding_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        _empty_body(request)
        binding = services.capability_binding_release(
            microgrid=microgrid, binding_id=binding_id, user=request.user
        )
        return Response(selectors.binding_answer(binding))


class BindingTransferView(ApiView):
    write_roles = SUPPORT_ONLY

    @api_doc(
        operation_id="capabilities_transfer",
        summary="Hand a binding to a new source if the expected one still holds it (support)",
        request=ref("CapabilityTransfer"),
        ok={200: (ref("CapabilityBinding"), "The new binding (or the current one, when retried)")},
        errors={
            **WRITE_ERRORS,
            404: "MICROGRID_NOT_FOUND",
            409: "CAPABILITY_TRANSFER_CONFLICT",
        },
        tag=TAG,
        idempotent=True,
    )
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        outcome = services.capability_binding_transfer(
            microgrid=microgrid, data=json_object(request), user=request.user
        )
        return Response(selectors.binding_answer(outcome.binding))


class EventsView(ApiView):
    write_roles = INGEST

    @api_doc(
        operation_id="capabilities_event",
        summary="Record a capability status event (integration, support)",
        request=ref("CapabilityEventInput"),
        ok={
            201: (ref("CapabilityEventAnswer"), "A new event"),
            200: (ref("CapabilityEventAnswer"), "A repeated event_ref: the stored event"),
        },
        errors={
            **WRITE_ERRORS,
            404: "MICROGRID_NOT_FOUND",
            409: "CAPABILITY_SOURCE_NOT_ACTIVE",
        },
        tag=TAG,
        idempotent=True,
    )
    def post(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        outcome = services.capability_event_record(microgrid=microgrid, data=json_object(request))
        return Response(
            {
                "event": selectors.event_dict(outcome.event, outcome.binding),
                "binding": selectors.binding_answer(outcome.binding),
            },
            status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        )
