"""Manage pages: cycles (list, detail, charts) and breaches."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.html import format_html

from balancing import selectors
from balancing.charts import phase_load, session_energy, session_svg_series, svg_series
from balancing.choices import CODE_LABELS, Outcome, SourceMode, TriggerType
from microgrid.common.errors import DomainError
from microgrid.common.pages import manage_view
from microgrid.common.roles import WRITERS
from microgrid.topology.card import microgrid_tabs
from microgrid.topology.diagram import render_load_chart_svg
from microgrid.topology.selectors import microgrid_get, node_rows

CYCLES_PER_PAGE = 50


def _charts(microgrid, chart_range: str | None = None) -> dict:
    """Recent cycles by default; over 1 to 400 days, the 15-minute aggregates."""

    days = selectors.CHART_RANGES.get(chart_range or "")
    if days:
        data = selectors.aggregate_series(microgrid, days=days, now=timezone.now())
    else:
        data = selectors.recent_series(microgrid)
    labels = data["labels"]
    names = {n["node_id"]: n["name"] for n in node_rows(microgrid)}

    def title(node_id: str, what: str) -> str:
        name = names.get(node_id)
        return f"{name} ({node_id}): {what}" if name else f"{node_id}: {what}"

    node_charts = [
        {
            "node_id": node_id,
            "svg": render_load_chart_svg(
                svg_series(labels, s["load"], s["limit"]),
                title=title(node_id, "load against effective limit"),
                width=1100,
                height=260,
            ),
        }
        for node_id, s in data["nodes"].items()
    ]
    group_charts = [
        {
            "node_id": node_id,
            "svg": render_load_chart_svg(
                [
                    {
                        "label": "allocated kW",
                        "style": "area",
                        "points": list(zip(labels, s["allocated"], strict=True)),
                    },
                    {
                        "label": "requested kW",
                        "style": "line",
                        "points": list(zip(labels, s["requested"], strict=True)),
                    },
                ],
                title=title(node_id, "allocated against requested"),
                width=1100,
                height=240,
            ),
        }
        for node_id, s in data["groups"].items()
    ]
    return {
        "node_charts": node_charts,
        "group_charts": group_charts,
        **_session_chart(microgrid),
        "cycle_count": len(labels),
        "chart_range": chart_range if days else "",
        "chart_ranges": list(selectors.CHART_RANGES),
    }


def _session_chart(microgrid) -> dict:
    """Energy needed against delivered per session of the latest cycle (issue 20)."""
    doc = selectors.latest_cycle_document(microgrid)
    energy = session_energy((doc or {}).get("chargers", []))
    if not energy.asset_ids:
        return {"session_chart": None, "sessions_at_risk": 0}
    tz = _zone(microgrid)
    labels = [
        f"{asset_id} {datetime.fromisoformat(d).astimezone(tz):%H:%M}" if d else asset_id
        for asset_id, d in zip(energy.asset_ids, energy.departures, strict=True)
    ]
    return {
        "session_chart": render_load_chart_svg(
            session_svg_series(labels, energy),
            title=f"Cycle #{doc['seq']}: energy needed against delivered per session "
            "(charger, departure)",
            width=1100,
            height=260,
        ),
        "sessions_at_risk": sum(energy.at_risk),
        "session_rows": [
            {"label": label, "needed": n, "delivered": d, "at_risk": r}
            for label, n, d, r in zip(
                labels, energy.needed, energy.delivered, energy.at_risk, strict=True
            )
        ],
    }


def _zone(microgrid):
    try:
        return ZoneInfo(microgrid.depot.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _local_to_iso(value: str, tz) -> str:
    """A datetime-local input (the depot's clock, no offset) as an ISO time with its offset;
    anything else is passed on for the selector to judge."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.isoformat()


@manage_view()
def cycle_list_page(request, microgrid_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    tz = _zone(microgrid)
    params = {k: request.GET.get(k, "") for k in ("trigger", "outcome", "source_mode")}
    for name in ("since", "until"):
        if request.GET.get(name):
            params[name] = _local_to_iso(request.GET[name], tz)
    raw_page = request.GET.get("page", "1")
    page = int(raw_page) if raw_page.isascii() and raw_page.isdigit() and int(raw_page) else 1
    filter_error = None
    try:
        rows = selectors.cycle_list(
            microgrid,
            params=params,
            limit=CYCLES_PER_PAGE + 1,
            offset=(page - 1) * CYCLES_PER_PAGE,
        )
    except DomainError as exc:
        filter_error, rows = exc, []
    query = request.GET.copy()
    query.pop("page", None)
    base = query.urlencode()
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "cycles"),
        "cycles": rows[:CYCLES_PER_PAGE],
        "page": page,
        "prev_url": f"?{base}&page={page - 1}" if page > 1 else None,
        "next_url": f"?{base}&page={page + 1}" if len(rows) > CYCLES_PER_PAGE else None,
        "filters": request.GET,
        "filter_error": filter_error,
        "triggers": TriggerType.values,
        "outcomes": Outcome.values,
        "source_modes": SourceMode.values,
        "labels": CODE_LABELS,
        **_charts(microgrid, request.GET.get("range")),
    }
    return render(request, "manage/cycles.html", context)


@manage_view()
def cycle_detail_page(request, microgrid_id: str, cycle_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    cycle = selectors.cycle_get(microgrid, cycle_id)
    doc = selectors.cycle_document(cycle)
    fallback_inputs = {}
    for node in doc["nodes"]:
        for entry in node.get("fallback", []):
            fallback_inputs.setdefault(entry["asset_id"], entry)
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "cycles"),
        "cycle": cycle,
        "doc": doc,
        "fallback_inputs": sorted(fallback_inputs.values(), key=lambda e: e["asset_id"]),
        "labels": CODE_LABELS,
        "threshold_s": cycle.snapshot.get("engine", {}).get("threshold_s"),
        "highlight": (doc["scope"] or {}).get("node_id"),
        # the three phases' currents against each node's current limit (issue 19)
        "phase_load": phase_load(cycle.snapshot.get("engine"), doc),
    }
    return render(request, "manage/cycle_detail.html", context)


@manage_view()
def breach_list_page(request, microgrid_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    params = {"status": request.GET.get("status", "")}
    breaches = list(
        selectors.breach_list(
            microgrid,
            params=params if params["status"] in ("", "OPEN", "RESOLVED") else {"status": ""},
        )
    )
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "breaches"),
        "breaches": breaches,
        "status": params["status"],
        "labels": CODE_LABELS,
    }
    return render(request, "manage/breaches.html", context)


@manage_view()
def breach_detail_page(request, microgrid_id: str, breach_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    breach = selectors.breach_get(microgrid, breach_id)
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "breaches"),
        "breach": breach,
        "labels": CODE_LABELS,
    }
    return render(request, "manage/breach_detail.html", context)


@manage_view(roles=WRITERS)
def rebalance_page(request, microgrid_id: str):
    """The Manage "Rebalance now" button: one cycle now, recorded as a MANUAL trigger with the
    user, then back to the cycles list with the cycle's outcome and a link to it."""
    from balancing.services import cycle_request, trigger_of

    microgrid = microgrid_get(microgrid_id, user=request.user)
    back = f"/manage/microgrids/{microgrid.microgrid_id}/cycles/"
    if request.method != "POST":
        return redirect(back)
    try:
        outcome = cycle_request(
            microgrid=microgrid,
            trigger=trigger_of("MANUAL", user=request.user.get_username()),
        )
    except DomainError as exc:
        messages.error(request, f"Not rebalanced: {exc.message} ({exc.code})")
        return redirect(back)
    cycle = outcome.cycle
    messages.success(
        request,
        format_html(
            'Rebalanced: <a href="{}{}/" data-testid="rebalance-result">cycle #{}</a> '
            "finished {} ({}){}.",
            back,
            cycle.cycle_id,
            cycle.seq,
            cycle.outcome,
            CODE_LABELS.get(cycle.outcome, ""),
            " — a cycle already running served this request" if outcome.coalesced else "",
        ),
    )
    return redirect(back)
