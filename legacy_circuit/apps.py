from django.apps import AppConfig


class LegacyCircuitConfig(AppConfig):
    name = "legacy_circuit"
    label = "legacy_circuit"
    verbose_name = "Legacy circuits"

    def ready(self):
        from legacy_circuit.profile import SECTION, apply_legacy_circuits, check_legacy_circuits
        from legacy_circuit.references import alias_references
        from microgrid.topology.references import register
        from simulator.loader import Section
        from simulator.loader import register_section as register_profile_section

        register(alias_references)
        register_profile_section(Section(SECTION, 60, check_legacy_circuits, apply_legacy_circuits))
