from django.db import models


class NodeKind(models.TextChoices):
    GRID_CONNECTION = "GRID_CONNECTION", "Grid connection"
    SWITCHBOARD = "SWITCHBOARD", "Switchboard"
    FEEDER = "FEEDER", "Feeder"
    CHARGER_GROUP = "CHARGER_GROUP", "Charger group"


class AssetKind(models.TextChoices):
    CHARGER = "CHARGER", "Charger"
    SITE_LOAD = "SITE_LOAD", "Site load"
    PV = "PV", "PV"
    BATTERY = "BATTERY", "Battery"
    METER = "METER", "Meter"


# The fields each asset kind carries beyond asset_id, node_id, kind and name,
# in the order the API shows them.
ASSET_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    AssetKind.CHARGER: (
        "max_power_kw",
        "min_power_kw",
        "priority",
        "failsafe_power_kw",
        "station_id",
        "evse_id",
    ),
    AssetKind.SITE_LOAD: ("rated_power_kw", "fallback_kw"),
    AssetKind.BATTERY: ("rated_power_kw", "fallback_kw"),
    AssetKind.PV: ("rated_power_kw",),
    AssetKind.METER: (),
}
