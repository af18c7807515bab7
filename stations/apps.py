from django.apps import AppConfig


class StationsConfig(AppConfig):
    name = "stations"
    label = "stations"
    verbose_name = "OCPP charging stations"

    def ready(self):
        from dispatch.channels import register_charger_resolver
        from microgrid.topology.signals import card_page_sections, charger_stations, manage_tabs
        from stations.services import charger_channels

        # The OCPP gateways claim these themselves (dispatch.choices.NOT_BY_WORKER).
        register_charger_resolver(charger_channels)
        # The Manage tab and card block (topology's signals); the profile section is found
        # by the simulator in stations/profile.py.
        manage_tabs.connect(_tabs, dispatch_uid="stations.manage_tabs")
        card_page_sections.connect(_page_section, dispatch_uid="stations.card_page_sections")
        # The station ids a charger asset may name (STATION_NOT_FOUND otherwise).
        charger_stations.connect(_stations, dispatch_uid="stations.charger_stations")


def _tabs(sender, **kwargs) -> list[tuple[int, str, str, str]]:
    return [(70, "stations", "Stations", "stations/")]


def _page_section(sender, *, microgrid, **kwargs) -> tuple:
    from stations.selectors import card_context

    return (56, "manage/_card_stations.html", card_context(microgrid))


def _stations(sender, *, microgrid, **kwargs) -> list[str]:
    from stations.services import charger_stations

    return charger_stations(microgrid)
