from django.apps import AppConfig


class TopologyConfig(AppConfig):
    name = "microgrid.topology"
    label = "topology"
    verbose_name = "Microgrid topology"
