"""Manage pages of the legacy circuits: the only pages that say "circuit" (under /manage/legacy/)."""

from __future__ import annotations

from django.shortcuts import redirect, render

from legacy_circuit import selectors
from legacy_circuit.choices import ResolutionFailure
from legacy_circuit.models import LegacyCircuit
from microgrid.common.errors import DomainError
from microgrid.common.pages import manage_view
from microgrid.topology.models import Microgrid

RECENT_USAGE_ROWS = 50


@manage_view()
def legacy_index(request):
    return redirect("legacy-circuits")


@manage_view()
def circuit_list_page(request):
    rows = selectors.circuit_rows(user=request.user)
    context = {
        "nav": "circuits",
        "rows": rows,
        "unresolvable": sum(1 for r in rows if r.failure),
        "ambiguous": sum(1 for r in rows if r.failure == ResolutionFailure.AMBIGUOUS),
    }
    return render(request, "legacy/circuits.html", context)


@manage_view()
def alias_usage_page(request):
    params = {k: v for k, v in request.GET.items() if k in ("circuit_id", "client", "since") and v}
    filter_error = None
    try:
        report = selectors.usage_report(
            {**params, "limit": str(RECENT_USAGE_ROWS)}, user=request.user
        )
    except DomainError as exc:
        filter_error = exc
        report = selectors.usage_report({"limit": str(RECENT_USAGE_ROWS)}, user=request.user)
    # Times on the depot's clock (spec 7): a call's microgrid's depot, else its circuit's
    # depot, else UTC (a call that named no known circuit). Two queries.
    mg_zones = dict(
        Microgrid.objects.filter(
            microgrid_id__in={r["microgrid_id"] for r in report["usage"] if r["microgrid_id"]}
        ).values_list("microgrid_id", "depot__timezone")
    )
    circuit_ids = {r["circuit_id"] for r in (*report["usage"], *report["summary"])}
    circuit_zones = dict(
        LegacyCircuit.objects.filter(circuit_id__in=circuit_ids, depot__isnull=False).values_list(
            "circuit_id", "depot__timezone"
        )
    )
    for row in report["usage"]:
        row["zone"] = mg_zones.get(row["microgrid_id"]) or circuit_zones.get(row["circuit_id"])
    for row in report["summary"]:
        row["zone"] = circuit_zones.get(row["circuit_id"])
    context = {
        "nav": "usage",
        "report": report,
        "filters": params,
        "filter_error": filter_error,
        "recent_rows": RECENT_USAGE_ROWS,
    }
    return render(request, "legacy/alias_usage.html", context)
