"""The real gateway process and the `ocpp` package's ChargePoints (OCPP 1.6J and 2.0.1), beyond
the happy path: a disconnect and its fallback, a station that only takes amperes, a call
nobody answers, and two gateways sharing the stations.

PostgreSQL only (the gateways are processes reading the test database); .ci/run runs them.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import websockets
from django.utils import timezone
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from balancing.selectors import cycle_document
from balancing.services import cycle_request, trigger_of
from dispatch.models import Delivery, DeliveryAttempt
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.models import Asset, Microgrid
from stations.models import ChargingStation, StationEvse
from stations.services import station_password_set
from tests.stations.test_gateway import _auth, _now

pytestmark = [pytest.mark.ocpp, pytest.mark.django_db(transaction=True)]


class Station16(Cp16):
    """Answers SetChargingProfile Accepted and keeps each profile it got."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.profiles: list[dict] = []

    @on(Action16.set_charging_profile)
    def on_profile(self, connector_id, cs_charging_profiles):
        self.profiles.append({"evse_id": connector_id, **cs_charging_profiles})
        return result16.SetChargingProfile(status="Accepted")


class Station201(Cp201):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.profiles: list[dict] = []

    @on(Action201.set_charging_profile)
    def on_profile(self, evse_id, charging_profile):
        self.profiles.append({"evse_id": evse_id, **charging_profile})
        return result201.SetChargingProfile(status="Accepted")


class SilentOnce16(Station16):
    """Does not answer its first setpoint profile (stack level 1): the gateway must time out,
    record FAILED and retry; the retry is answered."""

    dropped: list[str] = []

    async def route_message(self, raw_msg):
        msg = json.loads(raw_msg)
        if (
            not self.dropped
            and msg[0] == 2
            and msg[2] == "SetChargingProfile"
            and msg[3]["csChargingProfiles"]["stackLevel"] == 1
        ):
            self.dropped.append(msg[1])
            return
        await super().route_message(raw_msg)


def _password(station_id: str) -> str:
    return station_password_set(station_id=station_id)


async def _in_thread(fn, *args, **kwargs):
    """Run ORM work in a thread (the ORM is synchronous) and close that thread's connection,
    so no session outlives the test database."""
    from django.db import connection

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return await asyncio.to_thread(run)


async def _wait_for(predicate, timeout_s: float = 60):
    """Poll until predicate() is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await _in_thread(predicate):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out waiting")


class _Connected:
    """A ChargePoint of the given class connected to a gateway, reading its messages."""

    def __init__(self, port: int, station_id: str, password: str, cls, protocol: str):
        self.args = (port, station_id, password, cls, protocol)

    async def __aenter__(self):
        port, station_id, password, cls, protocol = self.args
        self.ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ocpp/{station_id}",
            subprotocols=[protocol],
            additional_headers=_auth(station_id, password),
        )
        self.cp = cls(station_id, self.ws)
        self.task = asyncio.create_task(self.cp.start())
        return self.cp

    async def __aexit__(self, *exc):
        self.task.cancel()
        await self.ws.close()


async def _boot_and_meter_16(cp, connectors, *, kw: float = 3.5):
    await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
    for connector in connectors:
        await cp.call(
            call16.StatusNotification(
                connector_id=connector, error_code="NoError", status="Charging"
            )
        )
        await cp.call(
            call16.MeterValues(
                connector_id=connector,
                meter_value=[
                    {
                        "timestamp": _now(),
                        "sampledValue": [
                            {"value": str(kw), "measurand": "Power.Active.Import", "unit": "kW"}
                        ],
                    }
                ],
            )
        )


def _fresh_rest(microgrid, at=None, *, chargers=("CH-03",)):
    at = (at or timezone.now()).isoformat()
    telemetry_ingest(
        microgrid=microgrid,
        readings=[
            *(
                {"asset_id": c, "power_kw": 0, "observed_at": at, "connected": False}
                for c in chargers
            ),
            {"asset_id": "SITE", "power_kw": 40, "observed_at": at},
            {"asset_id": "PV-1", "power_kw": 0, "observed_at": at},
            {"asset_id": "M-GRID", "power_kw": 60, "observed_at": at},
        ],
    )


def _cycle(microgrid, at=None):
    clock = (lambda: at) if at is not None else None
    return cycle_request(microgrid=microgrid, trigger=trigger_of("API"), now=clock).cycle


def _settled(cycle_pk):
    return lambda: (
        not Delivery.objects.filter(
            cycle_id=cycle_pk, channel="OCPP", status__in=("PENDING", "SENT")
        ).exists()
    )


@pytest.fixture
def cs1(microgrid, mapped):
    ChargingStation.objects.create(station_id="CS-1", microgrid=microgrid)
    mapped(microgrid, {"CH-01": ("CS-1", 1), "CH-02": ("CS-1", 2)})
    return _password("CS-1")


def test_a_station_that_disconnects_goes_offline_and_its_chargers_fall_back_when_stale(
    start_gateway, cs1, microgrid, operator_client
):
    port = start_gateway()
    Microgrid.objects.filter(pk=microgrid.pk).update(telemetry_stale_after_s=10)
    microgrid.refresh_from_db()

    async def online():
        async with _Connected(port, "CS-1", cs1, Station16, "ocpp1.6") as cp:
            await _boot_and_meter_16(cp, (1, 2))
            await _in_thread(_fresh_rest, microgrid)
            measured = await _in_thread(_cycle, microgrid)
            return measured

    measured = asyncio.run(online())
    assert measured.source_mode == "MEASURED"

    async def offline():
        await _wait_for(lambda: not ChargingStation.objects.get(station_id="CS-1").connected)

    asyncio.run(offline())
    page = operator_client.get("/manage/microgrids/MG.NORTH-1/stations/").content.decode()
    assert 'data-station-id="CS-1"' in page and "offline" in page

    # Past the stale time the station's chargers have no fresh reading: the rest report on.
    later = timezone.now() + timedelta(seconds=20)
    _fresh_rest(microgrid, later)
    cycle = _cycle(microgrid, later)
    assert cycle.source_mode == "FALLBACK_DERIVED"
    doc = cycle_document(cycle)
    grp_a = next(n for n in doc["nodes"] if n["node_id"] == "grp-a")
    assert grp_a["source_mode"] == "FALLBACK_DERIVED"
    assert "TELEMETRY_FALLBACK" in grp_a["reason_codes"]
    stale = {f["asset_id"]: f for f in grp_a["fallback"]}
    assert set(stale) == {"CH-01", "CH-02"}
    assert all(f["why"] == "STALE" and f["threshold_s"] == 10 for f in stale.values())
    # Each counts as fixed load at its failsafe power, what its level 0 profile holds it to.
    assert stale["CH-01"]["value_kw"] == Asset.objects.get(asset_id="CH-01").failsafe_power_kw


def test_a_station_that_only_takes_amperes_gets_its_limits_in_a_per_phase(
    start_gateway, microgrid, mapped
):
    """OCPP 2.0.1, charging_rate_unit A: limit_w / (voltage_v x phases) with numberPhases,
    the phases being the charger's own (CH-02 is single-phase on a three-phase node)."""
    ChargingStation.objects.create(station_id="CS-A", microgrid=microgrid, charging_rate_unit="A")
    mapped(microgrid, {"CH-01": ("CS-A", 1), "CH-02": ("CS-A", 2)})
    Asset.objects.filter(asset_id="CH-02").update(phases=1, phase_rotation="L1")
    password = _password("CS-A")
    port = start_gateway()

    async def session():
        async with _Connected(port, "CS-A", password, Station201, "ocpp2.0.1") as cp:
            await cp.call(
                call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
                )
            )
            await _wait_for(lambda: len(cp.profiles) >= 2)
            for evse in (1, 2):
                await cp.call(
                    call201.StatusNotification(
                        timestamp=_now(), connector_status="Occupied", evse_id=evse, connector_id=1
                    )
                )
                await cp.call(
                    call201.MeterValues(
                        evse_id=evse,
                        meter_value=[
                            {
                                "timestamp": _now(),
                                "sampledValue": [
                                    {
                                        "value": 7.0,
                                        "measurand": "Power.Active.Import",
                                        "unitOfMeasure": {"unit": "kW"},
                                    }
                                ],
                            }
                        ],
                    )
                )
            await _in_thread(_fresh_rest, microgrid)
            cycle = await _in_thread(_cycle, microgrid)
            await _wait_for(_settled(cycle.pk))
            return cycle, cp.profiles

    cycle, profiles = asyncio.run(session())
    doc = cycle_document(cycle)
    chargers = {c["asset_id"]: c for c in doc["chargers"]}
    volts = 230.0  # grp-a: the default
    phases_of = {"CH-01": 3, "CH-02": 1}
    failsafe = {p["evse_id"]: p for p in profiles if p["stack_level"] == 0}
    setpoint = {p["evse_id"]: p for p in profiles if p["stack_level"] == 1}
    for evse, asset in ((1, "CH-01"), (2, "CH-02")):
        phases = phases_of[asset]
        [fs_schedule] = failsafe[evse]["charging_schedule"]
        assert fs_schedule["charging_rate_unit"] == "A"
        [fs_period] = fs_schedule["charging_schedule_period"]
        fs_kw = Asset.objects.get(asset_id=asset).failsafe_power_kw
        assert fs_period["limit"] == round(fs_kw * 1000 / (volts * phases), 1)
        assert fs_period["number_phases"] == phases
        assert "valid_to" not in failsafe[evse]

        p = setpoint[evse]
        assert p["charging_profile_purpose"] == "TxDefaultProfile"
        assert p["charging_profile_kind"] == "Absolute"
        assert p["valid_to"] == chargers[asset]["valid_until"]
        [schedule] = p["charging_schedule"]
        assert schedule["charging_rate_unit"] == "A"
        [period] = schedule["charging_schedule_period"]
        assert period["start_period"] == 0
        assert period["number_phases"] == phases
        assert period["limit"] == round(
            chargers[asset]["allocated_kw"] * 1000 / (volts * phases), 1
        )
        assert chargers[asset]["dispatch_status"] == "ACCEPTED"
    assert chargers["CH-01"]["allocated_kw"] > 0


def test_a_profile_nobody_answers_within_the_timeout_is_failed_and_retried_while_valid(
    start_gateway, cs1, microgrid
):
    # A 1 s call timeout (instead of 30) and the first retry 1 s later.
    port = start_gateway(OCPP_RESPONSE_TIMEOUT_S="1", DISPATCH_RETRY_BASE_S="1")
    SilentOnce16.dropped = []

    async def session():
        async with _Connected(port, "CS-1", cs1, SilentOnce16, "ocpp1.6") as cp:
            await _boot_and_meter_16(cp, (1, 2))
            await _wait_for(lambda: len([p for p in cp.profiles if p["stack_level"] == 0]) >= 2)
            await _in_thread(_fresh_rest, microgrid)
            cycle = await _in_thread(_cycle, microgrid)
            await _wait_for(
                lambda: DeliveryAttempt.objects.filter(cycle_id=cycle.pk, outcome="FAILED").exists()
            )
            await _wait_for(
                lambda: (
                    set(
                        Delivery.objects.filter(cycle_id=cycle.pk, channel="OCPP").values_list(
                            "status", flat=True
                        )
                    )
                    == {"ACCEPTED"}
                )
            )
            return cycle, cp.profiles

    cycle, profiles = asyncio.run(session())
    assert len(SilentOnce16.dropped) == 1
    failed = DeliveryAttempt.objects.get(cycle_id=cycle.pk, outcome="FAILED")
    assert "no answer within 1 s" in failed.error
    deliveries = {
        d.target_id: d for d in Delivery.objects.filter(cycle_id=cycle.pk, channel="OCPP")
    }
    assert {d.status for d in deliveries.values()} == {"ACCEPTED"}
    # The unanswered one was sent again (attempt 2) and answered; the other once.
    assert sorted(d.attempts for d in deliveries.values()) == [1, 2]
    assert len([p for p in profiles if p["stack_level"] == 1]) == 2  # one dropped + the retry


def test_two_gateways_each_deliver_to_the_stations_they_hold(start_gateway, microgrid, mapped):
    ChargingStation.objects.create(station_id="CS-1", microgrid=microgrid)
    ChargingStation.objects.create(station_id="CS-2", microgrid=microgrid)
    mapped(microgrid, {"CH-01": ("CS-1", 1), "CH-02": ("CS-1", 2), "CH-03": ("CS-2", 1)})
    p1, p2 = _password("CS-1"), _password("CS-2")
    port_a, port_b = start_gateway(), start_gateway()

    async def session():
        async with (
            _Connected(port_b, "CS-1", p1, Station16, "ocpp1.6") as one,
            _Connected(port_a, "CS-2", p2, Station201, "ocpp2.0.1") as two,
        ):
            await _boot_and_meter_16(one, (1, 2))
            await two.call(
                call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
                )
            )
            await two.call(
                call201.StatusNotification(
                    timestamp=_now(), connector_status="Occupied", evse_id=1, connector_id=1
                )
            )
            await two.call(
                call201.MeterValues(
                    evse_id=1,
                    meter_value=[
                        {
                            "timestamp": _now(),
                            "sampledValue": [
                                {
                                    "value": 5000,
                                    "measurand": "Power.Active.Import",
                                    "unitOfMeasure": {"unit": "W"},
                                }
                            ],
                        }
                    ],
                )
            )
            await _in_thread(_fresh_rest, microgrid, chargers=())
            cycle = await _in_thread(_cycle, microgrid)
            await _wait_for(_settled(cycle.pk))
            return cycle, one.profiles, two.profiles

    cycle, got_one, got_two = asyncio.run(session())
    gateways = dict(ChargingStation.objects.values_list("station_id", "gateway"))
    assert gateways["CS-1"].endswith(f":{port_b}") and gateways["CS-2"].endswith(f":{port_a}")
    assert sorted(p["evse_id"] for p in got_one if p["stack_level"] == 1) == [1, 2]
    assert [p["evse_id"] for p in got_two if p["stack_level"] == 1] == [1]
    deliveries = Delivery.objects.filter(cycle_id=cycle.pk, channel="OCPP")
    # Each delivered once, by the gateway that holds its station: no FAILED attempt from the
    # other gateway, which never claims what it does not hold.
    assert {(d.target_id, d.status, d.attempts) for d in deliveries} == {
        ("CH-01", "ACCEPTED", 1),
        ("CH-02", "ACCEPTED", 1),
        ("CH-03", "ACCEPTED", 1),
    }
    assert not DeliveryAttempt.objects.filter(cycle_id=cycle.pk).exclude(outcome="ACCEPTED")
    assert StationEvse.objects.get(station__station_id="CS-2", evse_id=1).profile_status == (
        "ACCEPTED"
    )


def test_a_soc_meter_value_is_kept_on_the_evse_and_a_bad_one_is_refused(
    start_gateway, cs1, microgrid, operator_api
):
    port = start_gateway()

    def meter(sampled):
        return [{"timestamp": _now(), "sampledValue": sampled}]

    async def session():
        async with _Connected(port, "CS-1", cs1, Station201, "ocpp2.0.1") as cp:
            await cp.call(
                call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
                )
            )
            # 2.0.1 TransactionEvent meter values: power and SoC together.
            await cp.call(
                call201.TransactionEvent(
                    event_type="Updated",
                    timestamp=_now(),
                    trigger_reason="MeterValuePeriodic",
                    seq_no=1,
                    transaction_info={"transactionId": "T-1"},
                    evse={"id": 1},
                    meter_value=meter(
                        [
                            {
                                "value": 11000,
                                "measurand": "Power.Active.Import",
                                "unitOfMeasure": {"unit": "W"},
                            },
                            {"value": 62, "measurand": "SoC", "unitOfMeasure": {"unit": "Percent"}},
                        ]
                    ),
                )
            )
            # A SoC above 100 % is refused whole (the power beside it is not taken either).
            await cp._send(
                json.dumps(
                    [
                        2,
                        "bad-soc",
                        "MeterValues",
                        {
                            "evseId": 2,
                            "meterValue": meter(
                                [
                                    {"value": 5000, "measurand": "Power.Active.Import"},
                                    {"value": 140, "measurand": "SoC"},
                                ]
                            ),
                        },
                    ]
                )
            )
            return await cp._get_specific_response("bad-soc", 10)

    answer = asyncio.run(session())
    assert answer.error_code == "PropertyConstraintViolation"
    from microgrid.telemetry.models import LatestReading

    assert LatestReading.objects.get(asset__asset_id="CH-01").power_kw == 11.0
    assert not LatestReading.objects.filter(asset__asset_id="CH-02").exists()
    evses = operator_api.get("/api/microgrids/MG.NORTH-1/stations/").json()["stations"][0]["evses"]
    by_id = {e["evse_id"]: e for e in evses}
    assert by_id[1]["soc_pct"] == 62 and by_id[1]["soc_at"]
    assert by_id[2]["soc_pct"] is None


def test_transactions_are_accepted_and_recorded_on_both_versions(start_gateway, cs1, microgrid):
    from stations.models import StationTransaction

    ChargingStation.objects.create(station_id="CS-2", microgrid=microgrid)
    port = start_gateway()
    p2 = _password("CS-2")

    async def session():
        async with (
            _Connected(port, "CS-1", cs1, Station16, "ocpp1.6") as one,
            _Connected(port, "CS-2", p2, Station201, "ocpp2.0.1") as two,
        ):
            started = await one.call(
                call16.StartTransaction(
                    connector_id=1, id_tag="TAG-1", meter_start=1000, timestamp=_now()
                )
            )
            stopped = await one.call(
                call16.StopTransaction(
                    meter_stop=8500,
                    timestamp=_now(),
                    transaction_id=started.transaction_id,
                    reason="EVDisconnected",
                )
            )
            for event, reason in (("Started", "CablePluggedIn"), ("Ended", "EVDeparted")):
                info = {"transactionId": "T-201"}
                if event == "Ended":
                    info["stoppedReason"] = "EVDisconnected"
                await two.call(
                    call201.TransactionEvent(
                        event_type=event,
                        timestamp=_now(),
                        trigger_reason=reason,
                        seq_no=1 if event == "Started" else 2,
                        transaction_info=info,
                        evse={"id": 1},
                        id_token={"idToken": "TOKEN-9", "type": "ISO14443"},
                    )
                )
            return started, stopped

    started, stopped = asyncio.run(session())
    assert started.id_tag_info["status"] == "Accepted"
    assert stopped.id_tag_info["status"] == "Accepted"
    one = StationTransaction.objects.get(station__station_id="CS-1")
    assert one.transaction_id == str(started.transaction_id)
    assert (one.evse_id, one.id_token, one.meter_start_wh, one.meter_stop_wh) == (
        1,
        "TAG-1",
        1000,
        8500,
    )
    assert one.ended_at is not None and one.stop_reason == "EVDisconnected"
    two = StationTransaction.objects.get(station__station_id="CS-2")
    assert (two.transaction_id, two.evse_id, two.id_token) == ("T-201", 1, "TOKEN-9")
    assert two.started_at and two.ended_at and two.stop_reason == "EVDisconnected"


def test_a_missing_failsafe_profile_is_sent_while_the_station_stays_connected(
    start_gateway, microgrid, mapped
):
    """A charger mapped after the boot, and a changed failsafe power, get their level 0
    profile without a new BootNotification."""
    ChargingStation.objects.create(station_id="CS-1", microgrid=microgrid)
    mapped(microgrid, {"CH-01": ("CS-1", 1)})
    password = _password("CS-1")
    port = start_gateway(OCPP_FAILSAFE_CHECK_S="0.5")

    def level0(profiles, evse):
        return [
            float(p["charging_schedule"]["charging_schedule_period"][0]["limit"])
            for p in profiles
            if p["stack_level"] == 0 and p["evse_id"] == evse
        ]

    async def session():
        async with _Connected(port, "CS-1", password, Station16, "ocpp1.6") as cp:
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            await _wait_for(lambda: level0(cp.profiles, 1))
            assert not level0(cp.profiles, 2)
            # CH-02 is named as EVSE 2 and CH-01's failsafe power changes: both are sent.
            await _in_thread(mapped, microgrid, {"CH-02": ("CS-1", 2)})
            await _in_thread(
                lambda: Asset.objects.filter(asset_id="CH-01").update(failsafe_power_kw=6.0)
            )
            await _wait_for(lambda: level0(cp.profiles, 2) and 6000.0 in level0(cp.profiles, 1))
            await _wait_for(
                lambda: (
                    StationEvse.objects.filter(
                        station__station_id="CS-1", failsafe_status="Accepted"
                    ).count()
                    == 2
                )
            )
            return cp.profiles

    profiles = asyncio.run(session())
    ch02 = Asset.objects.get(asset_id="CH-02").failsafe_power_kw
    assert level0(profiles, 2) == [ch02 * 1000]
    assert level0(profiles, 1) == [4100.0, 6000.0]  # the boot's, then the changed one only
    assert dict(
        StationEvse.objects.filter(station__station_id="CS-1").values_list("evse_id", "failsafe_kw")
    ) == {1: 6.0, 2: ch02}


def test_per_phase_current_import_becomes_the_readings_current_a(start_gateway, cs1, microgrid):
    """Three-phase CH-01 (EVSE 1) with L1-L3; single-phase CH-02 (EVSE 2) with L1 only."""
    from microgrid.telemetry.models import LatestReading

    Asset.objects.filter(asset_id="CH-02").update(phases=1, phase_rotation="L1")
    port = start_gateway()

    def sampled(power_w, currents):
        return [
            {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
            *(
                {"value": str(a), "measurand": "Current.Import", "phase": phase, "unit": "A"}
                for phase, a in currents.items()
            ),
        ]

    async def session():
        async with _Connected(port, "CS-1", cs1, Station16, "ocpp1.6") as cp:
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            for connector, power, currents in (
                (1, 11000, {"L1": 16.0, "L2": 15.5, "L3": 0.2}),
                (2, 3680, {"L1-N": 16.0}),
            ):
                await cp.call(
                    call16.MeterValues(
                        connector_id=connector,
                        meter_value=[
                            {"timestamp": _now(), "sampledValue": sampled(power, currents)}
                        ],
                    )
                )

    asyncio.run(session())
    currents = {
        r.asset.asset_id: (r.current_l1_a, r.current_l2_a, r.current_l3_a)
        for r in LatestReading.objects.select_related("asset")
    }
    assert currents["CH-01"] == (16.0, 15.5, 0.2)
    assert currents["CH-02"] == (16.0, 0.0, 0.0)
