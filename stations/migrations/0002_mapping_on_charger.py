"""The EVSE -> charger mapping moves onto the charger asset (`station_id`, `evse_id`, spec
3.1): each existing StationEvse mapping is copied to its charger before the column goes.
A mapping whose asset is not a CHARGER of the station's microgrid is dropped (the gateway
refused its meter values already)."""

from django.db import migrations


def carry_over(apps, schema_editor):
    StationEvse = apps.get_model("stations", "StationEvse")
    Asset = apps.get_model("topology", "Asset")
    for evse in StationEvse.objects.select_related("station").order_by("pk"):
        Asset.objects.filter(
            microgrid_id=evse.station.microgrid_id, asset_id=evse.asset_id, kind="CHARGER"
        ).update(station_id=evse.station.station_id, evse_id=evse.evse_id)


def carry_back(apps, schema_editor):
    StationEvse = apps.get_model("stations", "StationEvse")
    ChargingStation = apps.get_model("stations", "ChargingStation")
    Asset = apps.get_model("topology", "Asset")
    for station in ChargingStation.objects.all():
        for asset_id, evse_id in Asset.objects.filter(
            microgrid_id=station.microgrid_id, station_id=station.station_id
        ).values_list("asset_id", "evse_id"):
            StationEvse.objects.update_or_create(
                station=station, evse_id=evse_id, defaults={"asset_id": asset_id}
            )


class Migration(migrations.Migration):
    dependencies = [
        ("stations", "0001_initial"),
        ("topology", "0003_charger_station"),
    ]

    operations = [
        migrations.RunPython(carry_over, carry_back),
        migrations.RemoveField(model_name="stationevse", name="asset_id"),
        migrations.DeleteModel(name="HistoricalStationEvse"),
    ]
