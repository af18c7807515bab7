from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "dispatch"
    label = "dispatch"
    verbose_name = "Dispatch: setpoint deliveries"

    def ready(self):
        from balancing.signals import cycle_document_read, cycle_stored
        from dispatch import channels, selectors
        from dispatch.choices import Channel
        from microgrid.topology.signals import card_page_sections

        cycle_stored.connect(_write_deliveries, dispatch_uid="dispatch.write_deliveries")
        cycle_document_read.connect(
            selectors.enrich_cycle_document, dispatch_uid="dispatch.enrich_cycle_document"
        )
        channels.register_channel(Channel.WEBHOOK, channels.WebhookChannel())
        channels.register_resolver(50, channels.webhook_resolver)
        card_page_sections.connect(_page_section, dispatch_uid="dispatch.card_page_sections")


def _page_section(sender, *, microgrid, **kwargs) -> tuple:
    from dispatch import selectors

    return (55, "manage/_card_dispatch.html", selectors.card_context(microgrid))


def _write_deliveries(sender, *, cycle, limits, budgets, **kwargs) -> None:
    from dispatch.services import deliveries_write

    deliveries_write(cycle=cycle, limits=limits, budgets=budgets)
