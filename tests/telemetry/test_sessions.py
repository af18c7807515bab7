"""Charger sessions: the departure and energy need of the vehicle connected now (spec 4.3)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.telemetry.models import ChargerSession, LatestReading, SessionDefault

MG = "/api/microgrids/MG.NORTH-1/"
URL = MG + "chargers/CH-01/session/"


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


def _report(api, at, *, connected=True, power=0.0, asset="CH-01"):
    body = {
        "readings": [
            {
                "asset_id": asset,
                "power_kw": power,
                "observed_at": at.isoformat(),
                "connected": connected,
                "requested_kw": 50 if connected else 0,
            }
        ]
    }
    assert api.post(MG + "telemetry/", body, format="json").status_code == 202


@pytest.mark.django_db
def test_a_session_is_set_for_the_connected_vehicle_and_a_repeat_changes_nothing(
    integration_api, microgrid, now
):
    _report(integration_api, now - timedelta(seconds=30))
    body = {"departure_at": (now + timedelta(hours=2)).isoformat(), "energy_needed_kwh": 60}
    first = integration_api.put(URL, body, format="json")
    assert first.status_code == 200, first.json()
    doc = first.json()
    assert doc["departure_source"] == "API"
    assert doc["energy_needed_kwh"] == 60
    assert doc["energy_delivered_kwh"] == 0.0
    assert doc["energy_remaining_kwh"] == 60
    history = ChargerSession.history.count()
    again = integration_api.put(URL, body, format="json")
    assert again.status_code == 200
    assert again.json() == doc
    assert ChargerSession.history.count() == history


@pytest.mark.django_db
def test_the_energy_need_may_be_a_target_soc_with_the_battery_capacity(
    integration_api, microgrid, now
):
    _report(integration_api, now - timedelta(seconds=30))
    body = {
        "departure_at": (now + timedelta(hours=2)).isoformat(),
        "target_soc_percent": 80,
        "arrival_soc_percent": 30,
        "battery_capacity_kwh": 400,
    }
    doc = integration_api.put(URL, body, format="json").json()
    assert doc["energy_needed_kwh"] == 200.0
    assert doc["energy_source"] == "TARGET_SOC"


@pytest.mark.django_db
def test_energy_delivered_is_integrated_from_the_chargers_readings(integration_api, microgrid, now):
    t0 = now - timedelta(seconds=50)
    _report(integration_api, t0 - timedelta(seconds=10), connected=False)
    _report(integration_api, t0, power=36.0)  # 10 s at 36 kW: 0.1 kWh
    _report(integration_api, t0 + timedelta(seconds=30), power=72.0)  # 30 s at 72 kW: 0.6 kWh
    latest = LatestReading.objects.get(asset__asset_id="CH-01")
    assert latest.session_energy_kwh == pytest.approx(0.7)
    _report(integration_api, t0 + timedelta(seconds=40), connected=False)
    assert LatestReading.objects.get(asset__asset_id="CH-01").session_energy_kwh is None


@pytest.mark.django_db
def test_a_session_needs_a_connected_vehicle_and_changes_nothing_when_refused(
    integration_api, microgrid, now
):
    body = {"departure_at": (now + timedelta(hours=2)).isoformat(), "energy_needed_kwh": 60}
    response = integration_api.put(URL, body, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "CHARGER_NOT_CONNECTED"
    assert not ChargerSession.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, field",
    [
        ({"energy_needed_kwh": 60}, "departure_at"),
        ({"departure_at": "tomorrow", "energy_needed_kwh": 60}, "departure_at"),
        ({"departure_at": "PAST", "energy_needed_kwh": 60}, "departure_at"),
        ({"departure_at": "FAR", "energy_needed_kwh": 60}, "departure_at"),
        ({"departure_at": "SOON", "energy_needed_kwh": 0}, "energy_needed_kwh"),
        ({"departure_at": "SOON", "energy_needed_kwh": "60"}, "energy_needed_kwh"),
        ({"departure_at": "SOON", "target_soc_percent": 80}, "arrival_soc_percent"),
        (
            {
                "departure_at": "SOON",
                "energy_needed_kwh": 10,
                "target_soc_percent": 80,
                "arrival_soc_percent": 20,
                "battery_capacity_kwh": 300,
            },
            "energy_needed_kwh",
        ),
        (
            {
                "departure_at": "SOON",
                "target_soc_percent": 20,
                "arrival_soc_percent": 40,
                "battery_capacity_kwh": 300,
            },
            "target_soc_percent",
        ),
        ({"departure_at": "SOON", "colour": "red"}, "colour"),
    ],
)
def test_bad_session_bodies_are_refused_with_the_field_and_change_nothing(
    integration_api, microgrid, now, body, field
):
    _report(integration_api, now - timedelta(seconds=30))
    times = {
        "PAST": now - timedelta(minutes=1),
        "FAR": now + timedelta(days=8),
        "SOON": now + timedelta(hours=1),
    }
    body = {k: times[v].isoformat() if v in times else v for k, v in body.items()}
    response = integration_api.put(URL, body, format="json")
    assert response.status_code == 422, response.json()
    answer = response.json()
    assert answer["code"] == "FIELD_INVALID"
    assert field in {e.get("field") for e in answer["errors"]}
    assert not ChargerSession.objects.exists()


@pytest.mark.django_db
def test_an_unknown_charger_or_another_kind_of_asset_is_not_found(integration_api, microgrid):
    for asset in ("CH-99", "SITE"):
        response = integration_api.put(
            MG + f"chargers/{asset}/session/", {"departure_at": "x"}, format="json"
        )
        assert response.status_code == 404
        assert response.json()["code"] == "CHARGER_NOT_FOUND"


@pytest.mark.django_db
def test_delete_forgets_the_session_and_a_repeat_is_harmless(integration_api, microgrid, now):
    _report(integration_api, now - timedelta(seconds=30))
    body = {"departure_at": (now + timedelta(hours=2)).isoformat(), "energy_needed_kwh": 60}
    integration_api.put(URL, body, format="json")
    assert integration_api.delete(URL).status_code == 204
    assert integration_api.delete(URL).status_code == 204
    assert not ChargerSession.objects.exists()
    doc = integration_api.get(URL).json()
    assert doc["connected"] is True and doc["departure_at"] is None


@pytest.mark.django_db
def test_a_session_of_an_earlier_connection_is_ignored_and_the_group_default_applies(
    integration_api, operator_api, microgrid, now
):
    _report(integration_api, now - timedelta(seconds=50))
    body = {"departure_at": (now + timedelta(hours=2)).isoformat(), "energy_needed_kwh": 60}
    integration_api.put(URL, body, format="json")
    _report(integration_api, now - timedelta(seconds=40), connected=False)
    _report(integration_api, now - timedelta(seconds=30))
    doc = operator_api.get(URL).json()
    assert doc["departure_at"] is None and doc["energy_needed_kwh"] is None
    SessionDefault.objects.create(
        microgrid=microgrid, node_id="grp-a", default_dwell_s=3600, default_energy_kwh=40
    )
    doc = operator_api.get(URL).json()
    assert doc["departure_source"] == "DEFAULT_DWELL"
    assert doc["departure_at"] == (now - timedelta(seconds=30) + timedelta(hours=1)).isoformat()
    assert doc["energy_needed_kwh"] == 40
