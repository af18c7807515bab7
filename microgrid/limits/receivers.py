"""What the limits app adds to the topology app's card, pages and checks (its signals)."""

from __future__ import annotations

from django.dispatch import receiver

from microgrid.limits.api.serializers import LimitsCard
from microgrid.limits.references import limit_references
from microgrid.limits.selectors import limits_card
from microgrid.limits.views import limits_page_section
from microgrid.topology.signals import (
    card_page_sections,
    card_section_fields,
    card_sections,
    manage_tabs,
    node_references,
)


@receiver(card_sections, dispatch_uid="limits.card_sections")
def card_section(sender, *, microgrid, **kwargs) -> dict:
    return {"limits": limits_card(microgrid)}


@receiver(card_section_fields, dispatch_uid="limits.card_section_fields")
def card_section_field(sender, **kwargs) -> dict:
    return {"limits": LimitsCard()}


@receiver(manage_tabs, dispatch_uid="limits.manage_tabs")
def tabs(sender, **kwargs) -> list[tuple[int, str, str, str]]:
    return [(20, "limits", "Limits", "limits/")]


@receiver(card_page_sections, dispatch_uid="limits.card_page_sections")
def page_section(sender, *, microgrid, **kwargs) -> tuple:
    return (20, "manage/_limits_card_section.html", limits_page_section(microgrid))


@receiver(node_references, dispatch_uid="limits.node_references")
def references(sender, *, microgrid, **kwargs) -> list:
    return limit_references(microgrid)
