"""The OSCP 2.0 endpoints of this product as flexibility provider, under /oscp/fp/2.0/.

Peers authenticate with their own token (`Authorization: Token <token>`,
looked up by hash among OSCP peers only: API user tokens do not work here,
and peer tokens do not work on /api/). Success is 204 without a body;
refusals carry the spec's error body: 401 NOT_AUTHENTICATED, 400
MALFORMED_REQUEST / OSCP_MESSAGE_INVALID / OSCP_REQUEST_ID_REUSED, 404
OSCP_GROUP_NOT_FOUND.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from microgrid.common.api import ApiView
from microgrid.common.openapi import OSCP_SCHEME, responses
from microgrid.envelopes import services
from microgrid.envelopes.api.serializers import (
    OscpHandshake,
    OscpHeartbeat,
    OscpRegister,
    OscpUpdateGroupCapacityForecast,
)
from microgrid.envelopes.choices import MessageType

OSCP_HEADERS = [
    OpenApiParameter(
        "X-Request-ID",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=True,
        description="unique per message: a repeat changes nothing and answers 204 again; "
        "at most 128 printable ASCII characters",
        pattern=r"^[!-~]([ -~]{0,126}[!-~])?$",
    ),
    OpenApiParameter(
        "X-Correlation-ID",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=False,
        description="at most 128 printable ASCII characters; names a segmented message",
        pattern=r"^[!-~]([ -~]{0,126}[!-~])?$",
    ),
    OpenApiParameter(
        "X-Segment-Index",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        required=False,
        description="with X-Segment-Count and X-Correlation-ID: this segment's number (from 0 "
        "or 1); update_group_capacity_forecast only",
    ),
    OpenApiParameter(
        "X-Segment-Count",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        required=False,
        description="how many segments the message has (1 to 100); all within 5 minutes",
    ),
]


def oscp_doc(*, operation_id: str, summary: str, request: Any, not_found: bool = False):
    """One OSCP operation: 204 on success, the protocol's refusals, the peer's token."""
    errors = {
        400: "MALFORMED_REQUEST (not a UTF-8 JSON object), OSCP_MESSAGE_INVALID "
        "(headers, or one FIELD_INVALID per bad field) or OSCP_REQUEST_ID_REUSED (this "
        "X-Request-ID came before with another body)",
        401: "NOT_AUTHENTICATED: no, unknown or inactive peer token",
        413: None,
    }
    if not_found:
        errors[404] = "OSCP_GROUP_NOT_FOUND: the group is not bound for this peer"
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=summary,
        request={"application/json": request} if request is not None else None,
        responses=responses(
            {204: (None, "Accepted (also for a repeat with the same X-Request-ID and body)")},
            errors,
        ),
        parameters=OSCP_HEADERS,
        tags=["oscp"],
        auth=[{OSCP_SCHEME: []}],
    )


class OscpView(ApiView):
    """One OSCP message type; the peer's token replaces the API's users and roles."""

    authentication_classes = ()
    permission_classes = ()
    message_type: str = ""

    def receive(self, request, message_type: str):
        peer = services.oscp_peer_authenticate(request.META.get("HTTP_AUTHORIZATION"))
        services.oscp_message_receive(
            peer=peer,
            message_type=message_type,
            request_id=request.META.get("HTTP_X_REQUEST_ID"),
            correlation_id=request.META.get("HTTP_X_CORRELATION_ID"),
            segment_index=request.META.get("HTTP_X_SEGMENT_INDEX"),
            segment_count=request.META.get("HTTP_X_SEGMENT_COUNT"),
            body=request.body,
            now=timezone.now(),
            fp_base_url=request.build_absolute_uri("/oscp/fp/2.0"),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    def post(self, request):
        return self.receive(request, self.message_type)


class RegisterView(OscpView):
    @oscp_doc(
        operation_id="oscp_register",
        summary="Register: the CP's token and base URL; answered by our register (new token, "
        "version 2.0)",
        request=OscpRegister,
    )
    def post(self, request):
        return self.receive(request, MessageType.REGISTER)

    @oscp_doc(
        operation_id="oscp_register_update",
        summary="Register update: a new CP token or base URL",
        request=OscpRegister,
    )
    def put(self, request):
        return self.receive(request, MessageType.REGISTER_UPDATE)

    @oscp_doc(
        operation_id="oscp_unregister",
        summary="Unregister: the peer is deactivated, its pending messages cancelled",
        request=None,
    )
    def delete(self, request):
        return self.receive(request, MessageType.UNREGISTER)


class HandshakeView(OscpView):
    message_type = MessageType.HANDSHAKE

    @oscp_doc(
        operation_id="oscp_handshake",
        summary="Handshake: the peer's required behaviour; ends offline mode; answered by a "
        "handshake_acknowledgement",
        request=OscpHandshake,
    )
    def post(self, request):
        return super().post(request)


class HeartbeatView(OscpView):
    message_type = MessageType.HEARTBEAT

    @oscp_doc(
        operation_id="oscp_heartbeat",
        summary="Heartbeat: when the peer would go offline",
        request=OscpHeartbeat,
    )
    def post(self, request):
        return super().post(request)


class UpdateGroupCapacityForecastView(OscpView):
    message_type = MessageType.UPDATE_GROUP_CAPACITY_FORECAST

    @oscp_doc(
        operation_id="oscp_update_group_capacity_forecast",
        summary="Capacity forecast blocks for a group: stored as operating envelopes (an empty "
        "list withdraws; segments are assembled)",
        request=OscpUpdateGroupCapacityForecast,
        not_found=True,
    )
    def post(self, request):
        return super().post(request)
