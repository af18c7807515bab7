"""Per-phase setpoints through the real gateway process (issue 19, spec 4.8): the `ocpp` package's
ChargePoints report per-phase Current.Import; a station taking amperes gets each limit with
`numberPhases` from the phases the EV draws on, and on OCPP 2.0.1 `phaseToUse` for a
single-phase EV on a three-phase charger. PostgreSQL only (the gateway is a process reading
the test database); .ci/run runs them.
"""

from __future__ import annotations

import asyncio

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from balancing.selectors import cycle_document
from microgrid.topology.models import Asset
from stations.models import ChargingStation
from tests.stations.test_gateway import _now
from tests.stations.test_gateway_delivery import (
    Station16,
    Station201,
    _Connected,
    _cycle,
    _fresh_rest,
    _in_thread,
    _password,
    _settled,
    _wait_for,
)

pytestmark = [pytest.mark.ocpp, pytest.mark.django_db(transaction=True)]

VOLTS = 230.0  # grp-a: the default
# EVSE 1: CH-01, a three-phase charger whose EV draws on the charger's L2 only;
# EVSE 2: CH-02, a single-phase charger.
CURRENTS = {1: {"L1": 0.2, "L2": 15.2, "L3": 0.1}, 2: {"L1": 15.2}}


def _setpoints(cp) -> dict[int, dict]:
    return {p["evse_id"]: p for p in cp.profiles if p["stack_level"] == 1}


def _ampere_station(microgrid, mapped, station_id: str) -> str:
    ChargingStation.objects.create(
        station_id=station_id, microgrid=microgrid, charging_rate_unit="A"
    )
    mapped(microgrid, {"CH-01": (station_id, 1), "CH-02": (station_id, 2)})
    Asset.objects.filter(asset_id="CH-02").update(phases=1, phase_rotation="L1")
    return _password(station_id)


def test_201_a_single_phase_ev_gets_number_phases_1_and_phase_to_use(
    start_gateway, microgrid, mapped
):
    password = _ampere_station(microgrid, mapped, "CS-P")
    port = start_gateway()

    async def session():
        async with _Connected(port, "CS-P", password, Station201, "ocpp2.0.1") as cp:
            await cp.call(
                call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
                )
            )
            await _wait_for(lambda: len(cp.profiles) >= 2)
            for evse, currents in CURRENTS.items():
                await cp.call(
                    call201.StatusNotification(
                        timestamp=_now(), connector_status="Occupied", evse_id=evse, connector_id=1
                    )
                )
                sampled = [
                    {
                        "value": 3.5,
                        "measurand": "Power.Active.Import",
                        "unitOfMeasure": {"unit": "kW"},
                    },
                    *(
                        {
                            "value": amps,
                            "measurand": "Current.Import",
                            "phase": phase,
                            "unitOfMeasure": {"unit": "A"},
                        }
                        for phase, amps in currents.items()
                    ),
                ]
                await cp.call(
                    call201.MeterValues(
                        evse_id=evse, meter_value=[{"timestamp": _now(), "sampledValue": sampled}]
                    )
                )
            await _in_thread(_fresh_rest, microgrid)
            cycle = await _in_thread(_cycle, microgrid)
            await _wait_for(_settled(cycle.pk))
            return cycle, _setpoints(cp)

    cycle, setpoints = asyncio.run(session())
    chargers = {c["asset_id"]: c for c in cycle_document(cycle)["chargers"]}
    # the learnt currents reached the readings the cycle read
    assert Asset.objects.get(asset_id="CH-01").phases in (None, 3)
    for evse, asset, phase_to_use in ((1, "CH-01", 2), (2, "CH-02", None)):
        [schedule] = setpoints[evse]["charging_schedule"]
        assert schedule["charging_rate_unit"] == "A"
        [period] = schedule["charging_schedule_period"]
        assert period["number_phases"] == 1
        assert period.get("phase_to_use") == phase_to_use
        # the whole setpoint on that one phase
        assert period["limit"] == round(chargers[asset]["allocated_kw"] * 1000 / VOLTS, 1)
        assert chargers[asset]["allocated_kw"] > 0
        assert chargers[asset]["dispatch_status"] == "ACCEPTED"


def test_16_a_single_phase_charger_gets_number_phases_1_and_no_phase_to_use(
    start_gateway, microgrid, mapped
):
    password = _ampere_station(microgrid, mapped, "CS-Q")
    port = start_gateway()

    async def session():
        async with _Connected(port, "CS-Q", password, Station16, "ocpp1.6") as cp:
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            await _wait_for(lambda: len(cp.profiles) >= 2)
            for evse, currents in CURRENTS.items():
                await cp.call(
                    call16.StatusNotification(
                        connector_id=evse, error_code="NoError", status="Charging"
                    )
                )
                sampled = [
                    {"value": "3.5", "measurand": "Power.Active.Import", "unit": "kW"},
                    *(
                        {
                            "value": str(amps),
                            "measurand": "Current.Import",
                            "phase": phase,
                            "unit": "A",
                        }
                        for phase, amps in currents.items()
                    ),
                ]
                await cp.call(
                    call16.MeterValues(
                        connector_id=evse,
                        meter_value=[{"timestamp": _now(), "sampledValue": sampled}],
                    )
                )
            await _in_thread(_fresh_rest, microgrid)
            cycle = await _in_thread(_cycle, microgrid)
            await _wait_for(_settled(cycle.pk))
            return cycle, _setpoints(cp)

    cycle, setpoints = asyncio.run(session())
    chargers = {c["asset_id"]: c for c in cycle_document(cycle)["chargers"]}
    for evse, asset in ((1, "CH-01"), (2, "CH-02")):
        schedule = setpoints[evse]["charging_schedule"]
        assert schedule["charging_rate_unit"] == "A"
        [period] = schedule["charging_schedule_period"]
        # 1.6J has no phaseToUse: one phase, the whole setpoint on it
        assert period["number_phases"] == 1
        assert "phase_to_use" not in period
        assert period["limit"] == round(chargers[asset]["allocated_kw"] * 1000 / VOLTS, 1)
        assert chargers[asset]["dispatch_status"] == "ACCEPTED"
