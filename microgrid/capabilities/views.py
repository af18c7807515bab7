"""The Manage capabilities page: bindings, the latest status per scope, the event history.

Read-only: binding, release and transfer are support actions (API and admin).
"""

from __future__ import annotations

from django.shortcuts import render
from django.utils import timezone

from microgrid.capabilities import selectors
from microgrid.capabilities.scopes import Scope
from microgrid.common.pages import manage_view
from microgrid.common.roles import SUPPORT, has_any_role
from microgrid.topology.card import microgrid_tabs
from microgrid.topology.selectors import microgrid_get


@manage_view()
def capabilities_page(request, microgrid_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    now = timezone.now()
    views, facts = selectors.binding_views(microgrid, now=now)
    binding_filter = request.GET.get("binding", "").strip() or None
    events, total = selectors.event_history(microgrid, binding_id=binding_filter)
    event_rows = [
        {"event": e, "scope_label": Scope.of(e.binding).label(facts.names)} for e in events
    ]
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "capabilities"),
        "active_views": [v for v in views if v.binding.active],
        "views": views,
        "event_rows": event_rows,
        "event_total": total,
        "binding_filter": binding_filter,
        "stale_after_s": microgrid.telemetry_stale_after_s,
        "is_support": has_any_role(request.user, {SUPPORT}),
    }
    return render(request, "manage/capabilities.html", context)
