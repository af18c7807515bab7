from django.apps import AppConfig


class CapabilitiesConfig(AppConfig):
    name = "microgrid.capabilities"
    label = "capabilities"
    verbose_name = "External capabilities"

    def ready(self):
        from microgrid.capabilities import receivers  # noqa: F401  (connects the receivers)
