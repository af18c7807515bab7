from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "dispatch"
    label = "dispatch"
    verbose_name = "Dispatch: setpoint deliveries"

    def ready(self):
        from dispatch import receivers  # noqa: F401  (connects the receivers)
