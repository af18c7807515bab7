"""Manage pages of the legacy circuits: the only pages that say "circuit" (under /manage/legacy/)."""

from __future__ import annotations

from datetime import datetime

from django.shortcuts import redirect, render

from legacy_circuit import selectors
from legacy_circuit.choices import ResolutionFailure
from microgrid.common.errors import DomainError
from microgrid.common.pages import manage_view

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
    for row in report["usage"]:
        row["at_text"] = _when(row["at"])
    for row in report["summary"]:
        row["first_text"] = _when(row["first_used_at"])
        row["last_text"] = _when(row["last_used_at"])
    context = {
        "nav": "usage",
        "report": report,
        "filters": params,
        "filter_error": filter_error,
        "recent_rows": RECENT_USAGE_ROWS,
    }
    return render(request, "legacy/alias_usage.html", context)


def _when(iso: str | None) -> str:
    """An ISO timestamp (UTC) as the pages show times: to the second."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S") if iso else ""
