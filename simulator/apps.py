from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    name = "simulator"
    label = "simulator"
    verbose_name = "Depot simulator"

    def ready(self):
        from simulator.loader import Section, register_section
        from simulator.scenario import SECTION, check_scenario

        # load_profile accepts and checks the scenario but never runs it: `simulate` does.
        register_section(Section(SECTION, 100, check_scenario, _load_ignores_scenario))

        from dispatch.channels import register_channel, register_resolver
        from dispatch.choices import Channel
        from simulator.dispatch import SimulatorChannel, resolver

        register_channel(Channel.SIMULATOR, SimulatorChannel())
        register_resolver(10, resolver)


def _load_ignores_scenario(microgrid, value, user) -> None:
    return None
