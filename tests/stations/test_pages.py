"""Stations: the API and Manage page, passwords, and the authentication the gateway uses."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from stations.models import ChargingStation, StationAuthAttempt, StationEvse
from stations.services import station_authenticate

pytestmark = pytest.mark.django_db


@pytest.fixture
def stations(microgrid, mapped):
    a = ChargingStation.objects.create(
        station_id="CS-1", microgrid=microgrid, vendor="Acme", model="M1", connected=True
    )
    StationEvse.objects.create(station=a, evse_id=1, status="Charging")
    b = ChargingStation.objects.create(station_id="CS-2", microgrid=microgrid)
    mapped(microgrid, {"CH-01": ("CS-1", 1), "CH-03": ("CS-2", 1)})
    return a, b


def test_the_stations_api_lists_connection_boot_info_and_evses(
    stations, operator_api, django_assert_max_num_queries
):
    with django_assert_max_num_queries(8):
        body = operator_api.get("/api/microgrids/MG.NORTH-1/stations/").json()
    assert [s["station_id"] for s in body["stations"]] == ["CS-1", "CS-2"]
    first = body["stations"][0]
    assert first["connected"] is True and first["boot"]["vendor"] == "Acme"
    assert first["evses"][0] == {
        "evse_id": 1,
        "asset_id": "CH-01",
        "status": "Charging",
        "status_at": None,
        "profile_status": None,
        "failsafe_status": None,
        "soc_pct": None,
        "soc_at": None,
    }


def test_the_stations_page_and_the_card_show_an_offline_station(stations, operator_client):
    page = operator_client.get("/manage/microgrids/MG.NORTH-1/stations/").content.decode()
    assert 'data-station-id="CS-2"' in page and "offline" in page
    card = operator_client.get("/manage/microgrids/MG.NORTH-1/").content.decode()
    assert 'data-testid="offline-station-count">1<' in card


def test_set_station_password_prints_a_password_that_only_its_hash_remembers(stations):
    out = StringIO()
    call_command("set_station_password", "CS-1", stdout=out)
    password = out.getvalue().strip()
    assert len(password) >= 32
    stored = ChargingStation.objects.get(station_id="CS-1").password_hash
    assert password not in stored
    assert (
        station_authenticate(station_id="CS-1", user="CS-1", password=password, remote="x") is None
    )
    assert (
        station_authenticate(station_id="CS-1", user="CS-1", password=password + "x", remote="x")
        == "WRONG_PASSWORD"
    )
    assert StationAuthAttempt.objects.get().reason == "WRONG_PASSWORD"
    with pytest.raises(CommandError):
        call_command("set_station_password", "CS-404", stdout=StringIO())


def test_chargers_on_a_station_take_the_ocpp_channel_the_rest_the_microgrids(
    stations, microgrid, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    from balancing.services import cycle_request, trigger_of
    from dispatch.models import Delivery
    from microgrid.telemetry.services import telemetry_ingest

    now = timezone.now().isoformat()
    telemetry_ingest(
        microgrid=microgrid,
        readings=[
            {
                "asset_id": c,
                "power_kw": 0,
                "observed_at": now,
                "connected": True,
                "requested_kw": 50,
            }
            for c in ("CH-01", "CH-02", "CH-03")
        ],
    )
    with django_capture_on_commit_callbacks(execute=True):
        cycle = cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle
    # CH-02 is pulled: the cycle itself is its outbox, no delivery row (spec 4.7).
    channels = dict(Delivery.objects.filter(cycle=cycle).values_list("target_id", "channel"))
    assert channels == {"CH-01": "OCPP", "CH-03": "OCPP"}
    from dispatch.selectors import cycle_dispatch

    summary, statuses = cycle_dispatch(cycle)
    assert summary["channels"] == ["OCPP", "PULL"]
    assert statuses == {"CH-01": "PENDING", "CH-02": "PENDING", "CH-03": "PENDING"}
    # The Celery task leaves OCPP deliveries to the gateway that holds the station.
    assert set(Delivery.objects.filter(cycle=cycle).values_list("status", flat=True)) == {"PENDING"}
