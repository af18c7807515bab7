"""What the OCPP gateway does to the database: authenticate, record boots, heartbeats and
EVSE states, and turn meter values into telemetry through the telemetry service (the same
validation and idempotency as the API). Synchronous; the gateway runs them in threads."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from balancing.phase_alloc import DRAW_MIN_A, DRAW_SHARE
from microgrid.common.errors import DomainError
from microgrid.common.prepared import PreparedRead
from microgrid.telemetry.services import charger_session_put, telemetry_ingest
from microgrid.topology.models import Asset
from stations.choices import PLUGGED_IN, AuthRefusal
from stations.models import (
    ChargingStation,
    StationAuthAttempt,
    StationEvse,
    StationTransaction,
)


def _hash(password: str, salt: str) -> str:
    return f"sha256${salt}${hashlib.sha256(f'{salt}:{password}'.encode()).hexdigest()}"


def password_matches(password: str, stored: str) -> bool:
    """Station passwords are 192 random bits made by `set_station_password`, like API tokens:
    a salted SHA-256 keeps them safe at rest, and 2,000 stations reconnecting after a gateway
    restart cost no password-stretching CPU."""
    parts = stored.split("$")
    if len(parts) != 3 or parts[0] != "sha256":
        return False
    return hmac.compare_digest(_hash(password, parts[1]), stored)


def station_password_set(*, station_id: str) -> str:
    """A new random password for the station; only its hash is stored. Returns it."""
    password = secrets.token_urlsafe(24)
    updated = ChargingStation.objects.filter(station_id=station_id).update(
        password_hash=_hash(password, secrets.token_hex(8))
    )
    if not updated:
        raise DomainError(
            "NOT_FOUND", f"no charging station {station_id!r}", {"station_id": station_id}
        )
    return password


def station_authenticate(
    *, station_id: str, user: str | None, password: str | None, remote: str
) -> str | None:
    """None when the station may connect, else the refusal reason (recorded)."""
    station = ChargingStation.objects.filter(station_id=station_id).first()
    if station is None:
        reason = AuthRefusal.UNKNOWN_STATION
    elif user is None or password is None:
        reason = AuthRefusal.NO_CREDENTIALS
    elif user != station_id:
        reason = AuthRefusal.USER_MISMATCH
    elif not password_matches(password, station.password_hash):
        reason = AuthRefusal.WRONG_PASSWORD
    else:
        return None
    station_refusal_record(station_id=station_id, remote=remote, reason=reason)
    return reason


def station_refusal_record(*, station_id: str, remote: str, reason: str) -> None:
    StationAuthAttempt.objects.create(
        station_id=station_id[:64], remote_address=remote[:64], reason=reason, at=timezone.now()
    )


def station_connected(*, station_id: str, protocol: str, gateway: str, connected: bool) -> None:
    fields: dict[str, Any] = {"connected": connected, "last_seen_at": timezone.now()}
    if connected:
        fields.update(protocol=protocol, gateway=gateway)
    station = ChargingStation.objects.get(station_id=station_id)
    for k, v in fields.items():
        setattr(station, k, v)
    station.save()


def station_boot(*, station_id: str, vendor: str, model: str, firmware: str | None) -> None:
    with transaction.atomic():
        station = ChargingStation.objects.select_for_update().get(station_id=station_id)
        station.vendor, station.model = vendor[:50], model[:50]
        station.firmware = (firmware or "")[:50]
        station.last_seen_at = timezone.now()
        station.save()


def station_seen(*, station_id: str) -> None:
    ChargingStation.objects.filter(station_id=station_id).update(last_seen_at=timezone.now())


def station_status(*, station_id: str, evse_id: int, status: str) -> None:
    station = ChargingStation.objects.get(station_id=station_id)
    StationEvse.objects.update_or_create(
        station=station,
        evse_id=evse_id,
        defaults={"status": status[:20], "status_at": timezone.now()},
    )
    station_seen(station_id=station_id)


def _charger(station: ChargingStation, evse_id: int) -> Asset | None:
    """The charger asset of the station's microgrid that names this station and EVSE."""
    return Asset.objects.filter(
        microgrid_id=station.microgrid_id,
        kind="CHARGER",
        station_id=station.station_id,
        evse_id=evse_id,
    ).first()


class MeterProblem(Exception):
    """A meter value the product cannot use: the station gets PropertyConstraintViolation."""


def station_meter_values(*, station_id: str, evse_id: int, samples: list[dict[str, Any]]) -> int:
    """Readings for the charger at (station, evse) from OCPP sampled values:
    `[{"timestamp", "power_w", "currents": {phase: A}}]`. Returns how many were ingested.

    Per-phase currents become the reading's `current_a` [L1, L2, L3] (the charger's own
    phases, spec 3.5): all three for a three-phase charger; L1 alone for a single-phase one
    (its L2 and L3 carry nothing). A sample with fewer is a reading without currents."""
    station = ChargingStation.objects.select_related("microgrid").get(station_id=station_id)
    charger = _charger(station, evse_id)
    if charger is None:
        raise MeterProblem(f"EVSE {evse_id} of {station_id} is not mapped to a charger")
    evse = StationEvse.objects.filter(station=station, evse_id=evse_id).first()
    connected = evse is not None and evse.status in PLUGGED_IN
    readings = []
    for sample in samples:
        reading: dict[str, Any] = {
            "asset_id": charger.asset_id,
            "power_kw": round(sample["power_w"] / 1000.0, 3),
            "observed_at": sample["timestamp"],
            "connected": connected,
        }
        if connected:
            # OCPP does not say what the vehicle asks for: it may take the charger's maximum.
            reading["requested_kw"] = charger.max_power_kw or 0.0
        currents = sample.get("currents") or {}
        if all(p in currents for p in (1, 2, 3)):
            reading["current_a"] = [currents[1], currents[2], currents[3]]
        elif (charger.phases or 3) == 1 and 1 in currents:
            reading["current_a"] = [currents[1], currents.get(2, 0.0), currents.get(3, 0.0)]
        readings.append(reading)
    if not readings:
        return 0
    try:
        telemetry_ingest(microgrid=station.microgrid, readings=readings)
    except DomainError as exc:
        raise MeterProblem(f"{exc.code}: {exc.message}") from exc
    station_seen(station_id=station_id)
    return len(readings)


def station_charging_needs(
    *, station_id: str, evse_id: int, charging_needs: dict[str, Any]
) -> str | None:
    """OCPP 2.0.1 NotifyEVChargingNeeds: the vehicle's departure time and energy amount become
    the charger's session (spec 4.3, "Departures"), as if the integration had sent them.
    Returns None when accepted, else why it was not (the station gets Rejected)."""
    station = ChargingStation.objects.get(station_id=station_id)
    charger = _charger(station, evse_id)
    if charger is None:
        return f"EVSE {evse_id} of {station_id} is not mapped to a charger"
    if not isinstance(charging_needs, dict) or not charging_needs.get("departure_time"):
        return "no departure time: nothing to plan for"
    try:
        departure = parse_timestamp(charging_needs["departure_time"])
    except MeterProblem as exc:
        return str(exc)
    energy_wh = None
    for key in ("dc_charging_parameters", "ac_charging_parameters"):
        params = charging_needs.get(key)
        if isinstance(params, dict) and params.get("energy_amount") is not None:
            energy_wh = params["energy_amount"]
            break
    energy_kwh = None
    if isinstance(energy_wh, int | float) and not isinstance(energy_wh, bool) and energy_wh > 0:
        energy_kwh = round(float(energy_wh) / 1000.0, 3)
    try:
        charger_session_put(asset=charger, departure_at=departure, energy_needed_kwh=energy_kwh)
    except DomainError as exc:
        return f"{exc.code}: {exc.message}"
    station_seen(station_id=station_id)
    return None


def evse_soc_record(*, station_id: str, evse_id: int, soc_pct: float, at: str) -> None:
    """The vehicle's state of charge an EVSE reported (MeterValues measurand SoC), kept on the
    EVSE and shown with it: telemetry readings have no SoC field and the cycle does not use
    it (spec 4.8). An older sample than the one kept changes nothing."""
    moment = parse_timestamp(at)
    station = ChargingStation.objects.get(station_id=station_id)
    with transaction.atomic():
        evse, _ = StationEvse.objects.select_for_update().get_or_create(
            station=station, evse_id=evse_id
        )
        if evse.soc_at is None or moment >= evse.soc_at:
            evse.soc_pct, evse.soc_at = soc_pct, moment
            evse.save(update_fields=["soc_pct", "soc_at"])
    station_seen(station_id=station_id)


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise MeterProblem("timestamp must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MeterProblem(f"timestamp {value!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        raise MeterProblem("timestamp needs an offset")
    return moment


def _moment(value: Any) -> datetime:
    """A station's timestamp, or now when it sent none that can be read (a transaction is
    recorded whatever its clock says)."""
    try:
        return parse_timestamp(value)
    except MeterProblem:
        return timezone.now()


def station_transaction_start(
    *, station_id: str, evse_id: int, id_token: str, meter_start_wh: float, at: Any
) -> int:
    """OCPP 1.6 StartTransaction: recorded; its row number is the transaction id the station
    gets (an integer, unique). The product does not authorise drivers."""
    station = ChargingStation.objects.get(station_id=station_id)
    with transaction.atomic():
        row = StationTransaction.objects.create(
            station=station,
            transaction_id=f"pending-{secrets.token_hex(8)}",
            evse_id=evse_id,
            id_token=(id_token or "")[:36],
            started_at=_moment(at),
            meter_start_wh=meter_start_wh,
        )
        row.transaction_id = str(row.pk)
        row.save(update_fields=["transaction_id"])
    station_seen(station_id=station_id)
    return row.pk


def station_transaction_stop(
    *, station_id: str, transaction_id: int, meter_stop_wh: float, at: Any, reason: str
) -> None:
    """OCPP 1.6 StopTransaction: the transaction's end, when it is one of the station's."""
    StationTransaction.objects.filter(
        station__station_id=station_id, transaction_id=str(transaction_id)
    ).update(ended_at=_moment(at), meter_stop_wh=meter_stop_wh, stop_reason=(reason or "")[:40])
    station_seen(station_id=station_id)


def station_transaction_event(
    *,
    station_id: str,
    event_type: str,
    transaction_id: str,
    evse_id: int | None,
    id_token: str,
    at: Any,
    trigger_reason: str,
    stopped_reason: str,
) -> None:
    """OCPP 2.0.1 TransactionEvent: the transaction is created by its first event (whatever
    its type: events may be sent again after an offline period) and ended by `Ended`."""
    station = ChargingStation.objects.get(station_id=station_id)
    moment = _moment(at)
    with transaction.atomic():
        row, _ = StationTransaction.objects.select_for_update().get_or_create(
            station=station, transaction_id=transaction_id[:36]
        )
        if evse_id:
            row.evse_id = evse_id
        if id_token:
            row.id_token = id_token[:36]
        if event_type == "Started" or row.started_at is None:
            row.started_at = moment if event_type == "Started" else (row.started_at or moment)
        if event_type == "Ended":
            row.ended_at = moment
            row.stop_reason = (stopped_reason or "")[:40]
        row.last_event = (trigger_reason or "")[:40]
        row.save()
    station_seen(station_id=station_id)


# --- setpoints to the stations (the OCPP dispatch channel) -----------------------------------


# Every cycle's outbox asks (prepared; a batch of scheduled cycles asks once for all).
_station_ids = PreparedRead(
    lambda microgrid: (
        ChargingStation.objects.filter(microgrid_id=microgrid)
        .order_by()
        .values_list("station_id", flat=True)
    ),
    microgrid=int,
    batch_by="microgrid",
)


def charger_channels(microgrid) -> dict[str, str]:
    """Chargers mapped to a station EVSE take the OCPP channel (dispatch's `charger_channels`,
    answered in stations/receivers.py)."""
    from dispatch.choices import Channel

    # Asked by every cycle: a microgrid without stations (most) costs one indexed lookup, not
    # a pass over its 2,000 chargers (and a batch of scheduled cycles asks once for all).
    stations = _station_ids(microgrid=microgrid.pk)
    if not stations:
        return {}
    return dict.fromkeys(
        Asset.objects.filter(
            microgrid=microgrid, kind="CHARGER", station_id__in=stations
        ).values_list("asset_id", flat=True),
        Channel.OCPP,
    )


def charger_stations(microgrid) -> list[str]:
    """Registered with topology: the station ids a charger of this microgrid may name."""
    return list(
        ChargingStation.objects.filter(microgrid=microgrid).values_list("station_id", flat=True)
    )


def charger_phases(own: int | None, node: int) -> int:
    """The phases a charger's current limit is per (`numberPhases`): its own (default 3),
    never more than its node has."""
    return min(own or 3, node)


def setpoint_phases(
    own: int | None, node: int, connected: bool | None, current_a: list[float] | None
) -> tuple[int, int | None]:
    """`numberPhases` and `phaseToUse` of a setpoint (issue 19): the phases the EV is seen to
    draw on (its latest currents, as the cycle learns them: balancing.phase_alloc), so a
    single-phase EV on a three-phase charger gets its whole setpoint on its one phase, named
    by `phaseToUse` (1..3, the charger's own); otherwise the charger's phases."""
    phases = charger_phases(own, node)
    if phases == 1 or not connected or not current_a or None in current_a:
        return phases, None
    top = max(current_a)
    if top < DRAW_MIN_A:
        return phases, None
    floor_a = max(DRAW_MIN_A, DRAW_SHARE * top)
    drawn = [k for k in range(3) if current_a[k] >= floor_a]
    if len(drawn) == 1:
        return 1, drawn[0] + 1
    return len(drawn), None


def ocpp_claim(*, gateway: str) -> list[dict[str, Any]]:
    """Claim the due OCPP deliveries of the stations this gateway holds (connected to it):
    the database is where a delivery meets the gateway of its station. Returns what to send,
    with the station, EVSE, unit, voltage and phases; the claim token is in each entry."""
    import uuid

    from django.conf import settings
    from django.db.models import Q

    from dispatch.choices import Channel, DeliveryStatus
    from dispatch.models import Delivery
    from dispatch.services import deliveries_claim, deliveries_due, deliveries_expire

    now = timezone.now()
    token = uuid.uuid4().hex
    deliveries_expire(now, channel=Channel.OCPP)
    # The chargers whose station is connected to this gateway, read first (two indexed
    # queries): a correlated EXISTS from each delivery through its asset to its station took
    # PostgreSQL seconds for 2,000 deliveries. A station that connects meanwhile is claimed
    # at the next round; one that leaves meanwhile is FAILED and retried.
    stations = set(
        ChargingStation.objects.filter(gateway=gateway, connected=True).values_list(
            "microgrid_id", "station_id"
        )
    )
    if not stations:
        return []
    held_by_microgrid: dict[int, list[str]] = {}
    for mg, asset_id, station_id in Asset.objects.filter(
        kind="CHARGER",
        microgrid_id__in={mg for mg, _ in stations},
        station_id__in={sid for _, sid in stations},
    ).values_list("microgrid_id", "asset_id", "station_id"):
        if (mg, station_id) in stations:
            held_by_microgrid.setdefault(mg, []).append(asset_id)
    if not held_by_microgrid:
        return []
    held = Q()
    for mg, asset_ids in held_by_microgrid.items():
        held |= Q(microgrid_id=mg, target_id__in=asset_ids)
    # An unanswered call is FAILED by the gateway after its timeout; the lease covers a
    # gateway that died holding the claim.
    due = deliveries_due(now, lease_s=settings.OCPP_RESPONSE_TIMEOUT_S + 5)
    claimed = deliveries_claim(
        Delivery.objects.filter(due, channel=Channel.OCPP).filter(held), token=token, now=now
    )
    if not claimed:
        return []
    rows = list(
        Delivery.objects.filter(claim=token, status=DeliveryStatus.SENT).values(
            "pk",
            "microgrid_id",
            "cycle_id",
            "batch_id",
            "target_id",
            "limit_kw",
            "valid_until",
            "attempts",
        )
    )
    units = dict(
        ChargingStation.objects.filter(gateway=gateway).values_list(
            "station_id", "charging_rate_unit"
        )
    )
    chargers = {
        (mg, asset): (
            station_id,
            evse_id,
            voltage,
            *setpoint_phases(own, node, connected, None if l1 is None else [l1, l2, l3]),
        )
        for mg, asset, station_id, evse_id, voltage, own, node, connected, l1, l2, l3 in (
            Asset.objects.filter(
                microgrid_id__in={r["microgrid_id"] for r in rows},
                asset_id__in={r["target_id"] for r in rows},
                kind="CHARGER",
            ).values_list(
                "microgrid_id",
                "asset_id",
                "station_id",
                "evse_id",
                "node__voltage_v",
                "phases",
                "node__phases",
                "latest_reading__connected",
                "latest_reading__current_l1_a",
                "latest_reading__current_l2_a",
                "latest_reading__current_l3_a",
            )
        )
    }
    out = []
    for r in rows:
        station_id, evse_id, voltage, phases, phase_to_use = chargers[
            (r["microgrid_id"], r["target_id"])
        ]
        out.append(
            {
                **r,
                "token": token,
                "station_id": station_id,
                "evse_id": evse_id,
                "unit": units.get(station_id, "W"),
                "voltage_v": voltage,
                "phases": phases,
                "phase_to_use": phase_to_use,
            }
        )
    return out


ANSWERS = {"Accepted": "ACCEPTED", "Rejected": "REJECTED", "NotSupported": "REJECTED"}


def ocpp_record(*, sent: list[dict[str, Any]], answers: dict[int, tuple[str, str]]) -> None:
    """Record the stations' answers: {delivery pk: (status, error)} per batch (a cycle's
    deliveries of one microgrid)."""
    from collections import defaultdict

    from dispatch.channels import SendResult
    from dispatch.choices import Channel, DeliveryStatus
    from dispatch.services import deliveries_record
    from microgrid.topology.models import Microgrid

    batches: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for row in sent:
        batches[(row["microgrid_id"], row["batch_id"])].append(row)
    microgrids = {m.pk: m for m in Microgrid.objects.filter(pk__in={k[0] for k in batches})}
    now = timezone.now()
    for (mg, batch_id), members in batches.items():
        per = {m["pk"]: answers[m["pk"]][0] for m in members}
        errors = sorted({answers[m["pk"]][1] for m in members if answers[m["pk"]][1]})
        statuses = set(per.values())
        overall = statuses.pop() if len(statuses) == 1 else DeliveryStatus.FAILED
        deliveries_record(
            microgrid=microgrids[mg],
            cycle_pk=members[0]["cycle_id"],
            channel=Channel.OCPP,
            batch_id=batch_id,
            members=members,
            result=SendResult(overall, error="; ".join(errors)[:300], per_delivery=per),
            token=members[0]["token"],
            started_at=now,
            attempt=max(m["attempts"] for m in members),
        )
    _evse_statuses(
        {(row["station_id"], row["evse_id"]): answers[row["pk"]][0] for row in sent},
        "profile_status",
    )


def _evse_statuses(statuses: dict[tuple[str, int], str], field: str) -> None:
    """Set one status field of many EVSEs, creating the rows not seen yet (a few queries
    whatever the count: a 2,000-charger cycle answers at once)."""
    if not statuses:
        return
    stations = dict(
        ChargingStation.objects.filter(station_id__in={k[0] for k in statuses}).values_list(
            "station_id", "pk"
        )
    )
    StationEvse.objects.bulk_create(
        [
            StationEvse(station_id=stations[sid], evse_id=evse)
            for sid, evse in statuses
            if sid in stations
        ],
        ignore_conflicts=True,
    )
    # One UPDATE per (status, evse_id): usually one or two for a whole cycle.
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for (sid, evse), status in statuses.items():
        if sid in stations:
            groups[(status[:40], evse)].append(stations[sid])
    for (status, evse), pks in groups.items():
        StationEvse.objects.filter(station_id__in=pks, evse_id=evse).update(**{field: status})


def failsafe_profiles(*, station_id: str) -> list[dict[str, Any]]:
    """The stack level 0 profile of each EVSE of the station: its charger's failsafe power."""
    station = ChargingStation.objects.get(station_id=station_id)
    return [
        {
            "evse_id": asset.evse_id,
            "limit_kw": asset.failsafe_power_kw or 0.0,
            "unit": station.charging_rate_unit,
            "voltage_v": asset.node.voltage_v,
            "phases": charger_phases(asset.phases, asset.node.phases),
        }
        for asset in Asset.objects.filter(
            microgrid_id=station.microgrid_id, kind="CHARGER", station_id=station_id
        )
        .select_related("node")
        .order_by("evse_id")
    ]


def failsafe_record(*, station_id: str, evse_id: int, status: str, limit_kw: float) -> None:
    """The station's answer to a level 0 profile, and the failsafe power it was for."""
    station = ChargingStation.objects.get(station_id=station_id)
    StationEvse.objects.update_or_create(
        station=station,
        evse_id=evse_id,
        defaults={"failsafe_status": status[:40], "failsafe_kw": limit_kw},
    )


def failsafe_due(*, gateway: str) -> list[dict[str, Any]]:
    """The level 0 profiles missing on the stations connected to this gateway: an EVSE a
    charger names whose failsafe profile was never answered, failed, or was for another
    failsafe power (a station that answered Rejected or NotSupported is not asked again for
    the same power). Three queries whatever the count."""
    stations = {
        sid: (mg, unit)
        for sid, mg, unit in ChargingStation.objects.filter(
            gateway=gateway, connected=True
        ).values_list("station_id", "microgrid_id", "charging_rate_unit")
    }
    if not stations:
        return []
    state = {
        (sid, evse): (status, kw)
        for sid, evse, status, kw in StationEvse.objects.filter(
            station__station_id__in=stations
        ).values_list("station__station_id", "evse_id", "failsafe_status", "failsafe_kw")
    }
    out = []
    for mg, sid, evse, failsafe, voltage, own, node in Asset.objects.filter(
        kind="CHARGER",
        station_id__in=stations,
        microgrid_id__in={mg for mg, _ in stations.values()},
    ).values_list(
        "microgrid_id",
        "station_id",
        "evse_id",
        "failsafe_power_kw",
        "node__voltage_v",
        "phases",
        "node__phases",
    ):
        if stations[sid][0] != mg:
            continue
        limit_kw = failsafe or 0.0
        status, kw = state.get((sid, evse), ("", None))
        if status and not status.startswith("FAILED") and kw == limit_kw:
            continue
        out.append(
            {
                "station_id": sid,
                "evse_id": evse,
                "limit_kw": limit_kw,
                "unit": stations[sid][1],
                "voltage_v": voltage,
                "phases": charger_phases(own, node),
            }
        )
    return out
