from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "dispatch"
    label = "dispatch"
    verbose_name = "Dispatch: setpoint deliveries"

    def ready(self):
        from balancing.signals import cycle_document_read, cycle_stored
        from dispatch import channels, selectors
        from dispatch.choices import Channel
        from dispatch.profile import SECTION, apply_dispatch, check_dispatch
        from microgrid.topology.card import register_page_section
        from simulator.loader import Section
        from simulator.loader import register_section as register_profile_section

        cycle_stored.connect(_write_deliveries, dispatch_uid="dispatch.write_deliveries")
        cycle_document_read.connect(
            selectors.enrich_cycle_document, dispatch_uid="dispatch.enrich_cycle_document"
        )
        channels.register_channel(Channel.WEBHOOK, channels.WebhookChannel())
        channels.register_resolver(50, channels.webhook_resolver)
        register_page_section(55, "manage/_card_dispatch.html", selectors.card_context)
        register_profile_section(Section(SECTION, 60, check_dispatch, apply_dispatch))


def _write_deliveries(sender, *, cycle, limits, budgets, **kwargs) -> None:
    from dispatch.services import deliveries_write

    deliveries_write(cycle=cycle, limits=limits, budgets=budgets)
