"""Departures and headroom in stored cycles: sessions in, grants and margins out (issue 20)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from balancing.inputs import stamp
from balancing.models import HeadroomHistory
from balancing.services import cycle_request, trigger_of
from microgrid.telemetry.models import SessionDefault
from microgrid.telemetry.selectors import charger_get
from microgrid.telemetry.services import charger_session_put, telemetry_ingest
from tests.balancing.test_cycles import readings


def run(microgrid, now, **kw):
    return cycle_request(
        microgrid=microgrid, trigger=trigger_of("API"), now=lambda: now, **kw
    ).cycle.document


@pytest.mark.django_db
def test_a_session_sent_by_the_api_makes_its_charger_served_first(microgrid):
    now = timezone.now().replace(microsecond=0)
    # grp-a (250 kW) holds CH-01 and CH-02, both asking 150 kW: 125 each without departures.
    telemetry_ingest(
        microgrid=microgrid,
        now=now,
        readings=readings(now, SITE=0, PV_1=0, CH_01=150, CH_02=150, CH_03=None),
    )
    charger_session_put(
        asset=charger_get(microgrid, "CH-01"),
        departure_at=now + timedelta(minutes=62),
        energy_needed_kwh=150.0,
        now=now,
    )
    doc = run(microgrid, now, valid_for_s=60)
    chargers = {c["asset_id"]: c for c in doc["chargers"]}
    # 150 kWh in 60 minutes (62 minus the 2-cycle guard) is 150 kW: all it can take
    assert chargers["CH-01"]["allocated_kw"] == 150.0
    assert chargers["CH-01"]["departure_at"] == stamp(now + timedelta(minutes=62))
    assert chargers["CH-01"]["energy_needed_kwh"] == 150.0
    assert chargers["CH-01"]["at_risk"] is False
    assert chargers["CH-02"]["allocated_kw"] == 100.0
    assert chargers["CH-02"]["reason_codes"] == ["PHYSICAL_RATING", "DEPARTURE_PRIORITY"]
    assert "departure_at" not in chargers["CH-03"]


@pytest.mark.django_db
def test_without_sessions_the_cycle_document_is_todays(microgrid):
    now = timezone.now().replace(microsecond=0)
    telemetry_ingest(
        microgrid=microgrid, now=now, readings=readings(now, SITE=10, PV_1=0, CH_01=150)
    )
    doc = run(microgrid, now)
    assert set(doc["chargers"][0]) == {
        "asset_id",
        "node_id",
        "requested_kw",
        "allocated_kw",
        "reason_codes",
        "binding",
        "valid_until",
    }
    assert all("headroom_margin_kw" not in n for n in doc["nodes"])


@pytest.mark.django_db
def test_a_group_default_dwell_gives_a_departure_to_a_vehicle_nobody_described(microgrid):
    now = timezone.now().replace(microsecond=0)
    SessionDefault.objects.create(
        microgrid=microgrid, node_id="grp-a", default_dwell_s=4 * 3600, default_energy_kwh=80
    )
    telemetry_ingest(microgrid=microgrid, now=now, readings=readings(now, SITE=0, CH_01=150))
    charger = {c["asset_id"]: c for c in run(microgrid, now)["chargers"]}["CH-01"]
    assert charger["departure_at"] == stamp(now + timedelta(hours=4))
    assert charger["energy_needed_kwh"] == 80.0
    assert charger["projected_finish_at"] is not None


@pytest.mark.django_db
def test_static_headroom_keeps_a_margin_on_nodes_with_uncontrolled_load_only(microgrid):
    microgrid.headroom_mode = "static"
    microgrid.headroom_static_kw = 20.0
    microgrid.save()
    now = timezone.now().replace(microsecond=0)
    # The root (800 kW rating) with a 700 kW site load leaves 100 kW, minus the 20 kW margin.
    telemetry_ingest(
        microgrid=microgrid,
        now=now,
        readings=readings(now, SITE=700, PV_1=0, CH_01=None, CH_02=None, CH_03=150),
    )
    doc = run(microgrid, now)
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    assert nodes["grid"]["headroom_margin_kw"] == 20.0
    assert nodes["grid"]["headroom_margin"] == {"mode": "static", "static_kw": 20.0}
    assert "headroom_margin_kw" not in nodes["grp-b"]
    charger = {c["asset_id"]: c for c in doc["chargers"]}["CH-03"]
    assert charger["allocated_kw"] == nodes["grid"]["effective_limit_kw"] - 700 - 20


@pytest.mark.django_db
def test_adaptive_headroom_learns_the_rise_of_the_site_load_over_one_interval(microgrid):
    microgrid.headroom_mode = "adaptive"
    microgrid.headroom_static_kw = 2.0
    microgrid.save()
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=30)
    for i in range(20):
        at = t0 + timedelta(seconds=60 * i)
        site = 100 + (12 if i % 2 else 0)  # rises of 12 kW every other minute
        telemetry_ingest(microgrid=microgrid, now=at, readings=readings(at, SITE=site, PV_1=0))
        doc = run(microgrid, at, valid_for_s=60)
    grid = doc["nodes"][0]
    assert grid["headroom_margin"]["source"] == "RISE_QUANTILE"
    assert grid["headroom_margin"]["rise_kw"] == 12.0
    assert grid["headroom_margin_kw"] == 12.0
    assert len(HeadroomHistory.objects.get(microgrid=microgrid).samples["grid"]) == 20


# ---- where an operator sees it: card, fleet, cycles page, cycle detail -------------------------


@pytest.fixture
def at_risk_cycle(microgrid):
    """CH-01 needs 150 kWh in 10 minutes (at risk); CH-02 has 60 kWh to take in 2 hours."""
    now = timezone.now().replace(microsecond=0)
    telemetry_ingest(
        microgrid=microgrid,
        now=now,
        readings=readings(now, SITE=0, PV_1=0, CH_01=150, CH_02=150, CH_03=None),
    )
    for asset_id, minutes, kwh in (("CH-01", 10, 150.0), ("CH-02", 120, 60.0)):
        charger_session_put(
            asset=charger_get(microgrid, asset_id),
            departure_at=now + timedelta(minutes=minutes),
            energy_needed_kwh=kwh,
            now=now,
        )
    return run(microgrid, now)


@pytest.mark.django_db
def test_the_card_and_the_fleet_say_how_many_vehicles_are_at_risk(operator_api, at_risk_cycle):
    chargers = {c["asset_id"]: c for c in at_risk_cycle["chargers"]}
    assert chargers["CH-01"]["at_risk"] is True and chargers["CH-02"]["at_risk"] is False
    card = operator_api.get("/api/microgrids/MG.NORTH-1/").json()
    assert card["vehicles_at_risk"] == 1
    fleet = operator_api.get("/api/microgrids/").json()
    row = next(m for m in fleet["microgrids"] if m["microgrid_id"] == "MG.NORTH-1")
    assert row["vehicles_at_risk"] == 1


@pytest.mark.django_db
def test_the_pages_show_sessions_at_risk_and_energy_needed_against_delivered(
    operator_client, at_risk_cycle
):
    base = "/manage/microgrids/MG.NORTH-1/"
    card = operator_client.get(base).content.decode()
    assert "1 vehicle at risk of leaving short" in card
    fleet = operator_client.get("/manage/microgrids/").content.decode()
    assert 'data-testid="vehicles-at-risk"' in fleet
    cycles = operator_client.get(base + "cycles/").content.decode()
    assert 'data-testid="session-energy"' in cycles
    assert "energy needed kWh" in cycles and "1 at risk of leaving short" in cycles
    detail = operator_client.get(base + f"cycles/{at_risk_cycle['cycle_id']}/").content.decode()
    assert "of 150.0 kWh" in detail and "at risk" in detail


@pytest.mark.django_db
def test_a_cycle_with_sessions_and_margins_replays_identical(microgrid, at_risk_cycle, capsys):
    from django.core.management import call_command

    microgrid.headroom_mode = "static"
    microgrid.headroom_static_kw = 5.0
    microgrid.save()
    now = timezone.now().replace(microsecond=0)
    doc = run(microgrid, now)
    assert doc["nodes"][0]["headroom_margin_kw"] == 5.0
    for cycle_id in (at_risk_cycle["cycle_id"], doc["cycle_id"]):
        call_command("replay_cycle", cycle_id)
        assert "IDENTICAL" in capsys.readouterr().out
