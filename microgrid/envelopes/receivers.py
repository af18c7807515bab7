"""What the envelopes app adds to the limits (constraints) and to the topology app's card,
pages and checks (their signals)."""

from __future__ import annotations

from django.dispatch import receiver

from microgrid.envelopes.api.serializers import ActiveEnvelope
from microgrid.envelopes.outbound import on_cycle_completed
from microgrid.envelopes.references import binding_references
from microgrid.envelopes.selectors import active_envelopes_card, envelope_constraints
from microgrid.envelopes.signals import cycle_completed
from microgrid.envelopes.views import envelopes_page_section
from microgrid.limits.signals import limit_constraints
from microgrid.topology.signals import (
    card_page_sections,
    card_section_fields,
    card_sections,
    manage_tabs,
    node_references,
)


@receiver(limit_constraints, dispatch_uid="envelopes.limit_constraints")
def constraints(sender, *, microgrid, at, nodes, **kwargs) -> list:
    """OPERATING_ENVELOPE constraints of the envelopes enforced at `at`."""
    return envelope_constraints(microgrid, at, nodes)


@receiver(card_sections, dispatch_uid="envelopes.card_sections")
def card_section(sender, *, microgrid, **kwargs) -> dict:
    return {"active_envelopes": active_envelopes_card(microgrid)}


@receiver(card_section_fields, dispatch_uid="envelopes.card_section_fields")
def card_section_field(sender, **kwargs) -> dict:
    return {"active_envelopes": ActiveEnvelope(many=True)}


@receiver(manage_tabs, dispatch_uid="envelopes.manage_tabs")
def tabs(sender, **kwargs) -> list[tuple[int, str, str, str]]:
    return [(30, "envelopes", "Operating envelopes", "envelopes/")]


@receiver(card_page_sections, dispatch_uid="envelopes.card_page_sections")
def page_section(sender, *, microgrid, **kwargs) -> tuple:
    return (30, "manage/_envelopes_card_section.html", envelopes_page_section(microgrid))


@receiver(node_references, dispatch_uid="envelopes.node_references")
def references(sender, *, microgrid, **kwargs) -> list:
    return binding_references(microgrid)


# The compliance reports to the peers after a cycle (its own signal: balancing sends it).
cycle_completed.connect(on_cycle_completed, dispatch_uid="envelopes.compliance")
