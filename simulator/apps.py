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


def _load_ignores_scenario(microgrid, value, user) -> None:
    return None
