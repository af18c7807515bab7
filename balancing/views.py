"""Manage pages: cycles (list, detail, charts) and breaches."""

from __future__ import annotations

from django.shortcuts import render

from balancing import selectors
from balancing.charts import svg_series
from balancing.choices import CODE_LABELS, Outcome, SourceMode, TriggerType
from microgrid.common.errors import DomainError
from microgrid.common.pages import manage_view
from microgrid.topology.card import microgrid_tabs
from microgrid.topology.diagram import render_load_chart_svg
from microgrid.topology.selectors import microgrid_get


def _charts(microgrid, chart_range: str | None = None) -> dict:
    """Recent cycles by default; over 1 to 400 days, the 15-minute aggregates."""
    from django.utils import timezone

    days = selectors.CHART_RANGES.get(chart_range or "")
    if days:
        data = selectors.aggregate_series(microgrid, days=days, now=timezone.now())
    else:
        data = selectors.recent_series(microgrid)
    labels = data["labels"]
    node_charts = [
        {
            "node_id": node_id,
            "svg": render_load_chart_svg(
                svg_series(labels, s["load"], s["limit"]),
                title=f"{node_id}: load against effective limit",
                height=220,
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
                title=f"{node_id}: allocated against requested",
                height=200,
            ),
        }
        for node_id, s in data["groups"].items()
    ]
    return {
        "node_charts": node_charts,
        "group_charts": group_charts,
        "cycle_count": len(labels),
        "chart_range": chart_range if days else "",
        "chart_ranges": list(selectors.CHART_RANGES),
    }


@manage_view()
def cycle_list_page(request, microgrid_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    filter_error = None
    try:
        cycles = selectors.cycle_list(microgrid, params=request.GET, limit=100)
    except DomainError as exc:
        filter_error, cycles = exc, []
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "cycles"),
        "cycles": cycles,
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


@manage_view()
def rebalance_page(request, microgrid_id: str):
    """The Manage "Rebalance now" button: one cycle now, then its detail page."""
    from django.shortcuts import redirect

    from balancing.services import cycle_request, trigger_of

    microgrid = microgrid_get(microgrid_id, user=request.user)
    if request.method != "POST":
        return redirect(f"/manage/microgrids/{microgrid.microgrid_id}/cycles/")
    outcome = cycle_request(microgrid=microgrid, trigger=trigger_of("API"))
    return redirect(f"/manage/microgrids/{microgrid.microgrid_id}/cycles/{outcome.cycle.cycle_id}/")
