from django.apps import AppConfig


class LegacyCircuitConfig(AppConfig):
    name = "legacy_circuit"
    label = "legacy_circuit"
    verbose_name = "Legacy circuits"

    def ready(self):
        from legacy_circuit import receivers  # noqa: F401  (connects the receivers)
