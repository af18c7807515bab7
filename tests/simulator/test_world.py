"""The simulated depot on its own (pure): EVs, setpoints, failsafe, telemetry, seeded sessions."""

from __future__ import annotations

import math
import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from simulator.scenario import LoadCurve, RandomSessions, Scenario, Session
from simulator.world import World

START = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
NODES = [
    {"node_id": "grid", "parent_id": None},
    {"node_id": "grp-a", "parent_id": "grid"},
    {"node_id": "grp-b", "parent_id": "grid"},
]


def charger(asset_id, node_id="grp-a", max_kw=50.0, failsafe=4.0):
    return {
        "asset_id": asset_id,
        "node_id": node_id,
        "kind": "CHARGER",
        "max_power_kw": max_kw,
        "failsafe_power_kw": failsafe,
    }


ASSETS = [
    charger("CH-01"),
    charger("CH-02"),
    charger("CH-03", "grp-b"),
    {"asset_id": "SITE", "node_id": "grid", "kind": "SITE_LOAD"},
    {"asset_id": "PV-1", "node_id": "grid", "kind": "PV"},
    {"asset_id": "M-GRID", "node_id": "grid", "kind": "METER"},
    {"asset_id": "M-B", "node_id": "grp-b", "kind": "METER"},
]


def world(sessions=(), random_sessions=None, loads=(), assets=ASSETS, seed=1, step_s=60):
    scenario = Scenario(
        seed=seed,
        start=START,
        duration_s=3600,
        step_s=step_s,
        sessions=tuple(sessions),
        random_sessions=random_sessions,
        loads=tuple(loads),
        degradations=(),
        requests=(),
    )
    return World(
        scenario,
        nodes=NODES,
        assets=list(assets),
        timezone_name="Europe/Amsterdam",
        rng=random.Random(seed),
    )


def by_id(readings):
    return {r["asset_id"]: r for r in readings}


def test_an_ev_draws_its_setpoint_until_it_has_what_it_came_for():
    w = world([Session("CH-01", 0, 3600, 1.0, None, "sessions[0]")])
    w.apply_setpoint("CH-01", 30.0, valid_until_s=1000)
    w.advance(60)
    assert by_id(w.readings(60, set(), "t"))["CH-01"]["power_kw"] == 30.0  # 0.5 kWh in a minute
    w.advance(180)
    reading = by_id(w.readings(180, set(), "t"))["CH-01"]
    # Full after 0.5 kWh more, i.e. 60 s of the last 120: it drew 15 kW on average and asks for 0.
    assert (reading["power_kw"], reading["requested_kw"], reading["connected"]) == (15.0, 0.0, True)
    [result] = w.sessions()
    assert result.delivered_kwh == pytest.approx(1.0)


def test_an_ev_asks_for_what_it_can_still_take_in_one_step():
    w = world([Session("CH-01", 0, 3600, 0.5, 40.0, "sessions[0]")])
    # 0.5 kWh in one 60 s step is 30 kW, less than the EV's 40 kW.
    assert by_id(w.readings(0, set(), "t"))["CH-01"]["requested_kw"] == 30.0


def test_a_charger_that_hears_nothing_past_valid_until_draws_its_failsafe_power():
    w = world([Session("CH-01", 0, 3600, 100.0, None, "sessions[0]")])
    w.apply_setpoint("CH-01", 40.0, valid_until_s=30)
    w.advance(60)
    # 30 s at 40 kW, then 30 s at the 4 kW failsafe
    assert by_id(w.readings(60, set(), "t"))["CH-01"]["power_kw"] == 22.0


def test_a_renewal_extends_held_setpoints_but_never_revives_an_expired_one():
    """Simulated chargers honour dispatch messages as webhook receivers must (spec 4.7)."""
    w = world(
        [
            Session("CH-01", 0, 3600, 100.0, None, "sessions[0]"),
            Session("CH-02", 0, 3600, 100.0, None, "sessions[1]"),
        ]
    )
    w.apply_setpoint("CH-01", 40.0, valid_until_s=90)
    w.apply_setpoint("CH-02", 20.0, valid_until_s=30)
    w.advance(60)
    w.readings(60, set(), "t")  # (readings average over the time since the last ones)
    w.renew_setpoints(now_s=60, valid_until_s=180)  # a message with no setpoint listed
    w.advance(120)
    readings = by_id(w.readings(120, set(), "t"))
    # CH-01 held its 40 kW past its first valid_until; CH-02 had lapsed to its failsafe.
    assert (readings["CH-01"]["power_kw"], readings["CH-02"]["power_kw"]) == (40.0, 4.0)
    w.drop_setpoints()  # a full message that names neither
    w.advance(180)
    assert by_id(w.readings(180, set(), "t"))["CH-01"]["power_kw"] == 4.0


def test_a_charger_that_never_had_a_setpoint_draws_its_failsafe_power():
    w = world([Session("CH-01", 0, 3600, 100.0, None, "sessions[0]")])
    w.advance(120)
    assert by_id(w.readings(120, set(), "t"))["CH-01"]["power_kw"] == 4.0


def test_arrivals_and_departures_split_a_step_exactly():
    w = world([Session("CH-01", 30, 90, 100.0, 20.0, "sessions[0]")])
    w.apply_setpoint("CH-01", 50.0, valid_until_s=1000)
    w.advance(120)
    # plugged in for 60 s of 120 at the EV's 20 kW
    reading = by_id(w.readings(120, set(), "t"))["CH-01"]
    assert (reading["power_kw"], reading["connected"], reading["requested_kw"]) == (
        10.0,
        False,
        0.0,
    )
    assert w.sessions()[0].departed


def test_a_meter_reports_the_flow_through_its_node():
    w = world(
        [Session("CH-03", 0, 3600, 100.0, None, "sessions[0]")],
        loads=[
            LoadCurve("SITE", "SITE_LOAD", 30.0, 30.0, 12.0, 0.0, 12.0),
            LoadCurve("PV-1", "PV", 0.0, 10.0, 10.0, 0.0, 12.0),
        ],
    )
    w.apply_setpoint("CH-03", 20.0, valid_until_s=1000)
    w.advance(60)
    w.update_loads(60)
    readings = by_id(w.readings(60, set(), "t"))
    assert readings["M-B"]["power_kw"] == 20.0
    assert readings["PV-1"]["power_kw"] == pytest.approx(10.0, abs=0.01)  # 10:01, its peak
    assert readings["M-GRID"]["power_kw"] == pytest.approx(20.0 + 30.0 - 10.0, abs=0.01)


def test_silent_assets_send_nothing():
    w = world()
    assert "SITE" not in by_id(w.readings(0, {"SITE", "M-GRID"}, "t"))
    assert "M-GRID" not in by_id(w.readings(0, {"SITE", "M-GRID"}, "t"))


def test_load_curves_peak_at_their_local_time_and_pv_is_dark_at_night():
    w = world(
        loads=[
            LoadCurve("SITE", "SITE_LOAD", 10.0, 90.0, 18.0, 0.0, 12.0),
            LoadCurve("PV-1", "PV", 0.0, 50.0, 13.0, 0.0, 10.0),
        ]
    )
    w.update_loads(8 * 3600)  # 18:00 local: the site's peak, dusk for the PV
    assert (w.load_kw["SITE"], w.load_kw["PV-1"]) == (90.0, 0.0)
    w.update_loads(3 * 3600)  # 13:00 local: the PV's peak, 5 h before the site's
    assert w.load_kw["PV-1"] == 50.0
    expected = 10 + 80 * (1 + math.cos(2 * math.pi * 5 / 24)) / 2
    assert w.load_kw["SITE"] == pytest.approx(expected, abs=1e-3)


def test_the_external_controller_shares_a_budget_fairly_within_it():
    w = world(
        [Session("CH-01", 0, 3600, 100.0, 10.0, "s0"), Session("CH-02", 0, 3600, 100.0, None, "s1")]
    )
    w.apply_budget(["CH-01", "CH-02"], 45.0, valid_until_s=600)
    assert (w.chargers["CH-01"].setpoint_kw, w.chargers["CH-02"].setpoint_kw) == (10.0, 35.0)


def test_random_sessions_depend_on_the_seed_not_on_the_order_of_assets():
    spec = RandomSessions(20, (0, 1800), (600, 1800), (10.0, 80.0), (11.0, 50.0), ())

    def drawn(assets, seed):
        w = world(random_sessions=spec, assets=assets, seed=seed)
        return sorted(
            (
                st.session.origin,
                st.session.asset_id,
                st.session.arrive_s,
                st.session.depart_s,
                st.session.energy_kwh,
                st.max_power_kw,
            )
            for c in w.chargers.values()
            for st in c.sessions
        )

    shuffled = list(reversed(ASSETS))
    assert drawn(ASSETS, 5) == drawn(shuffled, 5)
    assert drawn(ASSETS, 5) != drawn(ASSETS, 6)
    sessions = world(random_sessions=spec, seed=5)
    # never two EVs on one charger at once; the rest were turned away
    for c in sessions.chargers.values():
        spans = sorted((s.session.arrive_s, s.session.depart_s) for s in c.sessions)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert len(sessions.sessions()) + sessions.turned_away == 20
