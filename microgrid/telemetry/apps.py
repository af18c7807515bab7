from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "microgrid.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry"
