from django.apps import AppConfig


class LegacyCircuitConfig(AppConfig):
    name = "legacy_circuit"
    label = "legacy_circuit"
    verbose_name = "Legacy circuits"

    def ready(self):
        from legacy_circuit.references import alias_references
        from microgrid.topology.references import register

        register(alias_references)
