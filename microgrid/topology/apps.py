from django.apps import AppConfig


class TopologyConfig(AppConfig):
    name = "microgrid.topology"
    label = "topology"
    verbose_name = "Microgrid topology"

    def ready(self):
        from microgrid.topology.card import register_tab

        register_tab(0, "overview", "Overview", "")
        register_tab(10, "topology", "Topology", "topology/")
