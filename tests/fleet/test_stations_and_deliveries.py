"""The fleet overview's OCPP-stations-offline and failed-setpoints columns (page and API)."""

from __future__ import annotations

import socket

import pytest
from django.utils import timezone

from balancing.services import cycle_request, trigger_of
from dispatch.selectors import cycle_targets
from dispatch.services import dispatch_config_set
from microgrid.telemetry.services import telemetry_ingest
from stations.profile import apply_stations
from stations.services import station_connected
from tests.fleet.test_overview import make_microgrid

pytestmark = pytest.mark.django_db

SECRET = "a-secret-for-the-fleet-tests"


def _closed_port() -> int:
    """A local port nobody listens on: a webhook there fails with a refused connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stations(microgrid, *ids_connected: tuple[str, bool]) -> None:
    apply_stations(
        microgrid,
        [
            {"station_id": f"{microgrid.microgrid_id}-{sid}", "password": "a-station-password-1"}
            for sid, _ in ids_connected
        ],
        None,
    )
    for sid, connected in ids_connected:
        station_connected(
            station_id=f"{microgrid.microgrid_id}-{sid}",
            protocol="ocpp1.6",
            gateway="127.0.0.1:9",
            connected=connected,
        )


def _failing_cycle(microgrid, django_capture_on_commit_callbacks):
    """A cycle whose setpoints go to a webhook that refuses the connection: FAILED."""
    dispatch_config_set(
        microgrid=microgrid,
        webhook_url=f"http://127.0.0.1:{_closed_port()}/hook",
        webhook_secret=SECRET,
    )
    now = timezone.now()
    readings = [
        {
            "asset_id": a,
            "power_kw": 0,
            "observed_at": now.isoformat(),
            "connected": True,
            "requested_kw": 100,
        }
        for a in ("CH-01", "CH-02")
    ]
    readings.append({"asset_id": "SITE", "power_kw": 20, "observed_at": now.isoformat()})
    telemetry_ingest(microgrid=microgrid, readings=readings, now=now)
    with django_capture_on_commit_callbacks(execute=True):
        return cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle


def test_offline_stations_and_the_latest_cycles_failed_setpoints_are_counted(
    operator_api, operator_client, microgrid, small_topology, django_capture_on_commit_callbacks
):
    other = make_microgrid(2, small_topology)
    _stations(microgrid, ("A", True), ("B", False), ("C", False))
    _stations(other, ("A", True))
    failed = _failing_cycle(microgrid, django_capture_on_commit_callbacks)
    targets = [t for t in cycle_targets(failed) if t.target_type == "CHARGER"]
    assert {t.status for t in targets} == {"FAILED"}
    n_failed = len(targets)
    assert n_failed >= 2

    rows = {r["microgrid_id"]: r for r in operator_api.get("/api/microgrids/").json()["microgrids"]}
    north = rows["MG.NORTH-1"]
    assert (north["stations"], north["stations_offline"]) == (3, 2)
    assert north["failed_deliveries"] == n_failed
    quiet = rows[other.microgrid_id]
    assert (quiet["stations"], quiet["stations_offline"], quiet["failed_deliveries"]) == (1, 0, 0)

    html = operator_client.get("/manage/microgrids/").content.decode()
    assert ">2 offline</a>" in html and "of 3" in html
    assert f"/cycles/{failed.cycle_id}/" in html and f">{n_failed}</a>" in html
    assert "1 connected" in html

    # Only the latest cycle counts: a newer one that delivers nothing clears the column.
    dispatch_config_set(microgrid=microgrid)
    with django_capture_on_commit_callbacks(execute=True):
        cycle_request(microgrid=microgrid, trigger=trigger_of("API"))
    rows = {r["microgrid_id"]: r for r in operator_api.get("/api/microgrids/").json()["microgrids"]}
    assert rows["MG.NORTH-1"]["failed_deliveries"] == 0


@pytest.mark.parametrize("page_size", [3, 30])
def test_the_new_columns_cost_no_query_per_microgrid(
    operator_api,
    operator_client,
    small_topology,
    django_assert_max_num_queries,
    django_capture_on_commit_callbacks,
    page_size,
):
    for n in range(1, 9):
        m = make_microgrid(n, small_topology)
        _stations(m, ("A", n % 2 == 0), ("B", False))
        if n % 3 == 0:
            _failing_cycle(m, django_capture_on_commit_callbacks)
    with django_assert_max_num_queries(8):
        body = operator_api.get(f"/api/microgrids/?page_size={page_size}").json()
    assert len(body["microgrids"]) == min(page_size, 8)
    assert sum(r["stations_offline"] for r in body["microgrids"]) == (
        sum(1 + (n % 2) for n in range(1, min(page_size, 8) + 1))
    )
    with django_assert_max_num_queries(10):
        response = operator_client.get(f"/manage/microgrids/?page_size={page_size}")
    assert response.status_code == 200
