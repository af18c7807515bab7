from django.apps import AppConfig


class StationsConfig(AppConfig):
    name = "stations"
    label = "stations"
    verbose_name = "OCPP charging stations"

    def ready(self):
        from stations import receivers  # noqa: F401  (connects the receivers)
