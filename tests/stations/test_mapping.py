"""A charger names its OCPP station and EVSE (`station_id`, `evse_id`): through the topology
API, the Manage editor and depot profiles, checked by the one validator, carried over from
the StationEvse mapping by the migration."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

from microgrid.topology.models import Asset, Microgrid
from stations.models import ChargingStation
from stations.selectors import station_list
from tests.topology.test_editor import EDIT, editor_form

pytestmark = pytest.mark.django_db
URL = "/api/microgrids/MG.NORTH-1/topology/"


def _put_with(api, microgrid, changes: dict[str, dict]):
    body = api.get(URL).json()
    for asset in body["assets"]:
        asset.update(changes.get(asset["asset_id"], {}))
    return api.put(
        URL,
        {
            "base_version": body["topology_version"],
            "nodes": body["nodes"],
            "assets": body["assets"],
        },
        format="json",
    )


def test_a_charger_names_its_station_and_evse_through_the_topology_api(operator_api, microgrid):
    ChargingStation.objects.create(station_id="CS-1", microgrid=microgrid)
    response = _put_with(
        operator_api,
        microgrid,
        {
            "CH-01": {"station_id": "CS-1", "evse_id": 1},
            "CH-02": {"station_id": "CS-1", "evse_id": 2},
        },
    )
    assert response.status_code == 200, response.json()
    chargers = {a["asset_id"]: a for a in operator_api.get(URL).json()["assets"]}
    assert (chargers["CH-01"]["station_id"], chargers["CH-01"]["evse_id"]) == ("CS-1", 1)
    assert (chargers["CH-03"]["station_id"], chargers["CH-03"]["evse_id"]) == (None, None)
    [station] = station_list(microgrid)
    assert [(e["evse_id"], e["asset_id"]) for e in station["evses"]] == [(1, "CH-01"), (2, "CH-02")]
    # The mapping is part of the topology's history.
    assert Asset.history.filter(asset_id="CH-01", station_id="CS-1").exists()


@pytest.mark.parametrize(
    "changes, code, field",
    [
        ({"CH-01": {"station_id": "CS-9", "evse_id": 1}}, "STATION_NOT_FOUND", "station_id"),
        (
            {
                "CH-01": {"station_id": "CS-1", "evse_id": 1},
                "CH-02": {"station_id": "CS-1", "evse_id": 1},
            },
            "TOPOLOGY_DUPLICATE_ID",
            "evse_id",
        ),
        ({"CH-01": {"station_id": "CS-1"}}, "FIELD_INVALID", "evse_id"),
        ({"CH-01": {"evse_id": 1}}, "FIELD_INVALID", "station_id"),
        ({"CH-01": {"station_id": "CS-1", "evse_id": 0}}, "FIELD_INVALID", "evse_id"),
        ({"CH-01": {"station_id": "bad id!", "evse_id": 1}}, "FIELD_INVALID", "station_id"),
        ({"SITE": {"station_id": "CS-1", "evse_id": 1}}, "FIELD_INVALID", "station_id"),
    ],
)
def test_a_bad_station_mapping_is_refused_with_the_specs_code_and_changes_nothing(
    operator_api, microgrid, changes, code, field
):
    ChargingStation.objects.create(station_id="CS-1", microgrid=microgrid)
    other = Microgrid.objects.exclude(pk=microgrid.pk).first()
    before = microgrid.topology_version
    response = _put_with(operator_api, microgrid, changes)
    assert response.status_code == 422
    body = response.json()
    assert code in {e["code"] for e in body["errors"]}
    assert field in {e.get("field") for e in body["errors"] if e["code"] == code}
    microgrid.refresh_from_db()
    assert microgrid.topology_version == before
    assert not Asset.objects.filter(station_id__isnull=False).exists()
    assert other is None or other.topology_version is not None


def test_a_station_of_another_microgrid_is_not_found(operator_api, microgrid, make_user):
    from microgrid.topology.services import microgrid_create

    elsewhere = microgrid_create(
        microgrid_id="MG.SOUTH", name="South", depot={"depot_id": "DEPOT-S", "name": "South"}
    )
    ChargingStation.objects.create(station_id="CS-S", microgrid=elsewhere)
    response = _put_with(operator_api, microgrid, {"CH-01": {"station_id": "CS-S", "evse_id": 1}})
    assert response.status_code == 422
    assert response.json()["code"] == "STATION_NOT_FOUND"


def test_the_editor_sets_a_chargers_station_and_evse(operator_client, microgrid):
    ChargingStation.objects.create(station_id="CS-1", microgrid=microgrid)
    fields = editor_form(operator_client)
    prefix = next(
        k[: -len("asset_id")]
        for k, v in fields.items()
        if k.startswith("assets-") and k.endswith("-asset_id") and v == "CH-03"
    )
    fields.update({prefix + "station_id": "CS-1", prefix + "evse_id": "3"})
    assert operator_client.post(EDIT, fields).status_code == 302
    assert Asset.objects.filter(asset_id="CH-03").values_list("station_id", "evse_id").get() == (
        "CS-1",
        3,
    )
    # Shown again in the editor, and an unknown station is the validator's error on the row.
    fields = editor_form(operator_client)
    assert fields[prefix + "station_id"] == "CS-1" and fields[prefix + "evse_id"] == "3"
    fields[prefix + "station_id"] = "CS-404"
    response = operator_client.post(EDIT, fields)
    assert response.status_code == 422
    assert 'data-code="STATION_NOT_FOUND"' in response.content.decode()


def _profile(tmp_path, *, stations, charger_extra):
    from pathlib import Path

    demo = Path(__file__).resolve().parents[2] / "simulator" / "profiles" / "demo_depot.yaml"
    profile = yaml.safe_load(demo.read_text())
    profile["assets"][0].update(charger_extra)
    if stations is not None:
        profile["ocpp_stations"] = stations
    path = tmp_path / "depot.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path, profile["assets"][0]["asset_id"]


def test_a_profile_creates_its_stations_before_the_chargers_that_name_them(tmp_path):
    path, charger = _profile(
        tmp_path,
        stations=[{"station_id": "CS-A", "password": "a-long-enough-secret"}],
        charger_extra={"station_id": "CS-A", "evse_id": 1},
    )
    call_command("load_profile", str(path))
    asset = Asset.objects.get(asset_id=charger)
    assert (asset.station_id, asset.evse_id) == ("CS-A", 1)
    version = asset.microgrid.topology_version
    call_command("load_profile", str(path))  # the same file again changes nothing
    assert Microgrid.objects.get(pk=asset.microgrid_id).topology_version == version


@pytest.mark.parametrize(
    "stations",
    [
        [],  # the section names no such station
        [{"station_id": "CS-A", "password": "a-long-enough-secret", "evses": []}],
    ],
)
def test_a_profile_with_a_bad_station_mapping_is_refused_whole(tmp_path, stations, capsys):
    path, _ = _profile(
        tmp_path, stations=stations, charger_extra={"station_id": "CS-B", "evse_id": 1}
    )
    with pytest.raises(SystemExit):
        call_command("load_profile", str(path))
    assert "STATION_NOT_FOUND asset_id=CH-01" in capsys.readouterr().err
    assert not Microgrid.objects.exists() and not ChargingStation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_migration_carries_station_evse_mappings_onto_the_chargers():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("stations", "0001_initial"), ("topology", "0003_charger_station")]
    after = [("stations", "0002_mapping_on_charger")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    depot = old.get_model("topology", "Depot").objects.create(depot_id="D", name="D")
    mg = old.get_model("topology", "Microgrid").objects.create(
        microgrid_id="MG", name="MG", depot=depot
    )
    node = old.get_model("topology", "MicrogridNode").objects.create(
        microgrid=mg, node_id="grid", kind="GRID_CONNECTION", name="g", physical_rating_kw=100
    )
    Asset_ = old.get_model("topology", "Asset")
    for asset_id, kind in (("CH-1", "CHARGER"), ("CH-2", "CHARGER"), ("SITE", "SITE_LOAD")):
        Asset_.objects.create(microgrid=mg, asset_id=asset_id, node=node, kind=kind, name=asset_id)
    station = old.get_model("stations", "ChargingStation").objects.create(
        station_id="CS-1", microgrid=mg
    )
    Evse = old.get_model("stations", "StationEvse")
    Evse.objects.create(station=station, evse_id=2, asset_id="CH-1")
    Evse.objects.create(station=station, evse_id=3, asset_id="SITE")  # not a charger: dropped
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    new = executor.loader.project_state(after).apps
    rows = new.get_model("topology", "Asset").objects.order_by("asset_id")
    assert list(rows.values_list("asset_id", "station_id", "evse_id")) == [
        ("CH-1", "CS-1", 2),
        ("CH-2", None, None),
        ("SITE", None, None),
    ]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
