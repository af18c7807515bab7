"""What dispatch answers: its webhook channel (its own signals), the deliveries of every
stored cycle and their status in the cycle document (balancing's), and its block of the
Manage card page (topology's)."""

from __future__ import annotations

from django.dispatch import receiver

from balancing.signals import cycle_document_read, cycle_stored, cycles_maintaining
from dispatch import channels, selectors
from dispatch.choices import Channel
from dispatch.signals import channel_backends, channel_resolvers
from microgrid.topology.signals import card_page_sections

WEBHOOK = channels.WebhookChannel()


@receiver(channel_backends, dispatch_uid="dispatch.channel_backends")
def backends(sender, **kwargs) -> dict:
    return {Channel.WEBHOOK: WEBHOOK}


@receiver(channel_resolvers, dispatch_uid="dispatch.channel_resolvers")
def webhook_resolver(sender, *, microgrid, config, **kwargs) -> tuple[int, str | None]:
    return (50, channels.webhook_resolver(microgrid, config))


@receiver(cycle_stored, dispatch_uid="dispatch.write_deliveries")
def write_deliveries(sender, *, cycle, limits, budgets, **kwargs) -> None:
    from dispatch.services import deliveries_write

    deliveries_write(cycle=cycle, limits=limits, budgets=budgets)


cycle_document_read.connect(
    selectors.enrich_cycle_document, dispatch_uid="dispatch.enrich_cycle_document"
)


@receiver(card_page_sections, dispatch_uid="dispatch.card_page_sections")
def page_section(sender, *, microgrid, **kwargs) -> tuple:
    return (55, "manage/_card_dispatch.html", selectors.card_context(microgrid))


@receiver(cycles_maintaining, dispatch_uid="dispatch.prune")
def prune(sender, *, now, **kwargs) -> dict[str, int]:
    from dispatch.lifecycle import dispatch_prune

    return {"dispatch_pruned": dispatch_prune(now=now)}
