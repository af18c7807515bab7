from django.apps import AppConfig


class StationsConfig(AppConfig):
    name = "stations"
    label = "stations"
    verbose_name = "OCPP charging stations"

    def ready(self):
        from dispatch.channels import register_charger_resolver
        from stations.services import charger_channels

        # The OCPP gateways claim these themselves (dispatch.choices.NOT_BY_WORKER).
        register_charger_resolver(charger_channels)

        from microgrid.topology.card import register_page_section, register_tab
        from stations.selectors import card_context

        register_tab(70, "stations", "Stations", "stations/")
        register_page_section(56, "manage/_card_stations.html", card_context)

        from simulator.loader import Section
        from simulator.loader import register_section as register_profile_section
        from stations.profile import SECTION, apply_stations, check_stations

        register_profile_section(Section(SECTION, 70, check_stations, apply_stations))
