"""Canonical capability endpoints (spec 6): parse, call one service or selector, answer."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response

from microgrid.capabilities import selectors, services
from microgrid.capabilities.api import serializers as answers
from microgrid.capabilities.api.serializers import (
    CapabilityBind,
    CapabilityEventInput,
    CapabilityRelease,
    CapabilityTransfer,
)
from microgrid.common.api import ApiView, json_object
from microgrid.common.openapi import api_doc
from microgrid.common.roles import INGEST, READERS, SUPPORT_ONLY
from microgrid.common.serializers import validated
from microgrid.topology.selectors import microgrid_get

TAG = "capabilities"
WRITE_ERRORS = {400: None, 413: None, 422: "FIELD_INVALID, NODE_NOT_FOUND (field scope.node_id)"}


class CapabilitiesView(ApiView):
    read_roles = READERS

    @api_doc(
        operation_id="capabilities_list",
        summary="Capability bindings with their latest status, active first",
        ok={200: answers.CapabilityList},
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
        request=CapabilityBind,
        ok={
            201: (answers.CapabilityBinding, "A new binding"),
            200: (answers.CapabilityBinding, "The same source already holds this binding"),
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
        values = validated(CapabilityBind, json_object(request))
        outcome = services.capability_binding_create(
            microgrid=microgrid, **values, user=request.user
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
        request=CapabilityRelease,
        ok={200: (answers.CapabilityBinding, "The ended binding")},
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
        validated(CapabilityRelease, json_object(request) if request.body else {})
        binding = services.capability_binding_release(
            microgrid=microgrid, binding_id=binding_id, user=request.user
        )
        return Response(selectors.binding_answer(binding))


class BindingTransferView(ApiView):
    write_roles = SUPPORT_ONLY

    @api_doc(
        operation_id="capabilities_transfer",
        summary="Hand a binding to a new source if the expected one still holds it (support)",
        request=CapabilityTransfer,
        ok={200: (answers.CapabilityBinding, "The new binding (or the current one, when retried)")},
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
        values = validated(CapabilityTransfer, json_object(request))
        outcome = services.capability_binding_transfer(
            microgrid=microgrid, **values, user=request.user
        )
        return Response(selectors.binding_answer(outcome.binding))


class EventsView(ApiView):
    write_roles = INGEST

    @api_doc(
        operation_id="capabilities_event",
        summary="Record a capability status event (integration, support)",
        request=CapabilityEventInput,
        ok={
            201: (answers.CapabilityEventAnswer, "A new event"),
            200: (answers.CapabilityEventAnswer, "A repeated event_ref: the stored event"),
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
        values = validated(CapabilityEventInput, json_object(request))
        outcome = services.capability_event_record(microgrid=microgrid, **values)
        return Response(
            {
                "event": selectors.event_dict(outcome.event, outcome.binding),
                "binding": selectors.binding_answer(outcome.binding),
            },
            status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        )
