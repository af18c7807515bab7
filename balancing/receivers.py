"""What balancing answers: the cycle after every change, and its part of the microgrid card.

The one subscriber that asks for a cycle after a change that moves an effective limit, who
controls a scope or who is served first for a departure (spec 4.6). Each notice arrives after
its write committed (`microgrid.common.signals.send_on_commit`); the cycle goes through
`enqueue_cycle` (a `CycleTrigger`, coalesced like every other trigger; in-process when the
broker is down).

| notice                                   | trigger                                         |
|------------------------------------------|-------------------------------------------------|
| limits `limits_changed`                  | `{"type": "LIMIT_CHANGE"}`                      |
| limits `schedule_transitioned`           | `{"type": "TOU_TRANSITION"}`                    |
| envelopes `enforcement_changed`          | `{"type": "ENVELOPE_CHANGE", "envelope_ids"}`   |
| capabilities `capability_changed`        | `{"type": "CAPABILITY_CHANGE", "binding_ids"}`  |
| telemetry `session_changed`              | `{"type": "SESSION_CHANGE", "asset_id"}`        |

Legacy TOU writes are limit writes (`limit_policies_replace`), so they arrive as
`limits_changed`.
"""

from __future__ import annotations

from django.dispatch import receiver

from balancing import selectors, tasks
from balancing.api import serializers as api_serializers
from balancing.services import trigger_of
from microgrid.capabilities.signals import capability_changed
from microgrid.envelopes.signals import enforcement_changed
from microgrid.limits.signals import limits_changed, schedule_transitioned
from microgrid.telemetry.signals import session_changed
from microgrid.topology.signals import (
    card_page_sections,
    card_section_fields,
    card_sections,
    manage_tabs,
    node_loads,
)

# -- the cycle after a change -----------------------------------------------------------------


@receiver(limits_changed, dispatch_uid="balancing.cycle_on_limit_change")
def cycle_on_limit_change(sender, *, microgrid_id: str, **kwargs) -> None:
    """A policy was created, updated, deleted or replaced: apply it now."""
    tasks.enqueue_cycle(microgrid_id, trigger_of("LIMIT_CHANGE"))


@receiver(schedule_transitioned, dispatch_uid="balancing.cycle_on_tou_transition")
def cycle_on_tou_transition(sender, *, microgrid_id: str, **kwargs) -> None:
    """A TOU cap started or ended: apply it now rather than at the next scheduled cycle."""
    tasks.enqueue_cycle(microgrid_id, trigger_of("TOU_TRANSITION"))


@receiver(enforcement_changed, dispatch_uid="balancing.cycle_on_envelope_change")
def cycle_on_envelope_change(
    sender, *, microgrid_id: str, envelope_ids: list[str], scope: dict | None, **kwargs
) -> None:
    """Envelopes started or stopped being enforced: in their shared scope, else the microgrid."""
    tasks.enqueue_cycle(
        microgrid_id, trigger_of("ENVELOPE_CHANGE", envelope_ids=envelope_ids), scope
    )


@receiver(capability_changed, dispatch_uid="balancing.cycle_on_capability_change")
def cycle_on_capability_change(sender, *, microgrid_id: str, binding_ids: list[str], **kwargs):
    """A binding began, ended or changed its status: who controls a scope may have changed."""
    tasks.enqueue_cycle(microgrid_id, trigger_of("CAPABILITY_CHANGE", binding_ids=binding_ids))


@receiver(session_changed, dispatch_uid="balancing.cycle_on_session_change")
def cycle_on_session_change(sender, *, microgrid_id: str, asset_id: str, **kwargs) -> None:
    """A charger's departure or energy need was set, changed or cleared: who is served first
    may have changed anywhere its grants shared a node, so the whole microgrid is cycled."""
    tasks.enqueue_cycle(microgrid_id, trigger_of("SESSION_CHANGE", asset_id=asset_id))


# -- the microgrid card and the Manage pages --------------------------------------------------


@receiver(card_section_fields, dispatch_uid="balancing.card_section_fields")
def card_section_field(sender, **kwargs) -> dict:
    return api_serializers.card_section_fields()


@receiver(card_sections, dispatch_uid="balancing.card_sections")
def card_section(sender, *, microgrid, **kwargs) -> dict:
    return {
        **selectors.card_cycle_section(microgrid),
        "open_breach_count": selectors.open_breach_count(microgrid),
    }


@receiver(manage_tabs, dispatch_uid="balancing.manage_tabs")
def tabs(sender, **kwargs) -> list[tuple[int, str, str, str]]:
    return [(50, "cycles", "Cycles", "cycles/"), (60, "breaches", "Breaches", "breaches/")]


@receiver(card_page_sections, dispatch_uid="balancing.card_page_sections")
def page_section(sender, *, microgrid, **kwargs) -> tuple:
    return (50, "manage/_card_balancing.html", selectors.card_page_context(microgrid))


@receiver(node_loads, dispatch_uid="balancing.node_loads")
def latest_node_loads(sender, *, microgrid, **kwargs) -> dict:
    return selectors.latest_node_loads(microgrid)
