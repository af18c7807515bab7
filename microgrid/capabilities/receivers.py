"""What the capabilities app adds to the topology app's card, pages and checks (its signals)."""

from __future__ import annotations

from django.dispatch import receiver

from microgrid.capabilities import selectors
from microgrid.capabilities.api.serializers import CapabilitiesCard
from microgrid.capabilities.references import binding_references
from microgrid.topology.signals import (
    card_page_sections,
    card_section_fields,
    card_sections,
    manage_tabs,
    node_references,
)


@receiver(card_sections, dispatch_uid="capabilities.card_sections")
def card_section(sender, *, microgrid, **kwargs) -> dict:
    return {"capabilities": selectors.capabilities_card(microgrid)}


@receiver(card_section_fields, dispatch_uid="capabilities.card_section_fields")
def card_section_field(sender, **kwargs) -> dict:
    return {"capabilities": CapabilitiesCard()}


@receiver(manage_tabs, dispatch_uid="capabilities.manage_tabs")
def tabs(sender, **kwargs) -> list[tuple[int, str, str, str]]:
    return [(40, "capabilities", "Capabilities", "capabilities/")]


@receiver(card_page_sections, dispatch_uid="capabilities.card_page_sections")
def page_section(sender, *, microgrid, **kwargs) -> tuple:
    return (40, "manage/_capabilities_card_section.html", selectors.card_page_context(microgrid))


@receiver(node_references, dispatch_uid="capabilities.node_references")
def references(sender, *, microgrid, **kwargs) -> list:
    return binding_references(microgrid)
