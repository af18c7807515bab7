"""The simulator's phases (issue 19): EV phase counts in sessions, currents in its telemetry."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

from simulator.scenario import Scenario, Session
from simulator.world import World

START = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
NODES = [
    {"node_id": "grid", "parent_id": None},
    {"node_id": "feeder", "parent_id": "grid", "voltage_v": 230.0, "phases": 3},
]
ASSETS = [
    {
        "asset_id": "CH-1",
        "node_id": "feeder",
        "kind": "CHARGER",
        "max_power_kw": 7.36,
        "failsafe_power_kw": 0,
        "phases": 1,
        "phase_rotation": "L2",
    },
    {
        "asset_id": "CH-3",
        "node_id": "feeder",
        "kind": "CHARGER",
        "max_power_kw": 22.08,
        "failsafe_power_kw": 0,
        "phases": 3,
        "phase_rotation": "L3L1L2",
    },
    {"asset_id": "M-F", "node_id": "feeder", "kind": "METER"},
]


def _world(sessions):
    scenario = Scenario(
        seed=1,
        start=START,
        duration_s=3600,
        step_s=60,
        sessions=tuple(sessions),
        random_sessions=None,
        loads=(),
        degradations=(),
        requests=(),
    )
    return World(scenario, nodes=NODES, assets=ASSETS, timezone_name="UTC", rng=random.Random(1))


def test_chargers_and_meters_report_phase_currents_through_the_rotation():
    world = _world(
        [
            Session("CH-1", 0, 3600, 50, None, "sessions[0]"),
            Session("CH-3", 0, 3600, 50, 7.36, "sessions[1]", phases=1),  # a single-phase EV
        ]
    )
    world.apply_setpoint("CH-1", 7.36, 3600)
    world.apply_setpoint("CH-3", 7.36, 3600)
    world.readings(0, set(), START.isoformat())
    world.advance(60)
    readings = {r["asset_id"]: r for r in world.readings(60, set(), START.isoformat())}
    assert readings["CH-1"]["current_a"] == [32.0, 0.0, 0.0]
    # The single-phase EV draws on the charger's L1, which rotation L3L1L2 puts on the node's L3.
    assert readings["CH-3"]["current_a"] == [32.0, 0.0, 0.0]
    assert readings["M-F"]["current_a"] == [0.0, 32.0, 32.0]


def test_a_three_phase_ev_spreads_its_draw_over_the_three_phases():
    world = _world([Session("CH-3", 0, 3600, 50, None, "sessions[0]")])
    world.apply_setpoint("CH-3", 22.08, 3600)
    world.readings(0, set(), START.isoformat())
    world.advance(60)
    readings = {r["asset_id"]: r for r in world.readings(60, set(), START.isoformat())}
    assert readings["CH-3"]["current_a"] == [32.0, 32.0, 32.0]
    assert readings["M-F"]["current_a"] == [32.0, 32.0, 32.0]


def test_a_session_with_a_bad_phase_count_is_refused():
    from simulator.runner import checked_scenario

    profile = {
        "depot": {"depot_id": "D", "name": "D", "timezone": "UTC"},
        "microgrid": {"microgrid_id": "MG", "name": "MG"},
        "nodes": [
            {
                "node_id": "grid",
                "parent_id": None,
                "kind": "GRID_CONNECTION",
                "name": "G",
                "physical_rating_kw": 100,
            }
        ],
        "assets": [
            {"asset_id": "C", "node_id": "grid", "kind": "CHARGER", "name": "C", "max_power_kw": 11}
        ],
        "scenario": {
            "seed": 1,
            "start": "2026-03-02T10:00:00+00:00",
            "duration_s": 600,
            "step_s": 60,
            "sessions": [
                {"asset_id": "C", "arrive_s": 0, "depart_s": 300, "energy_kwh": 5, "phases": 2}
            ],
        },
    }
    import pytest

    from microgrid.common.errors import DomainError

    with pytest.raises(DomainError) as refused:
        checked_scenario(profile)
    fields = [e.field for e in refused.value.errors]
    assert "scenario.sessions[0].phases" in fields
