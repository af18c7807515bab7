"""Cycles end to end: inputs from the database, the engine, storage, breaches, API."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from balancing.models import Breach, Cycle, CycleTrigger
from balancing.services import cycle_request, trigger_of
from microgrid.telemetry.services import telemetry_ingest

REBALANCE = "/api/microgrids/MG.NORTH-1/rebalance/"


def readings(now, **values):
    """SITE=..., PV=..., M=... plus chargers as CH-01=(requested_kw) tuples."""
    out = []
    for asset_id, value in values.items():
        asset_id = asset_id.replace("_", "-")
        if asset_id.startswith("CH"):
            out.append(
                {
                    "asset_id": asset_id,
                    "power_kw": 0,
                    "observed_at": now.isoformat(),
                    "connected": value is not None,
                    "requested_kw": value or 0,
                }
            )
        else:
            out.append({"asset_id": asset_id, "power_kw": value, "observed_at": now.isoformat()})
    return out


@pytest.fixture
def now():
    return timezone.now()


def run(microgrid, **kw):
    return cycle_request(microgrid=microgrid, trigger=trigger_of("API"), **kw).cycle


@pytest.mark.django_db
def test_fresh_telemetry_gives_a_measured_cycle_with_fair_shares(microgrid, now):
    telemetry_ingest(
        microgrid=microgrid,
        now=now,
        readings=readings(now, SITE=100, PV_1=0, M_GRID=200, CH_01=150, CH_02=150, CH_03=150),
    )
    cycle = run(microgrid)
    doc = cycle.document
    assert doc["source_mode"] == "MEASURED"
    chargers = {c["asset_id"]: c for c in doc["chargers"]}
    # grp-a (250) holds two chargers at 125 each; sb-1 (400) leaves 150 for grp-b's one
    assert chargers["CH-01"]["allocated_kw"] == 125.0
    assert chargers["CH-01"]["reason_codes"] == ["PHYSICAL_RATING"]
    assert chargers["CH-01"]["binding"]["node_id"] == "grp-a"
    assert chargers["CH-03"]["allocated_kw"] == 150.0
    assert chargers["CH-03"]["reason_codes"] == ["DEMAND_MET"]
    assert chargers["CH-01"]["valid_until"]
    assert [n["node_id"] for n in doc["nodes"]] == ["grid", "sb-1", "grp-a", "grp-b"]
    assert doc["outcome"] == "CONSTRAINED"
    assert doc["reason_codes"] == ["PHYSICAL_RATING", "DEMAND_MET"]


@pytest.mark.django_db
def test_a_stale_site_load_is_replaced_by_its_fallback_and_shown(microgrid, now):
    old = now - timedelta(seconds=300)
    telemetry_ingest(microgrid=microgrid, now=now, readings=readings(old, SITE=10))
    telemetry_ingest(
        microgrid=microgrid,
        now=now,
        readings=readings(now, PV_1=0, CH_01=50, CH_02=None, CH_03=None),
    )
    doc = run(microgrid).document
    assert doc["source_mode"] == "FALLBACK_DERIVED"
    root = doc["nodes"][0]
    assert root["source_mode"] == "FALLBACK_DERIVED"
    assert root["fallback"][0]["asset_id"] == "SITE"
    assert root["fallback"][0]["why"] == "STALE"
    assert root["fallback"][0]["value_kw"] == 80.0
    assert root["fallback"][0]["threshold_s"] == 60
    assert "TELEMETRY_FALLBACK" in doc["reason_codes"]


@pytest.mark.django_db
def test_a_missing_site_load_without_fallback_fails_safe(microgrid, small_topology, now):
    from microgrid.topology.services import topology_replace

    for a in small_topology["assets"]:
        if a["asset_id"] == "SITE":
            a["fallback_kw"] = None
    topology_replace(microgrid=microgrid, base_version=1, **small_topology)
    telemetry_ingest(
        microgrid=microgrid, now=now, readings=readings(now, PV_1=0, CH_01=50, CH_02=50, CH_03=None)
    )
    doc = run(microgrid).document
    assert doc["outcome"] == "FAILSAFE"
    assert doc["source_mode"] == "FAILSAFE"
    assert doc["reason_codes"][0] == "FAILSAFE_TELEMETRY_UNAVAILABLE"
    chargers = {c["asset_id"]: c for c in doc["chargers"]}
    assert chargers["CH-01"]["allocated_kw"] == 4.1
    assert chargers["CH-01"]["reason_codes"] == ["FAILSAFE_TELEMETRY_UNAVAILABLE"]
    assert chargers["CH-03"]["allocated_kw"] == 0.0


@pytest.mark.django_db
def test_rerunning_the_same_inputs_gives_the_same_ordered_reason_codes(microgrid, now):
    telemetry_ingest(
        microgrid=microgrid,
        now=now,
        readings=readings(now, SITE=100, PV_1=5, CH_01=150, CH_02=20, CH_03=None),
    )
    first = run(microgrid).document
    second = run(microgrid).document
    assert first["reason_codes"] == second["reason_codes"]
    assert [c["reason_codes"] for c in first["chargers"]] == [
        c["reason_codes"] for c in second["chargers"]
    ]


@pytest.mark.django_db
def test_a_meter_above_the_limit_opens_one_breach_and_a_later_cycle_resolves_it(microgrid, now):
    telemetry_ingest(
        microgrid=microgrid, now=now, readings=readings(now, SITE=10, PV_1=0, M_GRID=900)
    )
    doc = run(microgrid).document
    assert len(doc["breaches"]) == 1
    breach = doc["breaches"][0]
    assert breach["node_id"] == "grid"
    assert breach["primary_reason_code"] == "BREACH_PHYSICAL_RATING"
    run(microgrid)  # still above: the same breach stays open
    assert Breach.objects.filter(status="OPEN").count() == 1
    later = now + timedelta(seconds=5)
    telemetry_ingest(microgrid=microgrid, now=later, readings=readings(later, M_GRID=100))
    run(microgrid)
    row = Breach.objects.get()
    assert row.status == "RESOLVED"
    assert row.resolved_at is not None


@pytest.mark.django_db
def test_a_stale_meter_never_raises_a_breach(microgrid, now):
    old = now - timedelta(seconds=120)
    telemetry_ingest(microgrid=microgrid, now=now, readings=readings(old, M_GRID=5000))
    doc = run(microgrid).document
    assert doc["breaches"] == []


@pytest.mark.django_db
def test_rebalance_api_runs_a_cycle_and_answers_with_it(operator_api, microgrid):
    response = operator_api.post(
        REBALANCE, {"scope": {"type": "NODE", "node_id": "sb-1"}}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["scope"] == {"type": "NODE", "node_id": "sb-1"}
    assert body["trigger"] == {"type": "API"}
    assert Cycle.objects.count() == 1
    detail = operator_api.get(f"/api/microgrids/MG.NORTH-1/cycles/{body['cycle_id']}/").json()
    assert detail["cycle_id"] == body["cycle_id"]
    listed = operator_api.get("/api/microgrids/MG.NORTH-1/cycles/?trigger=API").json()["cycles"]
    assert [c["cycle_id"] for c in listed] == [body["cycle_id"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"scope": {"type": "NODE", "node_id": "nope"}}, 422, "NODE_NOT_FOUND"),
        ({"scope": {"type": "ASSET"}}, 422, "FIELD_INVALID"),
        ({"scope": "MICROGRID"}, 422, "FIELD_INVALID"),
        ({"other": 1}, 422, "FIELD_INVALID"),
    ],
)
def test_rebalance_refuses_bad_scopes_and_runs_nothing(operator_api, microgrid, body, status, code):
    response = operator_api.post(REBALANCE, body, format="json")
    assert response.status_code == status
    assert response.json()["code"] == code
    assert Cycle.objects.count() == 0


@pytest.mark.django_db
def test_cycle_list_filters_are_validated(operator_api, microgrid):
    response = operator_api.get("/api/microgrids/MG.NORTH-1/cycles/?outcome=MAYBE")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "outcome"
    assert operator_api.get("/api/microgrids/MG.NORTH-1/cycles/?since=yesterday").status_code == 422


@pytest.mark.django_db
def test_unknown_cycle_is_404(operator_api, microgrid):
    response = operator_api.get("/api/microgrids/MG.NORTH-1/cycles/nope/")
    assert response.status_code == 404
    assert response.json()["code"] == "CYCLE_NOT_FOUND"


@pytest.mark.django_db
def test_breaches_endpoint_filters_by_status(operator_api, microgrid, now):
    telemetry_ingest(
        microgrid=microgrid, now=now, readings=readings(now, SITE=10, PV_1=0, M_GRID=900)
    )
    run(microgrid)
    assert (
        len(operator_api.get("/api/microgrids/MG.NORTH-1/breaches/?status=OPEN").json()["breaches"])
        == 1
    )
    assert (
        operator_api.get("/api/microgrids/MG.NORTH-1/breaches/?status=RESOLVED").json()["breaches"]
        == []
    )
    assert operator_api.get("/api/microgrids/MG.NORTH-1/breaches/?status=X").status_code == 422


@pytest.mark.django_db
def test_card_shows_latest_cycle_and_open_breaches(operator_api, microgrid, now):
    telemetry_ingest(
        microgrid=microgrid, now=now, readings=readings(now, SITE=10, PV_1=0, M_GRID=900)
    )
    cycle = run(microgrid)
    card = operator_api.get("/api/microgrids/MG.NORTH-1/").json()
    assert card["latest_cycle"]["cycle_id"] == cycle.cycle_id
    assert card["open_breach_count"] == 1


@pytest.mark.django_db
def test_a_trigger_pending_when_a_cycle_starts_is_served_by_it(microgrid):
    waiting = CycleTrigger.objects.create(
        microgrid=microgrid,
        trigger=trigger_of("TOU_TRANSITION"),
        scope={"type": "MICROGRID"},
        requested_at=timezone.now() - timedelta(seconds=1),
    )
    cycle = run(microgrid)
    waiting.refresh_from_db()
    assert waiting.served_by_id == cycle.pk


@pytest.mark.django_db
def test_replay_cycle_reports_identical(microgrid, now, capsys):
    telemetry_ingest(
        microgrid=microgrid, now=now, readings=readings(now, SITE=10, PV_1=3, CH_01=40, CH_02=70)
    )
    cycle = run(microgrid)
    call_command("replay_cycle", cycle.cycle_id)
    assert "IDENTICAL" in capsys.readouterr().out


@pytest.mark.django_db
def test_cycle_reads_use_a_constant_number_of_queries(
    operator_api, microgrid, now, django_assert_max_num_queries
):
    telemetry_ingest(
        microgrid=microgrid, now=now, readings=readings(now, SITE=10, PV_1=0, M_GRID=900)
    )
    cycle = run(microgrid)
    # 10: dispatch reads the cycle's OCPP rows and its packed batch, and a pulled cycle's
    # setpoints ask once whether a newer cycle superseded them (spec 4.7)
    with django_assert_max_num_queries(10):
        operator_api.get(f"/api/microgrids/MG.NORTH-1/cycles/{cycle.cycle_id}/")
    with django_assert_max_num_queries(8):
        operator_api.get("/api/microgrids/MG.NORTH-1/cycles/")


@pytest.mark.django_db
def test_cycle_pages_show_source_mode_fallback_and_reason_codes(operator_client, microgrid, now):
    old = now - timedelta(seconds=300)
    telemetry_ingest(microgrid=microgrid, now=now, readings=readings(old, SITE=10))
    telemetry_ingest(microgrid=microgrid, now=now, readings=readings(now, PV_1=0, CH_01=50))
    cycle = run(microgrid)
    html = operator_client.get(
        f"/manage/microgrids/MG.NORTH-1/cycles/{cycle.cycle_id}/"
    ).content.decode()
    assert "FALLBACK_DERIVED" in html and "TELEMETRY_FALLBACK" in html
    assert "STALE" in html and "80.0 kW" in html
    listing = operator_client.get("/manage/microgrids/MG.NORTH-1/cycles/").content.decode()
    assert "<svg" in listing and cycle.cycle_id in listing
    assert operator_client.get("/manage/microgrids/MG.NORTH-1/breaches/").status_code == 200


@pytest.mark.django_db
def test_rebalancing_a_microgrid_without_topology_is_a_clear_409(operator_api, empty_microgrid):
    response = operator_api.post(REBALANCE, {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "MICROGRID_HAS_NO_TOPOLOGY"
    assert Cycle.objects.count() == 0


@pytest.mark.django_db
def test_a_cycle_takes_the_same_queries_for_a_small_and_a_twenty_times_larger_depot():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from balancing.dispatch import Dispatcher
    from benchtools.benchmarks import materialise
    from benchtools.synthetic import build_engine_input

    class Quiet(Dispatcher):
        def dispatch(self, **kwargs):
            pass

    counts = []
    for chargers, nodes in ((10, 5), (200, 40)):
        microgrid = materialise(
            build_engine_input(chargers, nodes, depth=4, seed=1), f"Q-{chargers}"
        )
        now = timezone.now()

        def run_once(microgrid=microgrid, now=now):
            return cycle_request(
                microgrid=microgrid, trigger=trigger_of("API"), now=lambda: now, dispatcher=Quiet()
            )

        run_once()  # prepared statements and caches warm, as in a worker
        with CaptureQueriesContext(connection) as ctx:
            cycle = run_once().cycle
        assert cycle.outcome == "CONSTRAINED"
        counts.append(len(ctx.captured_queries))
    # 15 for the cycle, 4 for its outbox (dispatch settings, OCPP-mapped chargers, supersede,
    # one INSERT).
    assert counts[0] == counts[1] <= 19, counts
