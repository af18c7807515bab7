"""/oscp/fp/2.0/...: OSCP endpoint paths have no trailing slash; one is tolerated."""

from django.urls import re_path

from microgrid.envelopes.api import oscp

urlpatterns = [
    re_path(r"^register/?$", oscp.RegisterView.as_view(), name="oscp-register"),
    re_path(r"^handshake/?$", oscp.HandshakeView.as_view(), name="oscp-handshake"),
    re_path(r"^heartbeat/?$", oscp.HeartbeatView.as_view(), name="oscp-heartbeat"),
    re_path(
        r"^update_group_capacity_forecast/?$",
        oscp.UpdateGroupCapacityForecastView.as_view(),
        name="oscp-update-group-capacity-forecast",
    ),
]
