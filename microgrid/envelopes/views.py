"""Manage pages for operating envelopes: the list (active, pending, history), one envelope's
detail with its source metadata and history, and the support-only withdraw action.

Everything the pages show comes from the same selectors as the API, so an
operator reads the envelope, its source and its audit trail here without
opening a raw OSCP payload.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from microgrid.common.errors import DomainError
from microgrid.common.pages import manage_view
from microgrid.common.roles import SUPPORT, SUPPORT_ONLY, user_roles
from microgrid.common.templatetags.clock import depot_time
from microgrid.envelopes import selectors, services
from microgrid.envelopes.api.serializers import withdraw_input
from microgrid.envelopes.choices import Enforcement, EnvelopeStatus, OutboundState, OutboundType
from microgrid.envelopes.filters import EnvelopeFilter
from microgrid.limits.selectors import depot_zone
from microgrid.topology.card import microgrid_tabs
from microgrid.topology.selectors import microgrid_get

PAGE_LIMIT = 500
STATUS_TONE = {
    EnvelopeStatus.ACTIVE: "ok",
    EnvelopeStatus.PENDING: "info",
    EnvelopeStatus.EXPIRED: "muted",
    EnvelopeStatus.WITHDRAWN: "warn",
    EnvelopeStatus.SUPERSEDED: "muted",
}
ENFORCEMENT_TONE = {
    Enforcement.ENFORCED: "ok",
    Enforcement.FALLBACK_STANDBY: "muted",
    Enforcement.REPLACED_BY_FALLBACK: "warn",
    Enforcement.OPTIMUM_SHOWN: "info",
    Enforcement.EXPORT_SHOWN: "info",
    Enforcement.NOT_ACTIVE: "muted",
}


def format_kw(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _local(value: str | datetime | None, zone, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """The depot's local time with its zone named, UTC on hover (what `{% depot_time %}`
    renders)."""
    return depot_time(value, getattr(zone, "key", None), fmt)


SHORT = "%Y-%m-%d %H:%M"


def _scope_text(scope: dict) -> str:
    return f"Microgrid Node {scope['node_id']}" if scope["type"] == "NODE" else "Microgrid"


def _row(doc: dict[str, Any], zone, legacy: dict) -> dict[str, Any]:
    """An envelope document with what the page shows beside it."""
    scope = doc["scope"]
    value = legacy.get((scope["type"], scope.get("node_id", "")))
    return {
        **doc,
        "scope_text": _scope_text(scope),
        "capacity_text": f"{format_kw(doc['capacity'])} {doc['unit']}",
        "capacity_kw_text": format_kw(doc["capacity_kw"]),
        "from_local": _local(doc["valid_from"], zone),
        "until_local": _local(doc["valid_until"], zone),
        "received_local": _local(doc["source"]["received_at"], zone),
        "from_short": _local(doc["valid_from"], zone, SHORT),
        "until_short": _local(doc["valid_until"], zone, SHORT),
        "received_short": _local(doc["source"]["received_at"], zone, SHORT),
        "status_tone": STATUS_TONE.get(doc["status"], "muted"),
        "status_label": EnvelopeStatus(doc["status"]).label,
        "enforcement_tone": ENFORCEMENT_TONE.get(doc["enforcement"], "muted"),
        "enforcement_label": Enforcement(doc["enforcement"]).label,
        "legacy": (
            {
                "id": value["circuit_id"],
                "available": format_kw(value["available_capacity_kw"]),
                "configured": format_kw(value["configured_capacity_kw"]),
                "agrees": value["available_capacity_kw"] == doc["capacity_kw"],
            }
            if value
            else None
        ),
    }


def _peer_rows(microgrid, now, zone) -> list[dict[str, Any]]:
    rows = []
    for binding in selectors.microgrid_bindings(microgrid):
        peer = binding.peer
        rows.append(
            {
                "peer": peer,
                "group_id": binding.group_id,
                "scope_text": _scope_text(binding.scope_dict()),
                "offline": peer.offline_at(now),
                "offline_mode_at": _local(peer.offline_mode_at, zone),
                "last_heartbeat": _local(peer.last_heartbeat_at, zone),
            }
        )
    return rows


OUTBOUND_TONE = {"SENT": "ok", "PENDING": "info", "FAILED": "bad", "EXPIRED": "warn"}


def _outbound_rows(microgrid, zone) -> list[dict[str, Any]]:
    return [
        {
            "peer": o.peer.name,
            "path": OutboundType(o.message_type).label,
            "message_type": o.message_type,
            "group_id": o.group_id,
            "state": o.state,
            "state_label": OutboundState(o.state).label,
            "tone": OUTBOUND_TONE.get(o.state, "muted"),
            "attempts": o.attempts,
            "last_status_code": o.last_status_code,
            "last_error": o.last_error,
            "created_local": _local(o.created_at, zone),
            "sent_local": _local(o.sent_at, zone) if o.sent_at else "—",
        }
        for o in selectors.microgrid_outbound(microgrid)
    ]


@manage_view()
def envelopes_page(request, microgrid_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    now = timezone.now()
    zone = depot_zone(microgrid)
    filter_error = None
    try:
        statuses = EnvelopeFilter({"status": request.GET.get("status", "")}).value("status", [])
    except DomainError as exc:
        filter_error, statuses = exc, []
    rows = selectors.envelope_list(microgrid, at=now, limit=PAGE_LIMIT)
    legacy = selectors.legacy_followers(microgrid) if rows else {}
    docs = [_row(selectors.envelope_dict(e, at=now, legacy=legacy), zone, legacy) for e in rows]
    current = {EnvelopeStatus.ACTIVE, EnvelopeStatus.PENDING}
    active = [d for d in docs if d["status"] == EnvelopeStatus.ACTIVE]
    pending = sorted(
        (d for d in docs if d["status"] == EnvelopeStatus.PENDING),
        key=lambda d: (d["valid_from"], selectors.envelope_number(d["envelope_id"])),
    )
    history = [d for d in docs if d["status"] not in current]
    if statuses:
        history = [d for d in docs if d["status"] in statuses]
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "envelopes"),
        "now_local": _local(now, zone),
        "zone": zone.key,
        "active": active,
        "pending": pending,
        "history": history,
        "statuses": EnvelopeStatus.values,
        "selected": statuses,
        "filter_error": filter_error,
        "peers": _peer_rows(microgrid, now, zone),
        "outbound": _outbound_rows(microgrid, zone),
        "truncated": len(rows) == PAGE_LIMIT,
        "limit": PAGE_LIMIT,
    }
    return render(request, "manage/envelopes.html", context)


@manage_view()
def envelope_detail_page(request, microgrid_id: str, envelope_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    try:
        envelope = selectors.envelope_get(microgrid, envelope_id)
    except DomainError as exc:
        context = {
            "microgrid": microgrid,
            "tabs": microgrid_tabs(microgrid, "envelopes"),
            "error": exc,
        }
        return render(request, "manage/envelope_not_found.html", context, status=404)
    now = timezone.now()
    zone = depot_zone(microgrid)
    legacy = selectors.legacy_followers(microgrid)
    doc = selectors.envelope_detail(envelope, at=now, legacy=legacy)
    try:
        body = json.dumps(json.loads(envelope.message.body), indent=2, sort_keys=False)
    except ValueError:
        body = envelope.message.body
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "envelopes"),
        "e": _row(doc, zone, legacy),
        "timeline": _timeline(doc, zone),
        "peer": envelope.peer,
        "peer_offline_mode_at": _local(envelope.peer.offline_mode_at, zone),
        "raw_body": body,
        "zone": zone.key,
        "can_withdraw": SUPPORT in user_roles(request.user)
        and doc["status"] in services.WITHDRAWABLE,
    }
    return render(request, "manage/envelope_detail.html", context)


def _timeline(doc: dict[str, Any], zone) -> list[dict[str, Any]]:
    """Stored changes and recorded window transitions, oldest first."""
    entries = [
        {
            "at": h["at"],
            "change": h["change"],
            # Receipts and supersedes come from a peer's message; withdrawals name their user.
            "by": h["by"]
            or ("OSCP peer" if h["change"] in ("RECEIVED", "SUPERSEDED") else "system"),
            "state": h["state"],
            "superseded_by": h["superseded_by"],
            "note": h["reason"] or "",
        }
        for h in doc["history"]
    ]
    for t in doc["transitions"]:
        entries.append(
            {
                "at": t["at"],
                "change": t["transition"],
                "by": "beat task",
                "state": None,
                "superseded_by": None,
                "note": "its window started"
                if t["transition"] == "ACTIVATED"
                else "its window ended",
            }
        )
    entries.sort(key=lambda entry: entry["at"])
    return [{**entry, "local": _local(entry["at"], zone)} for entry in entries]


@require_POST
@manage_view(SUPPORT_ONLY)
def envelope_withdraw_page(request, microgrid_id: str, envelope_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    envelope = selectors.envelope_get(microgrid, envelope_id)
    try:
        values = withdraw_input({"reason": request.POST.get("reason", "")})
        services.envelope_withdraw(envelope=envelope, user=request.user, **values)
    except DomainError as exc:
        messages.error(request, f"{exc.code}: {exc.message}")
    else:
        messages.success(request, f"Operating envelope {envelope.envelope_id} withdrawn.")
    return redirect(f"/manage/microgrids/{microgrid.microgrid_id}/envelopes/{envelope_id}/")


def envelopes_page_section(microgrid) -> dict[str, Any]:
    """The card page's block: the envelopes ACTIVE now (the API card's `active_envelopes`)."""
    zone = depot_zone(microgrid)
    rows = selectors.active_envelopes_card(microgrid)
    return {
        "microgrid_id": microgrid.microgrid_id,
        "envelopes": [
            {
                **r,
                "scope_text": _scope_text(r["scope"]),
                "kw": format_kw(r["capacity_kw"]),
                "until_local": _local(r["valid_until"], zone),
                "enforcement_tone": ENFORCEMENT_TONE.get(r["enforcement"], "muted"),
            }
            for r in rows
        ],
    }
