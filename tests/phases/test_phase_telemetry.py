"""Per-phase currents on readings (issue 19), and what the cycle learns from them: which node
phases each EV draws on, and breaches per phase from meters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from balancing.breaches import BreachNodeInput, MeterReading, detect_breaches
from balancing.inputs import gather_inputs
from balancing.models import Breach
from balancing.phase_alloc import drawn_phases, rotation_phases
from balancing.services import cycle_request
from microgrid.telemetry.models import LatestReading, TelemetryReading
from microgrid.telemetry.selectors import latest_readings
from microgrid.telemetry.services import telemetry_ingest

URL = "/api/microgrids/MG.NORTH-1/telemetry/"


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


def _charger(asset_id, now, current_a=None, connected=True, kw=7.0):
    r = {
        "asset_id": asset_id,
        "power_kw": kw,
        "observed_at": now.isoformat(),
        "connected": connected,
        "requested_kw": 7.4 if connected else 0,
    }
    if current_a is not None:
        r["current_a"] = current_a
    return r


def _meter(now, current_a, kw=10.0):
    return {
        "asset_id": "M-F",
        "power_kw": kw,
        "observed_at": now.isoformat(),
        "current_a": current_a,
    }


@pytest.mark.django_db
def test_currents_are_stored_with_the_reading_and_the_latest(integration_api, phase_microgrid, now):
    body = {"readings": [_charger("CH-3", now, [16, 0.2, 0]), _meter(now, [1, 16.5, 3])]}
    response = integration_api.post(URL, body, format="json")
    assert response.status_code == 202
    stored = TelemetryReading.objects.get(asset__asset_id="CH-3")
    assert (stored.current_l1_a, stored.current_l2_a, stored.current_l3_a) == (16, 0.2, 0)
    latest = latest_readings(phase_microgrid)
    assert latest["M-F"]["current_a"] == [1, 16.5, 3]
    # A newer reading without currents leaves the latest without them.
    later = now + timedelta(seconds=5)
    telemetry_ingest(microgrid=phase_microgrid, readings=[_meter(later, None)], now=later)
    assert latest_readings(phase_microgrid)["M-F"]["current_a"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    [[1, 2], [1, 2, 3, 4], [1, -2, 3], [1, "2", 3], "16", 16, [1, True, 3], [1, 2, 1e6]],
)
def test_bad_currents_refuse_the_whole_batch(integration_api, phase_microgrid, now, value):
    body = {"readings": [_meter(now, [1, 1, 1]), _charger("CH-1", now, value)]}
    response = integration_api.post(URL, body, format="json")
    assert response.status_code == 422
    payload = response.json()
    assert payload["code"] == "TELEMETRY_INVALID"
    assert [(e["code"], e["field"], e["asset_id"]) for e in payload["errors"]] == [
        ("FIELD_INVALID", "current_a", "CH-1")
    ]
    assert TelemetryReading.objects.count() == 0
    assert LatestReading.objects.count() == 0


@pytest.mark.django_db
def test_a_non_finite_current_is_refused(phase_microgrid, now):
    from microgrid.common.errors import DomainError

    with pytest.raises(DomainError) as refused:
        telemetry_ingest(
            microgrid=phase_microgrid, now=now, readings=[_meter(now, [1, float("inf"), 1])]
        )
    assert refused.value.errors[0].field == "current_a"
    assert "[1]" in refused.value.errors[0].message


@pytest.mark.django_db
def test_currents_are_only_for_chargers_and_meters(integration_api, microgrid, now):
    body = {
        "readings": [
            {
                "asset_id": "SITE",
                "power_kw": 5,
                "observed_at": now.isoformat(),
                "current_a": [1, 1, 1],
            }
        ]
    }
    response = integration_api.post(URL, body, format="json")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "current_a"


def test_rotation_maps_charger_phases_to_node_phases():
    assert rotation_phases(3, "L1L2L3") == (0, 1, 2)
    assert rotation_phases(3, "L2L3L1") == (1, 2, 0)
    assert rotation_phases(3, "L3L1L2") == (2, 0, 1)
    assert rotation_phases(1, "L3") == (2,)


def test_a_single_phase_ev_on_a_three_phase_charger_is_learnt_from_its_currents():
    # Charger L1 carries the EV; with rotation L2L3L1 that is the node's L2.
    assert drawn_phases(3, "L2L3L1", [16.0, 0.3, 0.1]) == (1,)
    assert drawn_phases(3, "L1L2L3", [16.0, 16.2, 15.8]) == (0, 1, 2)
    # Two-phase EVs exist (some draw on L1 and L2).
    assert drawn_phases(3, "L3L1L2", [10.0, 10.0, 0.0]) == (0, 2)
    # Nothing drawn, or no currents: the wiring is all there is to go by.
    assert drawn_phases(3, "L2L3L1", [0.2, 0.1, 0.0]) == (0, 1, 2)
    assert drawn_phases(3, "L1L2L3", None) == (0, 1, 2)
    assert drawn_phases(1, "L3", [0.0, 0.0, 0.0]) == (2,)


@pytest.mark.django_db
def test_without_per_phase_data_the_engine_input_is_as_before(microgrid, now):
    inputs = gather_inputs(microgrid, now)
    assert inputs.engine.phase is None
    assert "phase" not in inputs.engine.to_dict()


@pytest.mark.django_db
def test_the_cycle_input_carries_the_phases_each_ev_draws_on(phase_microgrid, now):
    telemetry_ingest(
        microgrid=phase_microgrid,
        now=now,
        readings=[
            _charger("CH-1", now),
            _charger("CH-2", now, [8.0, 0, 0]),
            _charger("CH-3", now, [16.0, 0.3, 0.0]),  # a single-phase EV
        ],
    )
    phase = gather_inputs(phase_microgrid, now).engine.phase
    assert phase is not None
    by_id = {c.asset_id: c for c in phase.chargers}
    assert by_id["CH-1"].drawn == (0,)
    assert by_id["CH-2"].drawn == (1,)
    assert by_id["CH-3"].drawn == (1,)  # charger L1 on the node's L2
    feeder = next(n for n in phase.nodes if n.node_id == "feeder")
    assert (feeder.limit_a, feeder.limit_a_source, feeder.phases) == (32.0, "PHYSICAL_RATING", 3)
    # A stale reading teaches nothing: the wiring again.
    later = now + timedelta(seconds=120)
    phase = gather_inputs(phase_microgrid, later).engine.phase
    assert {c.asset_id: c.drawn for c in phase.chargers}["CH-3"] == (0, 1, 2)


def test_a_phase_above_its_current_limit_is_a_breach_naming_the_phase():
    node = BreachNodeInput("feeder", 22.0, "PHYSICAL_RATING", limit_a=32.0, voltage_v=230.0)
    meters = [MeterReading("M-F", "feeder", 15.0, "FRESH", (96.0, 0.0, 32.3))]
    (breach,) = detect_breaches([node], meters)  # 15 kW: the kW limit looks fine
    assert breach.phase == "L1"
    assert breach.exceeded == ("BREACH_PHASE_CURRENT",)
    assert breach.primary_reason_code == "BREACH_PHASE_CURRENT"
    assert (breach.measured_a, breach.limit_a, breach.excess_a) == (96.0, 32.0, 64.0)
    assert (breach.measured_kw, breach.limit_kw) == (22.08, 7.36)
    # 32.3 A is within 1 % (min 0.5 A) of 32 A on L3: no breach there.


def test_phase_breaches_need_fresh_currents_and_a_current_limit():
    node = BreachNodeInput("feeder", 22.0, "PHYSICAL_RATING", limit_a=32.0)
    assert detect_breaches([node], [MeterReading("M", "feeder", 1.0, "STALE", (99, 99, 99))]) == ()
    assert detect_breaches([node], [MeterReading("M", "feeder", 1.0, "FRESH", None)]) == ()
    no_limit = BreachNodeInput("feeder", 22.0, "PHYSICAL_RATING")
    assert (
        detect_breaches([no_limit], [MeterReading("M", "feeder", 1.0, "FRESH", (99, 0, 0))]) == ()
    )
    single = BreachNodeInput("feeder", 22.0, "PHYSICAL_RATING", limit_a=32.0, phases=1)
    found = detect_breaches([single], [MeterReading("M", "feeder", 1.0, "FRESH", (10, 99, 99))])
    assert found == ()  # a single-phase node has only L1


def _cycle(microgrid):
    return cycle_request(microgrid=microgrid, trigger={"type": "API"}).cycle


@pytest.mark.django_db
def test_phase_breaches_open_and_resolve_per_phase(phase_microgrid, now):
    telemetry_ingest(microgrid=phase_microgrid, now=now, readings=[_meter(now, [40, 33, 10])])
    cycle = _cycle(phase_microgrid)
    breaches = cycle.document["breaches"]
    assert [(b["node_id"], b["phase"], b["primary_reason_code"]) for b in breaches] == [
        ("feeder", "L1", "BREACH_PHASE_CURRENT"),
        ("feeder", "L2", "BREACH_PHASE_CURRENT"),
    ]
    assert Breach.objects.filter(status="OPEN").count() == 2
    # L1 back within the limit, L2 still over: one stays open, one is resolved.
    later = now + timedelta(seconds=10)
    telemetry_ingest(microgrid=phase_microgrid, now=later, readings=[_meter(later, [20, 34, 10])])
    cycle_request(microgrid=phase_microgrid, trigger={"type": "API"}, now=lambda: later)
    states = dict(Breach.objects.values_list("phase", "status"))
    assert states == {"L1": "RESOLVED", "L2": "OPEN"}
    api = Breach.objects.get(phase="L2").to_dict()
    assert (api["measured_a"], api["limit_a"], api["excess_a"]) == (33.0, 32.0, 1.0)


@pytest.mark.django_db
def test_breaches_api_shows_phase_breaches(operator_api, phase_microgrid, now):
    telemetry_ingest(microgrid=phase_microgrid, now=now, readings=[_meter(now, [0, 0, 50])])
    _cycle(phase_microgrid)
    body = operator_api.get("/api/microgrids/MG.NORTH-1/breaches/").json()
    (breach,) = body["breaches"]
    assert breach["phase"] == "L3" and breach["exceeded"] == ["BREACH_PHASE_CURRENT"]


@pytest.mark.django_db
def test_a_cycle_allocates_per_phase_and_its_page_shows_the_currents(
    client, make_user, phase_microgrid, now
):
    # Three single-phase EVs: CH-1 on L1, CH-2 on L2, CH-3 (three-phase charger, rotation
    # L2L3L1) with a single-phase EV on its L1, i.e. the node's L2: L2 carries two.
    telemetry_ingest(
        microgrid=phase_microgrid,
        now=now,
        readings=[
            _charger("CH-1", now, [10.0, 0, 0]),
            _charger("CH-2", now, [0, 10.0, 0]),
            {**_charger("CH-3", now, [16.0, 0.2, 0.1]), "requested_kw": 22},
        ],
    )
    cycle = _cycle(phase_microgrid)
    chargers = {c["asset_id"]: c for c in cycle.document["chargers"]}
    assert chargers["CH-3"]["phases"] == 1
    assert chargers["CH-2"]["limit_a"] + chargers["CH-3"]["limit_a"] <= 32.0
    assert "PHASE_CURRENT_LIMIT" in chargers["CH-3"]["reason_codes"]
    assert chargers["CH-3"]["binding"]["phase"] == "L2"
    assert chargers["CH-1"]["reason_codes"] == ["ASSET_MAX_POWER"]  # L1 alone: 7.4 kW fits
    client.force_login(make_user("operator"))
    page = client.get(f"/manage/microgrids/MG.NORTH-1/cycles/{cycle.cycle_id}/").content.decode()
    assert 'data-testid="charger-current"' in page
    assert "L2 32.0 A" in page
