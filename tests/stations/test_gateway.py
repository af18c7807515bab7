"""The real gateway process (`manage.py ocpp_gateway`) with the `ocpp` package's own
ChargePoint classes as stations, OCPP 1.6J and 2.0.1.

The gateway is a separate process that reads the test database, so these tests need
PostgreSQL (`DATABASE_URL=postgres://...`) and committed data; .ci/run runs them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import websockets
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from websockets.exceptions import InvalidStatus

from microgrid.telemetry.models import LatestReading
from stations.models import ChargingStation, StationAuthAttempt, StationEvse
from stations.services import station_password_set

pytestmark = [pytest.mark.ocpp, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gateway(start_gateway):
    return start_gateway()


@pytest.fixture
def station(microgrid, mapped):
    cs = ChargingStation.objects.create(station_id="CS-1", microgrid=microgrid)
    mapped(microgrid, {"CH-01": ("CS-1", 1), "CH-02": ("CS-1", 2)})
    return cs, station_password_set(station_id="CS-1")


def _auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def _session(port, password, protocol, scenario):
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ocpp/CS-1",
        subprotocols=[protocol],
        additional_headers=_auth("CS-1", password),
    ) as ws:
        cp = (Cp16 if protocol == "ocpp1.6" else Cp201)("CS-1", ws)
        task = asyncio.create_task(cp.start())
        try:
            return await scenario(cp, ws)
        finally:
            task.cancel()


def _now():
    return datetime.now(UTC).isoformat()


def test_an_ocpp16_station_boots_reports_status_and_meter_values_into_telemetry(gateway, station):
    _, password = station

    async def scenario(cp, ws):
        boot = await cp.call(
            call16.BootNotification(
                charge_point_model="M1", charge_point_vendor="Acme", firmware_version="1.2"
            )
        )
        beat = await cp.call(call16.Heartbeat())
        await cp.call(
            call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging")
        )
        await cp.call(
            call16.MeterValues(
                connector_id=1,
                meter_value=[
                    {
                        "timestamp": _now(),
                        "sampledValue": [
                            {"value": "7400", "measurand": "Power.Active.Import", "unit": "W"}
                        ],
                    }
                ],
            )
        )
        return boot, beat

    boot, beat = asyncio.run(_session(gateway, password, "ocpp1.6", scenario))
    assert boot.status == "Accepted" and boot.interval == 60
    assert beat.current_time
    cs = ChargingStation.objects.get()
    assert (cs.vendor, cs.model, cs.firmware, cs.protocol) == ("Acme", "M1", "1.2", "ocpp1.6")
    assert StationEvse.objects.get(evse_id=1).status == "Charging"
    reading = LatestReading.objects.get(asset__asset_id="CH-01")
    assert reading.power_kw == 7.4 and reading.connected is True
    assert reading.requested_kw == 150  # the charger's maximum: OCPP does not say more


def test_an_ocpp201_station_boots_and_its_meter_values_in_kw_become_readings(gateway, station):
    _, password = station

    async def scenario(cp, ws):
        boot = await cp.call(
            call201.BootNotification(
                charging_station={"model": "M2", "vendor_name": "Volt"}, reason="PowerUp"
            )
        )
        await cp.call(
            call201.StatusNotification(
                timestamp=_now(), connector_status="Occupied", evse_id=2, connector_id=1
            )
        )
        await cp.call(
            call201.MeterValues(
                evse_id=2,
                meter_value=[
                    {
                        "timestamp": _now(),
                        "sampledValue": [
                            {
                                "value": 11.0,
                                "measurand": "Power.Active.Import",
                                "unitOfMeasure": {"unit": "kW"},
                            }
                        ],
                    }
                ],
            )
        )
        return boot

    boot = asyncio.run(_session(gateway, password, "ocpp2.0.1", scenario))
    assert boot.status == "Accepted"
    reading = LatestReading.objects.get(asset__asset_id="CH-02")
    assert reading.power_kw == 11.0 and reading.connected is True
    assert ChargingStation.objects.get().protocol == "ocpp2.0.1"


@pytest.mark.parametrize(
    "headers, reason",
    [
        (_auth("CS-1", "wrong"), "WRONG_PASSWORD"),
        ({}, "NO_CREDENTIALS"),
        (_auth("CS-2", "x"), "USER_MISMATCH"),
    ],
)
def test_a_wrong_or_missing_password_gets_401_before_any_websocket(
    gateway, station, headers, reason
):
    async def attempt():
        with pytest.raises(InvalidStatus) as exc:
            async with websockets.connect(
                f"ws://127.0.0.1:{gateway}/ocpp/CS-1",
                subprotocols=["ocpp1.6"],
                additional_headers=headers,
            ):
                pass
        return exc.value.response.status_code

    assert asyncio.run(attempt()) == 401
    assert list(StationAuthAttempt.objects.values_list("station_id", "reason")) == [
        ("CS-1", reason)
    ]
    assert not ChargingStation.objects.get().connected


def test_an_unknown_station_gets_401_and_is_recorded(gateway, station):
    async def attempt():
        with pytest.raises(InvalidStatus) as exc:
            async with websockets.connect(
                f"ws://127.0.0.1:{gateway}/ocpp/CS-9",
                subprotocols=["ocpp1.6"],
                additional_headers=_auth("CS-9", "x"),
            ):
                pass
        return exc.value.response.status_code

    assert asyncio.run(attempt()) == 401
    assert StationAuthAttempt.objects.get().reason == "UNKNOWN_STATION"


def test_malformed_calls_get_the_protocols_error_frames_and_change_nothing(gateway, station):
    _, password = station

    async def scenario(cp, ws):
        answers = []
        for raw in (
            "this is not json",
            json.dumps([2, "m2", "BootNotification", {"chargePointModel": "x"}]),
            json.dumps([2, "m3", "NoSuchAction", {}]),
            json.dumps(
                [
                    2,
                    "m4",
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "meterValue": [
                            {
                                "timestamp": _now(),
                                "sampledValue": [
                                    {
                                        "value": "12",
                                        "measurand": "Power.Active.Import",
                                        "unit": "Wh",
                                    }
                                ],
                            }
                        ],
                    },
                ]
            ),
        ):
            await ws.send(raw)
            answers.append(json.loads(await ws.recv()))
        return answers

    # The ChargePoint's own reader must not take the answers: talk on the raw socket.
    async def raw_session():
        async with websockets.connect(
            f"ws://127.0.0.1:{gateway}/ocpp/CS-1",
            subprotocols=["ocpp1.6"],
            additional_headers=_auth("CS-1", password),
        ) as ws:
            return await scenario(None, ws)

    answers = asyncio.run(raw_session())
    assert [a[0] for a in answers] == [4, 4, 4, 4]
    assert answers[0][2] == "FormatViolation"
    # OCPP 1.6J: "ProtocolError: Payload for Action is incomplete".
    assert answers[1][1:3] == ["m2", "ProtocolError"]
    assert answers[2][1:3] == ["m3", "NotImplemented"]  # OCPP-J 4.2.3: not known
    assert answers[3][1:3] == ["m4", "PropertyConstraintViolation"]
    assert ChargingStation.objects.get().vendor == ""
    assert not LatestReading.objects.filter(asset__asset_id="CH-01").exists()


def _readings_for_the_rest(microgrid):
    """Fresh readings for everything the stations do not report, so a cycle is MEASURED."""
    from django.utils import timezone

    from microgrid.telemetry.services import telemetry_ingest

    now = timezone.now().isoformat()
    telemetry_ingest(
        microgrid=microgrid,
        readings=[
            {
                "asset_id": "CH-03",
                "power_kw": 0,
                "observed_at": now,
                "connected": False,
            },
            {"asset_id": "SITE", "power_kw": 40, "observed_at": now},
            {"asset_id": "PV-1", "power_kw": 0, "observed_at": now},
            {"asset_id": "M-GRID", "power_kw": 60, "observed_at": now},
        ],
    )


class _Station16(Cp16):
    """A station that answers SetChargingProfile as the test says, and keeps what it got."""

    answers: dict[int, str] = {}
    profiles: list[dict] = []

    from ocpp.routing import on as _on
    from ocpp.v16.enums import Action as _Action

    @_on(_Action.set_charging_profile)
    def on_profile(self, connector_id, cs_charging_profiles):
        self.profiles.append({"connector_id": connector_id, **cs_charging_profiles})
        from ocpp.v16 import call_result

        return call_result.SetChargingProfile(status=self.answers.get(connector_id, "Accepted"))


def test_a_cycle_reaches_the_station_as_charging_profiles_and_their_answers_show_on_it(
    gateway, station, microgrid
):
    from balancing.models import Cycle
    from balancing.selectors import cycle_document
    from balancing.services import cycle_request, trigger_of
    from dispatch.models import Delivery

    _, password = station
    _Station16.answers = {2: "Rejected"}
    _Station16.profiles = []

    async def wait_for(predicate, timeout_s=60):
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if await asyncio.to_thread(predicate):
                return
            await asyncio.sleep(0.2)
        raise AssertionError("timed out")

    async def scenario(cp, ws):
        await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        # The stack level 0 failsafe profile of each EVSE arrives at boot.
        await wait_for(lambda: len(cp.profiles) >= 2)
        for connector, status in ((1, "Charging"), (2, "SuspendedEV")):
            await cp.call(
                call16.StatusNotification(
                    connector_id=connector, error_code="NoError", status=status
                )
            )
            await cp.call(
                call16.MeterValues(
                    connector_id=connector,
                    meter_value=[
                        {
                            "timestamp": _now(),
                            "sampledValue": [
                                {"value": "3.5", "measurand": "Power.Active.Import", "unit": "kW"}
                            ],
                        }
                    ],
                )
            )
        await asyncio.to_thread(_readings_for_the_rest, microgrid)
        outcome = await asyncio.to_thread(
            lambda: cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle
        )
        await wait_for(
            lambda: (
                not Delivery.objects.filter(
                    cycle_id=outcome.pk, channel="OCPP", status__in=("PENDING", "SENT")
                ).exists()
            )
        )
        return outcome

    cp_class = _Station16

    async def session():
        async with websockets.connect(
            f"ws://127.0.0.1:{gateway}/ocpp/CS-1",
            subprotocols=["ocpp1.6"],
            additional_headers=_auth("CS-1", password),
        ) as ws:
            cp = cp_class("CS-1", ws)
            task = asyncio.create_task(cp.start())
            try:
                return await scenario(cp, ws)
            finally:
                task.cancel()

    cycle = asyncio.run(session())
    cycle = Cycle.objects.get(pk=cycle.pk)
    assert cycle.source_mode == "MEASURED"
    failsafe = [p for p in _Station16.profiles if p["stack_level"] == 0]
    assert sorted(p["connector_id"] for p in failsafe) == [1, 2]
    assert all("valid_to" not in p for p in failsafe)
    # At each charger's failsafe power.
    from microgrid.topology.models import Asset

    failsafe_w = {
        1: Asset.objects.get(asset_id="CH-01").failsafe_power_kw * 1000,
        2: Asset.objects.get(asset_id="CH-02").failsafe_power_kw * 1000,
    }
    assert {
        p["connector_id"]: float(p["charging_schedule"]["charging_schedule_period"][0]["limit"])
        for p in failsafe
    } == failsafe_w
    setpoints = {p["connector_id"]: p for p in _Station16.profiles if p["stack_level"] == 1}
    doc = cycle_document(cycle)
    chargers = {c["asset_id"]: c for c in doc["chargers"]}
    for connector, asset in ((1, "CH-01"), (2, "CH-02")):
        p = setpoints[connector]
        assert p["charging_profile_purpose"] == "TxDefaultProfile"
        assert p["charging_profile_kind"] == "Absolute"
        assert p["valid_to"] == chargers[asset]["valid_until"]
        assert p["charging_schedule"]["charging_rate_unit"] == "W"
        [period] = p["charging_schedule"]["charging_schedule_period"]
        assert period["start_period"] == 0
        assert float(period["limit"]) == round(chargers[asset]["allocated_kw"] * 1000, 1)
    assert chargers["CH-01"]["dispatch_status"] == "ACCEPTED"
    assert chargers["CH-02"]["dispatch_status"] == "REJECTED"
    assert "OCPP" in doc["dispatch"]["channels"]
    assert StationEvse.objects.get(evse_id=2).profile_status == "REJECTED"
    assert StationEvse.objects.get(evse_id=1).failsafe_status == "Accepted"
