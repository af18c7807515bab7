from django.urls import path

from microgrid.telemetry.api.views import TelemetryView

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/telemetry/", TelemetryView.as_view(), name="api-telemetry"
    ),
]
