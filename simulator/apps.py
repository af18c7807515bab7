from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    name = "simulator"
    label = "simulator"
    verbose_name = "Depot simulator"

    def ready(self):
        from simulator import receivers  # noqa: F401  (connects the receivers)
