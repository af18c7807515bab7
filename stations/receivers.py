"""What the stations app answers: the OCPP channel of the chargers mapped to a station EVSE
(dispatch's signals), its Manage tab and card block and the station ids a charger may name
(topology's). Its profile section is
found by the simulator in stations/profile.py."""

from __future__ import annotations

from django.dispatch import receiver

from dispatch.signals import charger_channels
from microgrid.topology.signals import card_page_sections, charger_stations, manage_tabs
from stations import selectors, services


@receiver(charger_channels, dispatch_uid="stations.charger_channels")
def ocpp_chargers(sender, *, microgrid, **kwargs) -> dict[str, str]:
    # The OCPP gateways claim these themselves (dispatch.choices.NOT_BY_WORKER).
    return services.charger_channels(microgrid)


@receiver(manage_tabs, dispatch_uid="stations.manage_tabs")
def tabs(sender, **kwargs) -> list[tuple[int, str, str, str]]:
    return [(70, "stations", "Stations", "stations/")]


@receiver(card_page_sections, dispatch_uid="stations.card_page_sections")
def page_section(sender, *, microgrid, **kwargs) -> tuple:
    return (56, "manage/_card_stations.html", selectors.card_context(microgrid))


@receiver(charger_stations, dispatch_uid="stations.charger_stations")
def stations(sender, *, microgrid, **kwargs) -> list[str]:
    # The station ids a charger asset may name (STATION_NOT_FOUND otherwise).
    return services.charger_stations(microgrid)
