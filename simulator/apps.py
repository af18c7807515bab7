from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    name = "simulator"
    label = "simulator"
    verbose_name = "Depot simulator"

    def ready(self):
        from dispatch.channels import register_channel, register_resolver
        from dispatch.choices import Channel
        from simulator.dispatch import SimulatorChannel, resolver

        register_channel(Channel.SIMULATOR, SimulatorChannel())
        register_resolver(10, resolver)
