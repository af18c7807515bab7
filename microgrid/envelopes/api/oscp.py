"""The OSCP 2.0 endpoints of this product as flexibility provider, under /oscp/fp/2.0/.

Peers authenticate with their own token (`Authorization: Token <token>`,
looked up by hash among OSCP peers only: API user tokens do not work here,
and peer tokens do not work on /api/). Success is 204 without a body;
refusals carry the spec's error body: 401 NOT_AUTHENTICATED, 400
MALFORMED_REQUEST / OSCP_MESSAGE_INVALID, 404 OSCP_GROUP_NOT_FOUND.
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

    def post(self, request):
        peer = services.oscp_peer_authenticate(request.META.get("HTTP_AUTHORIZATION"))
        services.oscp_message_receive(
            peer=peer,
            message_type=self.message_type,
            request_id=request.META.get("HTTP_X_REQUEST_ID"),
            correlation_id=request.META.get("HTTP_X_CORRELATION_ID"),
            body=request.body,
            now=timezone.now(),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class HandshakeView(OscpView):
    message_type = MessageType.HANDSHAKE

    @oscp_doc(
        operation_id="oscp_handshake",
        summary="Handshake: the peer's required behaviour; ends offline mode",
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
        summary="Capacity forecast blocks for a group: stored as operating envelopes",
        request="OscpUpdateGroupCapacityForecast",
        not_found=True,
    )
    def post(self, request):
        return super().post(request)
