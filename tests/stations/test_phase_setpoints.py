"""Setpoints to OCPP stations with the EV's learnt phases (issue 19): numberPhases from what
the EV draws on, phaseToUse on 2.0.1 for a single-phase EV on a three-phase charger."""

from __future__ import annotations

from stations.gateway import profile_payload
from stations.services import setpoint_phases


def test_a_single_phase_ev_on_a_three_phase_charger_gets_one_phase_and_its_name():
    # its L2 carries the EV (the charger's own phases)
    assert setpoint_phases(3, 3, True, [0.2, 15.8, 0.1]) == (1, 2)
    assert setpoint_phases(3, 3, True, [16.0, 16.1, 15.9]) == (3, None)
    assert setpoint_phases(3, 3, True, [10.0, 10.0, 0.0]) == (2, None)


def test_without_a_drawing_ev_the_chargers_own_phases_count():
    assert setpoint_phases(3, 3, True, None) == (3, None)
    assert setpoint_phases(3, 3, False, [16.0, 0.0, 0.0]) == (3, None)
    assert setpoint_phases(3, 3, True, [0.3, 0.2, 0.0]) == (3, None)
    assert setpoint_phases(1, 3, True, [16.0, 0.0, 0.0]) == (1, None)
    assert setpoint_phases(None, 1, True, [16.0, 0.0, 0.0]) == (1, None)


def _period(payload, v201):
    profile = payload.charging_profile if v201 else payload.cs_charging_profiles
    schedule = profile["chargingSchedule"][0] if v201 else profile["chargingSchedule"]
    return schedule["chargingSchedulePeriod"][0]


def test_a_201_profile_in_amperes_names_the_phase_to_use():
    payload = profile_payload(
        v201=True,
        evse_id=1,
        level=1,
        limit_kw=3.68,
        unit="A",
        voltage_v=230.0,
        phases=1,
        valid_to=None,
        phase_to_use=2,
    )
    assert _period(payload, True) == {
        "startPeriod": 0,
        "limit": 16.0,
        "numberPhases": 1,
        "phaseToUse": 2,
    }


def test_phase_to_use_is_not_sent_on_16_nor_with_several_phases_nor_in_watts():
    common = {"evse_id": 1, "level": 1, "limit_kw": 3.68, "voltage_v": 230.0, "valid_to": None}
    on16 = profile_payload(v201=False, unit="A", phases=1, phase_to_use=2, **common)
    assert "phaseToUse" not in _period(on16, False)
    three = profile_payload(v201=True, unit="A", phases=3, phase_to_use=None, **common)
    assert _period(three, True)["numberPhases"] == 3 and "phaseToUse" not in _period(three, True)
    watts = profile_payload(v201=True, unit="W", phases=1, phase_to_use=2, **common)
    assert _period(watts, True) == {"startPeriod": 0, "limit": 3680.0}
