from django.urls import path

from microgrid.telemetry.api.views import ChargerSessionView, TelemetryView

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/telemetry/", TelemetryView.as_view(), name="api-telemetry"
    ),
    path(
        "microgrids/<mgid:microgrid_id>/chargers/<mgid:asset_id>/session/",
        ChargerSessionView.as_view(),
        name="api-charger-session",
    ),
]
