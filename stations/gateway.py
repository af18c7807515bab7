"""The OCPP gateway: an asyncio WebSocket server for charging stations (OCPP 1.6J, 2.0.1).

Stations connect at `ws://HOST:PORT/ocpp/<station_id>` offering the subprotocol
`ocpp1.6` or `ocpp2.0.1`, with HTTP Basic auth on the upgrade request (security profile
1; user = station id). A refusal is HTTP 401 before any WebSocket exists, and is recorded.
Messages are handled with the `ocpp` package's ChargePoint classes; the database work runs
in threads through the same services as the API (`stations.services`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import socket
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v16.enums import AuthorizationStatus as Auth16
from ocpp.v16.enums import RegistrationStatus as Reg16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from ocpp.v201.enums import NotifyEVChargingNeedsStatusEnumType as NeedsStatus
from ocpp.v201.enums import RegistrationStatusEnumType as Reg201
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from microgrid.common.fields import ID_PATTERN
from stations import services
from stations.choices import AuthRefusal, Protocol

log = logging.getLogger(__name__)
PATH_RE = re.compile(rf"^/ocpp/({ID_PATTERN})$")


def db(fn):
    """A service, run in a worker thread (Django's ORM is synchronous)."""
    return sync_to_async(fn, thread_sensitive=False)


def _now() -> str:
    return datetime.now(UTC).isoformat()


PHASE_INDEX = {"L1": 1, "L2": 2, "L3": 3, "L1-N": 1, "L2-N": 2, "L3-N": 3}


def _number(sampled: dict[str, Any], v201: bool, what: str) -> tuple[float, str]:
    """A sampled value as a number (2.0.1 `multiplier` applied) and its unit."""
    unit_of_measure = sampled.get("unit_of_measure") or {}
    unit = unit_of_measure.get("unit") if v201 else sampled.get("unit")
    multiplier = unit_of_measure.get("multiplier", 0) if v201 else 0
    try:
        return float(sampled["value"]) * (10**multiplier), unit
    except (KeyError, TypeError, ValueError) as exc:
        raise services.MeterProblem(f"a {what} value is not a number") from exc


def _power_samples(meter_value: list[dict[str, Any]], v201: bool) -> list[dict[str, Any]]:
    """Per sampled time: Power.Active.Import (W or kW, the total: no phase) in W, with the
    Current.Import of the phases given at the same time (`currents`: {1|2|3: A})."""
    out = []
    for entry in meter_value or []:
        stamp = services.parse_timestamp(entry.get("timestamp"))
        power: float | None = None
        currents: dict[int, float] = {}
        for sampled in entry.get("sampled_value") or []:
            measurand = sampled.get("measurand")
            if measurand == "Power.Active.Import" and not sampled.get("phase"):
                value, unit = _number(sampled, v201, "Power.Active.Import")
                if unit in (None, "W"):
                    power = value
                elif unit == "kW":
                    power = value * 1000.0
                else:
                    raise services.MeterProblem(f"unit {unit!r} of Power.Active.Import: W or kW")
            elif measurand == "Current.Import" and sampled.get("phase") in PHASE_INDEX:
                value, unit = _number(sampled, v201, "Current.Import")
                if unit not in (None, "A"):
                    raise services.MeterProblem(f"unit {unit!r} of Current.Import: A")
                currents[PHASE_INDEX[sampled["phase"]]] = value
        if power is not None:
            out.append({"timestamp": stamp.isoformat(), "power_w": power, "currents": currents})
    return out


def _soc_sample(meter_value: list[dict[str, Any]]) -> tuple[float, str] | None:
    """The latest `SoC` sampled value (percent, 0..100) and its timestamp, or None."""
    latest: tuple[float, str] | None = None
    for entry in meter_value or []:
        stamp = services.parse_timestamp(entry.get("timestamp"))
        for sampled in entry.get("sampled_value") or []:
            if sampled.get("measurand") != "SoC":
                continue
            try:
                value = float(sampled["value"])
            except (KeyError, TypeError, ValueError) as exc:
                raise services.MeterProblem("a SoC value is not a number") from exc
            if not 0.0 <= value <= 100.0:
                raise services.MeterProblem("SoC must be a percentage from 0 to 100")
            if latest is None or stamp.isoformat() >= latest[1]:
                latest = (value, stamp.isoformat())
    return latest


FAILSAFE_LEVEL, SETPOINT_LEVEL = 0, 1


def _limit(limit_kw: float, unit: str, voltage_v: float, phases: int) -> tuple[float, int | None]:
    """The schedule's limit in the station's unit: W, or A per phase with numberPhases."""
    if unit == "A":
        return round(limit_kw * 1000.0 / (voltage_v * phases), 1), phases
    return round(limit_kw * 1000.0, 1), None


def profile_payload(
    *,
    v201: bool,
    evse_id: int,
    level: int,
    limit_kw: float,
    unit: str,
    voltage_v: float,
    phases: int,
    valid_to: str | None,
    phase_to_use: int | None = None,
):
    """SetChargingProfile: TxDefaultProfile, Absolute, one period from 0 (spec 4.8). On 2.0.1 a
    limit in A meant for one phase of a three-phase charger names it (`phaseToUse`)."""
    limit, number_phases = _limit(limit_kw, unit, voltage_v, phases)
    period: dict[str, Any] = {"startPeriod": 0, "limit": limit}
    if number_phases is not None:
        period["numberPhases"] = number_phases
        if v201 and number_phases == 1 and phase_to_use is not None:
            period["phaseToUse"] = phase_to_use
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "startSchedule": _now(),
        "chargingSchedulePeriod": [period],
    }
    profile: dict[str, Any] = {
        # One id per EVSE and level: a new setpoint replaces the last one.
        "stackLevel": level,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
    }
    if valid_to is not None:
        profile["validTo"] = valid_to
    if v201:
        profile["id"] = evse_id * 10 + level
        profile["chargingSchedule"] = [{"id": evse_id * 10 + level, **schedule}]
        return call201.SetChargingProfile(evse_id=evse_id, charging_profile=profile)
    profile["chargingProfileId"] = evse_id * 10 + level
    profile["chargingSchedule"] = schedule
    return call16.SetChargingProfile(connector_id=evse_id, cs_charging_profiles=profile)


async def send_profile(station, payload) -> str:
    """The station's answer status, or raises asyncio.TimeoutError after the timeout.

    The payload is ours (`profile_payload`, checked against the schemas by the tests'
    stations, which validate every call they get), so it is not validated again here: the
    `ocpp` package validates in the loop's thread pool, where 2,000 validations of one cycle
    queued ahead of the database work and took seconds. An answer without a usable `status`
    raises, which is FAILED like any other error."""
    answer = await station.call(payload, suppress=False, skip_schema_validation=True)
    return str(answer.status)


class _Common:
    """What both protocol versions share."""

    station_id: str

    async def route_message(self, raw_msg):
        if raw_msg[:3] == "[3,":
            # An answer to one of our calls (2,000 per cycle): the library reads it.
            await super().route_message(raw_msg)
            return
        # A frame that is not OCPP-J at all still gets the error frame the protocol
        # prescribes when its message id can be read (the library only logs it).
        try:
            parsed = json.loads(raw_msg)
        except ValueError:
            parsed = None
        if not (
            isinstance(parsed, list)
            and len(parsed) >= 3
            and parsed[0] in (2, 3, 4)
            and isinstance(parsed[1], str)
        ):
            unique_id = (
                parsed[1]
                if isinstance(parsed, list) and len(parsed) > 1 and isinstance(parsed[1], str)
                else "-1"
            )
            await self._send(
                json.dumps([4, unique_id, "FormatViolation", "not an OCPP-J message", {}])
            )
            return
        if parsed[0] == 2 and (len(parsed) != 4 or not isinstance(parsed[3], dict)):
            await self._send(
                json.dumps([4, parsed[1], "FormatViolation", "a CALL is [2, id, action, {}]", {}])
            )
            return
        if parsed[0] == 2 and parsed[2] not in self.route_map:
            # OCPP-J 4.2.3: an action the receiver does not know is NotImplemented; one it
            # knows but does not handle is NotSupported (the ocpp package swaps the two).
            known = parsed[2] in {a.value for a in self.actions}
            code = "NotSupported" if known else "NotImplemented"
            await self._send(json.dumps([4, parsed[1], code, f"{parsed[2]}: {code}", {}]))
            return
        await super().route_message(raw_msg)

    async def _failsafe(self, profiles: list[dict[str, Any]] | None = None) -> None:
        """Each EVSE's stack level 0 profile, without validTo, at its charger's failsafe
        power, so the station falls back to it by itself: all of them after a boot, or the
        ones `failsafe_due` found missing."""
        v201 = isinstance(self, Station201)
        if profiles is None:
            profiles = await db(services.failsafe_profiles)(station_id=self.station_id)
        for p in profiles:
            payload = profile_payload(
                v201=v201,
                evse_id=p["evse_id"],
                level=FAILSAFE_LEVEL,
                limit_kw=p["limit_kw"],
                unit=p["unit"],
                voltage_v=p["voltage_v"],
                phases=p["phases"],
                valid_to=None,
            )
            try:
                status = await send_profile(self, payload)
            except Exception as exc:  # timeout, CallError, closed: recorded, sent again
                status = f"FAILED: {exc.__class__.__name__}"[:40]
            await db(services.failsafe_record)(
                station_id=self.station_id,
                evse_id=p["evse_id"],
                status=status,
                limit_kw=p["limit_kw"],
            )

    def failsafe_task(self, profiles: list[dict[str, Any]] | None = None) -> None:
        """Send level 0 profiles in the background: all of them (None, after a boot), or
        the missing ones unless a batch for this station is still on its way."""
        running = getattr(self, "_failsafe_running", None)
        if profiles is not None and running is not None and not running.done():
            return
        self._failsafe_running = asyncio.get_running_loop().create_task(self._failsafe(profiles))

    async def _meter(self, evse_id: int, meter_value, v201: bool) -> None:
        try:
            samples = _power_samples(meter_value, v201)
            soc = _soc_sample(meter_value)
            if samples or soc is None:
                await db(services.station_meter_values)(
                    station_id=self.station_id, evse_id=evse_id, samples=samples
                )
            if soc is not None:
                await db(services.evse_soc_record)(
                    station_id=self.station_id, evse_id=evse_id, soc_pct=soc[0], at=soc[1]
                )
        except services.MeterProblem as exc:
            raise PropertyConstraintViolationError(description=str(exc)) from exc


class Station16(_Common, ChargePoint16):
    actions = Action16

    @on(Action16.boot_notification)
    async def on_boot(self, charge_point_vendor, charge_point_model, **kwargs):
        await db(services.station_boot)(
            station_id=self.station_id,
            vendor=charge_point_vendor,
            model=charge_point_model,
            firmware=kwargs.get("firmware_version"),
        )
        return result16.BootNotification(
            current_time=_now(), interval=settings.OCPP_HEARTBEAT_S, status=Reg16.accepted
        )

    @after(Action16.boot_notification)
    async def after_boot(self, **kwargs):
        self.failsafe_task()

    @on(Action16.heartbeat)
    async def on_heartbeat(self):
        await db(services.station_seen)(station_id=self.station_id)
        return result16.Heartbeat(current_time=_now())

    @on(Action16.status_notification)
    async def on_status(self, connector_id, error_code, status, **kwargs):
        if connector_id > 0:
            await db(services.station_status)(
                station_id=self.station_id, evse_id=connector_id, status=status
            )
        return result16.StatusNotification()

    @on(Action16.meter_values)
    async def on_meter_values(self, connector_id, meter_value, **kwargs):
        await self._meter(connector_id, meter_value, v201=False)
        return result16.MeterValues()

    @on(Action16.start_transaction)
    async def on_start(self, connector_id, id_tag, meter_start, timestamp, **kwargs):
        # Drivers are authorised elsewhere (spec 4.8): every transaction is accepted.
        transaction_id = await db(services.station_transaction_start)(
            station_id=self.station_id,
            evse_id=connector_id,
            id_token=id_tag,
            meter_start_wh=meter_start,
            at=timestamp,
        )
        return result16.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": Auth16.accepted}
        )

    @on(Action16.stop_transaction)
    async def on_stop(self, meter_stop, timestamp, transaction_id, **kwargs):
        await db(services.station_transaction_stop)(
            station_id=self.station_id,
            transaction_id=transaction_id,
            meter_stop_wh=meter_stop,
            at=timestamp,
            reason=kwargs.get("reason") or "",
        )
        return result16.StopTransaction(id_tag_info={"status": Auth16.accepted})


class Station201(_Common, ChargePoint201):
    actions = Action201

    @on(Action201.boot_notification)
    async def on_boot(self, charging_station, reason, **kwargs):
        await db(services.station_boot)(
            station_id=self.station_id,
            vendor=charging_station.get("vendor_name", ""),
            model=charging_station.get("model", ""),
            firmware=charging_station.get("firmware_version"),
        )
        return result201.BootNotification(
            current_time=_now(), interval=settings.OCPP_HEARTBEAT_S, status=Reg201.accepted
        )

    @after(Action201.boot_notification)
    async def after_boot(self, **kwargs):
        self.failsafe_task()

    @on(Action201.heartbeat)
    async def on_heartbeat(self):
        await db(services.station_seen)(station_id=self.station_id)
        return result201.Heartbeat(current_time=_now())

    @on(Action201.status_notification)
    async def on_status(self, timestamp, connector_status, evse_id, connector_id, **kwargs):
        await db(services.station_status)(
            station_id=self.station_id, evse_id=evse_id, status=connector_status
        )
        return result201.StatusNotification()

    @on(Action201.meter_values)
    async def on_meter_values(self, evse_id, meter_value, **kwargs):
        await self._meter(evse_id, meter_value, v201=True)
        return result201.MeterValues()

    @on(Action201.notify_ev_charging_needs)
    async def on_ev_charging_needs(self, charging_needs, evse_id, **kwargs):
        refused = await db(services.station_charging_needs)(
            station_id=self.station_id, evse_id=evse_id, charging_needs=charging_needs
        )
        if refused is not None:
            log.info("%s: EV charging needs refused: %s", self.station_id, refused)
        return result201.NotifyEVChargingNeeds(
            status=NeedsStatus.rejected if refused else NeedsStatus.accepted
        )

    @on(Action201.transaction_event)
    async def on_transaction_event(self, event_type, timestamp, trigger_reason, seq_no, **kwargs):
        evse = kwargs.get("evse") or {}
        if evse.get("id") and kwargs.get("meter_value"):
            await self._meter(evse["id"], kwargs["meter_value"], v201=True)
        info = kwargs.get("transaction_info") or {}
        await db(services.station_transaction_event)(
            station_id=self.station_id,
            event_type=str(event_type),
            transaction_id=str(info.get("transaction_id", "")),
            evse_id=evse.get("id"),
            id_token=str((kwargs.get("id_token") or {}).get("id_token", "")),
            at=timestamp,
            trigger_reason=str(trigger_reason),
            stopped_reason=str(info.get("stopped_reason") or ""),
        )
        # Drivers are authorised elsewhere (spec 4.8): nothing to say about the id token.
        return result201.TransactionEvent()


def _basic(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.startswith("Basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user, password


class Gateway:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.name = f"{socket.gethostname()}:{port}"
        self.stations: dict[str, Any] = {}

    async def process_request(self, connection: ServerConnection, request):
        remote = str((connection.remote_address or ("?",))[0])
        match = PATH_RE.match(request.path.split("?", 1)[0])
        if match is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not an OCPP station URL\n")
        station_id = match.group(1)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        if not {p.strip() for p in offered.split(",")} & set(Protocol.values):
            await db(services.station_refusal_record)(
                station_id=station_id, remote=remote, reason=AuthRefusal.NO_SUBPROTOCOL
            )
            return connection.respond(HTTPStatus.BAD_REQUEST, "offer ocpp1.6 or ocpp2.0.1\n")
        user, password = _basic(request.headers.get("Authorization"))
        refusal = await db(services.station_authenticate)(
            station_id=station_id, user=user, password=password, remote=remote
        )
        if refusal is not None:
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
            return response
        return None

    async def handler(self, ws: ServerConnection) -> None:
        station_id = PATH_RE.match(ws.request.path.split("?", 1)[0]).group(1)
        cls = Station16 if ws.subprotocol == Protocol.OCPP16 else Station201
        station = cls(station_id, ws, response_timeout=settings.OCPP_RESPONSE_TIMEOUT_S)
        station.station_id = station_id
        self.stations[station_id] = station
        await db(services.station_connected)(
            station_id=station_id, protocol=ws.subprotocol, gateway=self.name, connected=True
        )
        try:
            await station.start()
        except ConnectionClosed:
            pass
        finally:
            if self.stations.get(station_id) is station:
                del self.stations[station_id]
                await db(services.station_connected)(
                    station_id=station_id, protocol="", gateway="", connected=False
                )

    async def dispatch_loop(self) -> None:
        """Every OCPP_POLL_S: claim the due OCPP deliveries of the stations held here, send
        them all at once, record the answers."""
        checked = asyncio.get_running_loop().time()
        while True:
            try:
                await self.dispatch_once()
            except Exception:
                log.exception("OCPP dispatch round failed")
            if asyncio.get_running_loop().time() - checked >= settings.OCPP_FAILSAFE_CHECK_S:
                checked = asyncio.get_running_loop().time()
                try:
                    await self.failsafe_once()
                except Exception:
                    log.exception("OCPP failsafe check failed")
            await asyncio.sleep(settings.OCPP_POLL_S)

    async def failsafe_once(self) -> int:
        """Every OCPP_FAILSAFE_CHECK_S: a level 0 profile to each EVSE of a station held here
        whose failsafe profile is missing (never answered, failed, or for another failsafe
        power than its charger's now: a charger mapped or changed since the boot)."""
        due = await db(services.failsafe_due)(gateway=self.name)
        by_station: dict[str, list[dict[str, Any]]] = {}
        for p in due:
            by_station.setdefault(p["station_id"], []).append(p)
        for station_id, profiles in by_station.items():
            station = self.stations.get(station_id)
            if station is not None:
                station.failsafe_task(profiles)
        return len(due)

    async def dispatch_once(self) -> int:
        start = time.perf_counter()
        claimed = await db(services.ocpp_claim)(gateway=self.name)
        if not claimed:
            return 0
        claimed_at = time.perf_counter()

        async def one(row) -> tuple[int, tuple[str, str]]:
            station = self.stations.get(row["station_id"])
            if station is None:
                return row["pk"], ("FAILED", "station not connected to this gateway")
            payload = profile_payload(
                v201=isinstance(station, Station201),
                evse_id=row["evse_id"],
                level=SETPOINT_LEVEL,
                limit_kw=row["limit_kw"],
                unit=row["unit"],
                voltage_v=row["voltage_v"],
                phases=row["phases"],
                valid_to=row["valid_until"].isoformat(),
                phase_to_use=row.get("phase_to_use"),
            )
            try:
                status = await send_profile(station, payload)
            except TimeoutError:
                return row["pk"], (
                    "FAILED",
                    f"no answer within {settings.OCPP_RESPONSE_TIMEOUT_S} s",
                )
            except Exception as exc:
                return row["pk"], ("FAILED", f"{exc.__class__.__name__}: {exc}"[:300])
            mapped = services.ANSWERS.get(status, "REJECTED")
            return row["pk"], (mapped, "" if mapped == "ACCEPTED" else f"station answered {status}")

        answers = dict(await asyncio.gather(*(one(r) for r in claimed)))
        answered_at = time.perf_counter()
        await db(services.ocpp_record)(sent=claimed, answers=answers)
        log.info(
            "OCPP round: %d profiles claimed in %.0f ms, answered in %.0f ms, recorded in %.0f ms",
            len(claimed),
            (claimed_at - start) * 1000,
            (answered_at - claimed_at) * 1000,
            (time.perf_counter() - answered_at) * 1000,
        )
        return len(claimed)

    async def run(self, ready=None) -> None:
        async with serve(
            self.handler,
            self.host,
            self.port,
            subprotocols=[Protocol.OCPP201, Protocol.OCPP16],
            process_request=self.process_request,
        ) as server:
            port = server.sockets[0].getsockname()[1]
            self.name = f"{socket.gethostname()}:{port}"
            if ready is not None:
                ready(port)
            await self.dispatch_loop()
