from django.apps import AppConfig


class CapabilitiesConfig(AppConfig):
    name = "microgrid.capabilities"
    label = "capabilities"
    verbose_name = "External capabilities"

    def ready(self):
        from balancing.inputs import register_external_control_provider
        from microgrid.capabilities import selectors
        from microgrid.capabilities.profile import SECTION, apply_bindings, check_bindings
        from microgrid.capabilities.references import binding_references
        from microgrid.topology import references
        from microgrid.topology.card import register_page_section, register_section, register_tab
        from simulator.loader import Section
        from simulator.loader import register_section as register_profile_section

        references.register(binding_references)
        register_section("capabilities", selectors.capabilities_card)
        register_tab(40, "capabilities", "Capabilities", "capabilities/")
        register_page_section(
            40, "manage/_capabilities_card_section.html", selectors.card_page_context
        )
        register_profile_section(Section(SECTION, 40, check_bindings, apply_bindings))
        register_external_control_provider(selectors.external_control)
