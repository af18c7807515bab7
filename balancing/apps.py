from django.apps import AppConfig


class BalancingConfig(AppConfig):
    name = "balancing"
    label = "balancing"
    verbose_name = "Balancing cycles and breaches"

    def ready(self):
        from balancing import selectors
        from microgrid.topology.card import (
            register_node_loads,
            register_page_section,
            register_section,
            register_tab,
        )

        register_tab(50, "cycles", "Cycles", "cycles/")
        register_tab(60, "breaches", "Breaches", "breaches/")
        register_section("latest_cycle", selectors.latest_cycle_summary)
        register_section("open_breach_count", selectors.open_breach_count)
        register_page_section(50, "manage/_card_balancing.html", selectors.card_page_context)
        register_node_loads(selectors.latest_node_loads)

        from microgrid.limits.signals import on_schedule_transition

        on_schedule_transition(_cycle_on_tou_transition)


def _cycle_on_tou_transition(microgrid_id: str, transitions) -> None:
    """A TOU cap started or ended: apply it now rather than at the next scheduled cycle."""
    from balancing.tasks import enqueue_cycle

    enqueue_cycle(microgrid_id, {"type": "TOU_TRANSITION"})
