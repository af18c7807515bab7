"""What this product sends a Capacity Provider on its own: heartbeats, group measurements,
compliance errors (handshake acknowledgements and register answers are sent by the
services that receive the CP's messages). Every message goes through the outbox
(`outbox.outbound_enqueue`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from microgrid.envelopes import oscp
from microgrid.envelopes.choices import MeasurementConfiguration, OutboundType
from microgrid.envelopes.measurements import energy_wh, scope_assets
from microgrid.envelopes.models import OperatingEnvelope, OscpGroupBinding, OscpPeer
from microgrid.envelopes.outbox import outbound_due, outbound_enqueue
from microgrid.envelopes.services import _drop_expired_segments, measurement_configuration

log = logging.getLogger(__name__)

COMPLIANCE_MARGIN_KW = 0.001  # the breach rounding: 3 decimals


def _ready(peers):
    """Peers that can be sent to and have hand-shaken."""
    return peers.filter(active=True, required_behaviour__isnull=False).exclude(
        Q(cp_base_url="") | Q(cp_token="")
    )


def oscp_tick_run(*, now: datetime | None = None) -> dict[str, int]:
    """The beat task (every 5 s): drop timed-out segment sets, enqueue due heartbeats and
    measurements, and return the ids of outbound messages due for a (re)try."""
    now = now or timezone.now()
    counts = {"segments_dropped": 0, "heartbeats": 0, "measurements": 0}
    with transaction.atomic():
        counts["segments_dropped"] = _drop_expired_segments(now)
    for peer in _ready(OscpPeer.objects).filter(
        next_heartbeat_at__lte=now, handshake_heartbeat_interval_s__isnull=False
    ):
        counts["heartbeats"] += heartbeat_send(peer=peer, now=now)
    bindings = (
        OscpGroupBinding.objects.filter(peer__in=_ready(OscpPeer.objects))
        .select_related("peer", "microgrid")
        .order_by("pk")
    )
    for binding in bindings:
        interval = timedelta(seconds=binding.peer.measurement_interval_s)
        if binding.measured_until is None or binding.measured_until <= now - interval:
            counts["measurements"] += group_measurements_send(binding=binding, now=now)
    counts["due"] = outbound_due(now=now)
    return counts


def heartbeat_send(*, peer: OscpPeer, now: datetime) -> int:
    """A heartbeat to the CP: offline_mode_at = now + 2 x the interval it asked for. It is
    worth sending for one interval only."""
    with transaction.atomic():
        locked = OscpPeer.objects.select_for_update().get(pk=peer.pk)
        if locked.next_heartbeat_at is None or locked.next_heartbeat_at > now:
            return 0
        interval = timedelta(seconds=locked.interval_s)
        OscpPeer.objects.filter(pk=locked.pk).update(next_heartbeat_at=now + interval)
        row = outbound_enqueue(
            peer=locked,
            message_type=OutboundType.HEARTBEAT,
            body={"offline_mode_at": oscp.iso(now + 2 * interval)},
            expires_in=interval,
            now=now,
        )
    return int(row is not None)


def group_measurements_send(*, binding: OscpGroupBinding, now: datetime) -> int:
    """update_group_measurements for one group: the import energy of its scope as one
    EnergyMeasurement (WH, IMPORT, TOTAL, phase ALL). CONTINUOUS: the running total since
    measuring started; INTERMITTENT: the energy since the previous measurement, with
    initial_measure_time. The first call only starts the counter."""
    with transaction.atomic():
        locked = (
            OscpGroupBinding.objects.select_for_update(of=("self",))
            .select_related("peer", "microgrid")
            .get(pk=binding.pk)
        )
        peer = locked.peer
        rows = OscpGroupBinding.objects.filter(pk=locked.pk)
        if locked.measured_until is None:
            rows.update(measurement_started_at=now, measured_until=now, measured_wh=0)
            return 0
        if locked.measured_until > now - timedelta(seconds=peer.measurement_interval_s):
            return 0
        _, assets = scope_assets(locked)
        hold = timedelta(seconds=locked.microgrid.telemetry_stale_after_s)
        since = locked.measured_until
        wh = energy_wh(assets, since, now, hold)
        total = round(locked.measured_wh + wh, 1)
        rows.update(measured_until=now, measured_wh=total)
        configuration = measurement_configuration(peer)
        measurement: dict[str, Any] = {
            "value": total if configuration == MeasurementConfiguration.CONTINUOUS else wh,
            "phase": "ALL",
            "unit": "WH",
            "energy_type": "TOTAL",
            "direction": "IMPORT",
            "measure_time": oscp.iso(now),
        }
        if configuration == MeasurementConfiguration.INTERMITTENT:
            measurement["initial_measure_time"] = oscp.iso(since)
        elif locked.measurement_started_at is not None:
            measurement["initial_measure_time"] = oscp.iso(locked.measurement_started_at)
        row = outbound_enqueue(
            peer=peer,
            message_type=OutboundType.UPDATE_GROUP_MEASUREMENTS,
            body={"group_id": locked.group_id, "measurements": [measurement]},
            group_id=locked.group_id,
            now=now,
        )
    return int(row is not None)


# -- compliance errors --------------------------------------------------------------------------


def _block_of(envelope: OperatingEnvelope) -> dict[str, Any]:
    """The envelope's block as the CP sent it (a part: its own window)."""
    return {
        "capacity": envelope.capacity,
        "phase": envelope.phase,
        "unit": envelope.unit,
        "start_time": oscp.iso(envelope.valid_from),
        "end_time": oscp.iso(envelope.valid_until),
    }


def compliance_check(
    *,
    microgrid_pk: int,
    at: datetime,
    nodes: list[dict[str, Any]],
    breaches: list[dict[str, Any]],
    **_: Any,
) -> int:
    """After a cycle: a group_capacity_compliance_error for each group whose envelope this
    product cannot comply with — the uncontrolled load alone of its node is above the
    envelope, or a breach of an OPERATING_ENVELOPE limit on its node is still open after
    the cycle that opened it. Once per envelope and cause (the outbox's dedupe key)."""
    ids = {e for n in nodes for e in n.get("envelope_ids", ())}
    if not ids:
        return 0
    envelopes = {
        e.envelope_id: e
        for e in OperatingEnvelope.objects.filter(
            microgrid_id=microgrid_pk, envelope_id__in=ids
        ).select_related("peer", "message")
    }
    found: dict[tuple[int, str, str], tuple[str, list[OperatingEnvelope]]] = {}

    def add(envelope: OperatingEnvelope, cause: str, text: str) -> None:
        key = (envelope.peer_id, envelope.group_id, cause)
        found.setdefault(key, (text, []))[1].append(envelope)

    breach_by_node = {
        b["node_id"]: b
        for b in breaches
        if not b.get("new") and "BREACH_OPERATING_ENVELOPE" in b.get("exceeded", ())
    }
    for node in nodes:
        mine = [envelopes[e] for e in node.get("envelope_ids", ()) if e in envelopes]
        load = node.get("uncontrolled_load_kw") or 0.0
        for envelope in mine:
            if load > envelope.capacity_kw + COMPLIANCE_MARGIN_KW:
                add(
                    envelope,
                    f"uncontrolled:{envelope.envelope_id}",
                    f"Cannot comply: the uncontrolled load of node {node['node_id']} alone is "
                    f"{load:g} kW, above the {envelope.capacity_kw:g} kW of the forecast",
                )
        breach = breach_by_node.get(node["node_id"])
        if breach is not None:
            for envelope in mine:
                if breach["measured_kw"] > envelope.capacity_kw + COMPLIANCE_MARGIN_KW:
                    add(
                        envelope,
                        f"breach:{breach['breach_id']}",
                        f"Cannot comply: node {node['node_id']} has measured "
                        f"{breach['measured_kw']:g} kW above the {envelope.capacity_kw:g} kW of "
                        "the forecast for more than one cycle",
                    )
    sent = 0
    with transaction.atomic():
        for (_peer, group_id, cause), (text, rows) in sorted(found.items()):
            rows.sort(key=lambda e: e.number)
            peer = rows[0].peer
            dedupe = f"compliance:{microgrid_pk}:{group_id}:{cause}"[:200]
            row = outbound_enqueue(
                peer=peer,
                message_type=OutboundType.GROUP_CAPACITY_COMPLIANCE_ERROR,
                # GroupCapacityComplianceError has no group field: the text names it.
                body={
                    "message": f"Group {group_id}: {text}",
                    "forecasted_blocks": [_block_of(e) for e in rows],
                },
                group_id=group_id,
                # The forecast it refers to (OSCP: the X-Correlation-ID names it).
                correlation_id=rows[0].message.request_id,
                dedupe_key=dedupe,
                now=at,
            )
            sent += row is not None
    return sent


def on_cycle_completed(sender, **kwargs) -> None:
    """The `cycle_completed` receiver: a failure is logged, never raised into the cycle."""
    try:
        compliance_check(**kwargs)
    except Exception:
        log.exception("OSCP compliance check after cycle %s failed", kwargs.get("cycle_id"))
