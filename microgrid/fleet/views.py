"""The fleet overview: the Manage home page."""

from __future__ import annotations

from urllib.parse import urlencode

from django.shortcuts import render

from microgrid.common.errors import DomainError
from microgrid.common.pages import manage_view
from microgrid.fleet import selectors
from microgrid.fleet.choices import FleetState
from microgrid.fleet.filters import SORT_LABELS, MicrogridFleetFilter
from microgrid.topology.access import sees_every_microgrid

PAGE_SIZES = (25, 50, 100, 200)


def _url(params, **changes) -> str:
    query = params.copy()
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        elif isinstance(value, list):
            query.setlist(key, value)
        else:
            query[key] = str(value)
    encoded = query.urlencode()
    return f"?{encoded}" if encoded else "?"


@manage_view()
def fleet_overview(request):
    params = request.GET
    error = None
    try:
        page = selectors.fleet_page(params, user=request.user)
    except DomainError as exc:
        error = exc
        page = selectors.fleet_page({}, user=request.user)
    selected_states = params.getlist("state") if error is None else []
    states = [
        {
            "value": value,
            "label": label,
            "count": page.counts[value],
            "url": _url(params, state=[value], page=None),
            "active": selected_states == [value],
        }
        for value, label in FleetState.choices
    ]
    rows = [
        {
            "m": m,
            "data": selectors.fleet_row(m),
            "headroom": selectors.headroom_class(
                m.fleet_state.root_load_pct if hasattr(m, "fleet_state") else None
            ),
        }
        for m in page.rows
    ]
    context = {
        "error": error,
        "page": page,
        "rows": rows,
        "states": states,
        "all_url": _url(params, state=None, page=None),
        "breaches_url": _url(params, breaches="open", page=None),
        "form": page.filterset.form if error is None else MicrogridFleetFilter({}).form,
        "sort_labels": SORT_LABELS.items(),
        "sort": params.get("sort", "microgrid_id") if error is None else "microgrid_id",
        "page_sizes": PAGE_SIZES,
        "prev_url": _url(params, page=page.page - 1) if page.page > 1 else None,
        "next_url": _url(params, page=page.page + 1) if page.page < page.pages else None,
        "first_row": (page.page - 1) * page.page_size + 1 if page.rows else 0,
        "last_row": (page.page - 1) * page.page_size + len(page.rows),
        "filtered": any(params.get(k) for k in ("q", "state", "source_mode", "breaches")),
        "sees_every": sees_every_microgrid(request.user),
        "api_url": "/api/microgrids/"
        + (f"?{urlencode(list(params.lists()), doseq=True)}" if params else ""),
    }
    return render(request, "manage/fleet.html", context, status=422 if error else 200)
