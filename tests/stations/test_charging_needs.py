"""OCPP 2.0.1 NotifyEVChargingNeeds becomes the charger's session (spec 4.3, issue 20)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.telemetry.models import ChargerSession
from microgrid.telemetry.services import telemetry_ingest
from stations.models import ChargingStation
from stations.services import station_charging_needs

pytestmark = pytest.mark.django_db


@pytest.fixture
def station(microgrid, mapped):
    ChargingStation.objects.create(station_id="CS-1", microgrid=microgrid)
    mapped(microgrid, {"CH-01": ("CS-1", 1)})
    return "CS-1"


def _plug_in(microgrid, now):
    reading = {
        "asset_id": "CH-01",
        "power_kw": 0,
        "observed_at": now.isoformat(),
        "connected": True,
        "requested_kw": 50,
    }
    telemetry_ingest(microgrid=microgrid, readings=[reading], now=now)


def test_departure_time_and_energy_amount_become_the_session(microgrid, station):
    now = timezone.now().replace(microsecond=0)
    _plug_in(microgrid, now)
    departure = now + timedelta(hours=3)
    needs = {
        "requested_energy_transfer": "DC",
        "departure_time": departure.isoformat(),
        "dc_charging_parameters": {
            "ev_max_current": 300,
            "ev_max_voltage": 800,
            "energy_amount": 120000,
        },
    }
    assert station_charging_needs(station_id=station, evse_id=1, charging_needs=needs) is None
    session = ChargerSession.objects.get(asset__asset_id="CH-01")
    assert session.departure_at == departure
    assert session.energy_needed_kwh == 120.0


@pytest.mark.parametrize(
    "needs, evse, why",
    [
        ({"requested_energy_transfer": "DC"}, 1, "no departure time"),
        ({"departure_time": "soon"}, 1, "not ISO 8601"),
        ({"departure_time": "2020-01-01T00:00:00+00:00"}, 1, "FIELD_INVALID"),
        ({"departure_time": "2099-01-01T00:00:00+00:00"}, 1, "FIELD_INVALID"),
        ({"departure_time": "2099-01-01T00:00:00+00:00"}, 2, "not mapped"),
    ],
)
def test_needs_the_product_cannot_use_are_rejected_and_change_nothing(
    microgrid, station, needs, evse, why
):
    _plug_in(microgrid, timezone.now().replace(microsecond=0))
    refused = station_charging_needs(station_id=station, evse_id=evse, charging_needs=needs)
    assert refused is not None and why in refused
    assert not ChargerSession.objects.exists()


def test_needs_for_a_charger_without_a_vehicle_are_rejected(microgrid, station):
    needs = {"departure_time": (timezone.now() + timedelta(hours=1)).isoformat()}
    refused = station_charging_needs(station_id=station, evse_id=1, charging_needs=needs)
    assert refused is not None and "CHARGER_NOT_CONNECTED" in refused
