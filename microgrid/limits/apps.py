from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "microgrid.limits"
    label = "limits"
    verbose_name = "Limits"

    def ready(self):
        from microgrid.limits.profile import SECTION, apply_limits, check_limits
        from microgrid.limits.references import limit_references
        from microgrid.limits.selectors import limits_card
        from microgrid.limits.views import limits_page_section
        from microgrid.topology import references
        from microgrid.topology.card import register_page_section, register_section, register_tab
        from simulator.loader import Section
        from simulator.loader import register_section as register_profile_section

        references.register(limit_references)
        register_section("limits", limits_card)
        register_tab(20, "limits", "Limits", "limits/")
        register_page_section(20, "manage/_limits_card_section.html", limits_page_section)
        register_profile_section(Section(SECTION, 10, check_limits, apply_limits))
