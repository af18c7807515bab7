"""What the legacy app answers: the interim values follow the envelopes, and circuit aliases
count as references to the nodes they name (the envelopes and topology apps' signals)."""

from __future__ import annotations

from django.dispatch import receiver

from legacy_circuit.interim import legacy_capacity_reconcile, legacy_values
from legacy_circuit.references import alias_references
from microgrid.envelopes.signals import envelopes_settled, scope_followers
from microgrid.topology.signals import node_references


@receiver(envelopes_settled, dispatch_uid="legacy_circuit.follow_envelopes")
def follow_envelopes(sender, *, microgrid, now, **kwargs) -> list[str]:
    """In the envelope change's transaction: aliased legacy values follow what is enforced."""
    return legacy_capacity_reconcile(microgrid=microgrid, now=now)


@receiver(scope_followers, dispatch_uid="legacy_circuit.scope_followers")
def followers(sender, *, microgrid, **kwargs) -> dict:
    return legacy_values(microgrid)


@receiver(node_references, dispatch_uid="legacy_circuit.node_references")
def references(sender, *, microgrid, **kwargs) -> list:
    return alias_references(microgrid)
