"""Telemetry ingest: whole-batch validation, idempotent repeats, latest only moves forward."""

from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.telemetry.models import LatestReading, TelemetryReading
from microgrid.telemetry.selectors import freshness, latest_readings

URL = "/api/microgrids/MG.NORTH-1/telemetry/"


def iso(dt):
    return dt.isoformat()


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.mark.django_db
def test_a_valid_batch_is_accepted_and_becomes_the_latest(integration_api, microgrid, now):
    body = {
        "readings": [
            {"asset_id": "SITE", "power_kw": 42.5, "observed_at": iso(now)},
            {
                "asset_id": "CH-01",
                "power_kw": 20,
                "observed_at": iso(now),
                "connected": True,
                "requested_kw": 50,
            },
            {"asset_id": "M-GRID", "power_kw": 300, "observed_at": iso(now)},
        ]
    }
    response = integration_api.post(URL, body, format="json")
    assert response.status_code == 202
    assert response.json() == {"accepted": 3}
    latest = latest_readings(microgrid)
    assert latest["SITE"]["power_kw"] == 42.5
    assert latest["CH-01"]["connected"] is True
    assert latest["CH-01"]["plugged_in_at"] == now


@pytest.mark.django_db
def test_a_batch_with_one_bad_reading_is_refused_whole_with_itemised_errors(
    integration_api, microgrid, now
):
    body = {
        "readings": [
            {"asset_id": "SITE", "power_kw": 42.5, "observed_at": iso(now)},
            {"asset_id": "NOPE", "power_kw": 1, "observed_at": iso(now)},
            {"asset_id": "PV-1", "power_kw": "x", "observed_at": iso(now)},
            {"asset_id": "PV-1", "power_kw": 1, "observed_at": iso(now + timedelta(minutes=5))},
            {"asset_id": "CH-02", "power_kw": 1, "observed_at": iso(now)},
            {"asset_id": "SITE", "power_kw": 1, "observed_at": "2026-01-01T10:00:00"},
        ]
    }
    response = integration_api.post(URL, body, format="json")
    assert response.status_code == 422
    data = response.json()
    assert data["code"] == "TELEMETRY_INVALID"
    assert [(e["code"], e.get("asset_id"), e.get("field")) for e in data["errors"]] == [
        ("ASSET_NOT_FOUND", "NOPE", None),
        ("FIELD_INVALID", "CH-02", "connected"),
        ("FIELD_INVALID", "PV-1", "observed_at"),
        ("FIELD_INVALID", "PV-1", "power_kw"),
        ("FIELD_INVALID", "SITE", "observed_at"),
    ]
    assert TelemetryReading.objects.count() == 0
    assert LatestReading.objects.count() == 0


@pytest.mark.django_db
def test_an_older_reading_never_replaces_a_newer_one(integration_api, microgrid, now):
    integration_api.post(
        URL,
        {"readings": [{"asset_id": "SITE", "power_kw": 50, "observed_at": iso(now)}]},
        format="json",
    )
    integration_api.post(
        URL,
        {
            "readings": [
                {
                    "asset_id": "SITE",
                    "power_kw": 10,
                    "observed_at": iso(now - timedelta(seconds=30)),
                }
            ]
        },
        format="json",
    )
    assert latest_readings(microgrid)["SITE"]["power_kw"] == 50
    assert TelemetryReading.objects.count() == 2


@pytest.mark.django_db
def test_a_repeated_reading_is_stored_once(integration_api, microgrid, now):
    body = {"readings": [{"asset_id": "SITE", "power_kw": 50, "observed_at": iso(now)}]}
    integration_api.post(URL, body, format="json")
    integration_api.post(URL, body, format="json")
    assert TelemetryReading.objects.count() == 1


@pytest.mark.django_db
def test_plugged_in_time_is_the_first_reading_of_the_current_connection(
    integration_api, microgrid, now
):
    def send(offset, connected):
        integration_api.post(
            URL,
            {
                "readings": [
                    {
                        "asset_id": "CH-01",
                        "power_kw": 0,
                        "observed_at": iso(now + timedelta(seconds=offset)),
                        "connected": connected,
                        "requested_kw": 10 if connected else 0,
                    }
                ]
            },
            format="json",
        )

    send(-100, True)
    send(-90, True)
    assert latest_readings(microgrid)["CH-01"]["plugged_in_at"] == now - timedelta(seconds=100)
    send(-80, False)
    assert latest_readings(microgrid)["CH-01"]["plugged_in_at"] is None
    send(-70, True)
    assert latest_readings(microgrid)["CH-01"]["plugged_in_at"] == now - timedelta(seconds=70)


@pytest.mark.django_db
def test_only_ingest_roles_may_post_telemetry(operator_api, anon_api, microgrid, now):
    body = {"readings": []}
    assert operator_api.post(URL, body, format="json").status_code == 403
    assert anon_api.post(URL, body, format="json").status_code == 401


@pytest.mark.django_db
def test_unknown_microgrid_is_404(integration_api):
    response = integration_api.post(
        "/api/microgrids/NOPE/telemetry/", {"readings": []}, format="json"
    )
    assert response.status_code == 404


@pytest.mark.django_db
def test_a_body_without_readings_is_field_invalid(integration_api, microgrid):
    response = integration_api.post(URL, {"reading": []}, format="json")
    assert response.status_code == 422


@pytest.mark.django_db
def test_ingest_query_count_does_not_grow_with_the_batch(
    integration_api, microgrid, now, django_assert_max_num_queries
):
    readings = [
        {"asset_id": a, "power_kw": 1, "observed_at": iso(now - timedelta(seconds=i))}
        for i in range(50)
        for a in ("SITE", "PV-1", "M-GRID")
    ]
    with django_assert_max_num_queries(14):
        assert integration_api.post(URL, {"readings": readings}, format="json").status_code == 202


def test_freshness_boundaries(now=None):
    from datetime import datetime

    t = datetime(2026, 1, 1, 12, 0, 0)
    assert freshness(None, t, 60) == "MISSING"
    assert freshness(t - timedelta(seconds=60), t, 60) == "FRESH"
    assert freshness(t - timedelta(seconds=61), t, 60) == "STALE"
