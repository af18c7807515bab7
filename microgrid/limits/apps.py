from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "microgrid.limits"
    label = "limits"
    verbose_name = "Limits"

    def ready(self):
        from microgrid.limits import receivers  # noqa: F401  (connects the receivers)
