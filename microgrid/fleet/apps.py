from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "microgrid.fleet"
    label = "fleet"
    verbose_name = "Fleet overview"

    def ready(self):
        from microgrid.fleet import receivers  # noqa: F401  (connects the receivers)
