from django.apps import AppConfig


class EnvelopesConfig(AppConfig):
    name = "microgrid.envelopes"
    label = "envelopes"
    verbose_name = "Operating envelopes (OSCP 2.0)"

    def ready(self):
        from balancing.services import register_binding_enricher
        from microgrid.envelopes.outbound import on_cycle_completed
        from microgrid.envelopes.profile import SECTION, apply_oscp_peers, check_oscp_peers
        from microgrid.envelopes.references import binding_references
        from microgrid.envelopes.selectors import (
            active_envelopes_card,
            enrich_binding,
            envelope_constraints,
        )
        from microgrid.envelopes.signals import cycle_completed
        from microgrid.envelopes.views import envelopes_page_section
        from microgrid.limits.selectors import register_constraint_provider
        from microgrid.topology import references
        from microgrid.topology.card import register_page_section, register_section, register_tab
        from simulator.loader import Section
        from simulator.loader import register_section as register_profile_section

        cycle_completed.connect(on_cycle_completed, dispatch_uid="envelopes.compliance")
        register_constraint_provider(envelope_constraints)
        register_binding_enricher(enrich_binding)
        references.register(binding_references)
        register_section("active_envelopes", active_envelopes_card)
        register_tab(30, "envelopes", "Operating envelopes", "envelopes/")
        register_page_section(30, "manage/_envelopes_card_section.html", envelopes_page_section)
        # After the topology (the bindings name its nodes) and the limits.
        register_profile_section(Section(SECTION, 20, check_oscp_peers, apply_oscp_peers))
