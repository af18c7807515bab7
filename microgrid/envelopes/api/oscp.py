"""The OSCP 2.0 endpoints of this product as flexibility provider, under /oscp/fp/2.0/.

Peers authenticate with their own token (`Authorization: Token <token>`,
looked up by hash among OSCP peers only: API user tokens do not work here,
and peer tokens do not work on /api/). Success is 204 without a body;
refusals carry the spec's error body: 401 NOT_AUTHENTICATED, 400
MALFORMED_REQUEST / OSCP_MESSAGE_INVALID / OSCP_REQUEST_ID_REUSED, 404
OSCP_GROUP_NOT_FOUND.
"""

from __future__ import annotations

from django.utils import timezone
from rest_framework import status
from rest_framework.response import Response

from microgrid.common.api import ApiView
from microgrid.common.openapi import oscp_doc
from microgrid.envelopes import services
from microgrid.envelopes.choices import MessageType


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
        request="OscpRegister",
    )
    def post(self, request):
        return self.receive(request, MessageType.REGISTER)

    @oscp_doc(
        operation_id="oscp_register_update",
        summary="Register update: a new CP token or base URL",
        request="OscpRegister",
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
        request="OscpHandshake",
    )
    def post(self, request):
        return super().post(request)


class HeartbeatView(OscpView):
    message_type = MessageType.HEARTBEAT

    @oscp_doc(
        operation_id="oscp_heartbeat",
        summary="Heartbeat: when the peer would go offline",
        request="OscpHeartbeat",
    )
    def post(self, request):
        return super().post(request)


class UpdateGroupCapacityForecastView(OscpView):
    message_type = MessageType.UPDATE_GROUP_CAPACITY_FORECAST

    @oscp_doc(
        operation_id="oscp_update_group_capacity_forecast",
        summary="Capacity forecast blocks for a group: stored as operating envelopes (an empty "
        "list withdraws; segments are assembled)",
        request="OscpUpdateGroupCapacityForecast",
        not_found=True,
    )
    def post(self, request):
        return super().post(request)
