"""Manage pages for Node Limits and the Microgrid limit: list, create, edit, delete.

Views parse the form into the API's fields and call the same services; a
refusal re-renders the form with the codes and messages next to the fields
they name (node and field), and nothing is saved.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from microgrid.common.errors import DomainError
from microgrid.common.filters import query_at
from microgrid.common.pages import manage_view
from microgrid.common.roles import WRITERS
from microgrid.limits import selectors, services
from microgrid.limits.api.serializers import policy_input
from microgrid.limits.choices import ConstraintSource, LimitScope, LimitSource
from microgrid.limits.models import LimitPolicy, ScheduleActivation
from microgrid.limits.schedules import DAYS, is_active
from microgrid.limits.validation import PolicySpec
from microgrid.topology.card import microgrid_tabs
from microgrid.topology.choices import NodeKind
from microgrid.topology.selectors import microgrid_get, node_rows
from microgrid.topology.tree import depths, root_id

# Where a finding is shown on the form: its `field` (prefix stripped) -> form field.
FORM_FIELDS = {
    "scope": "scope",
    "node_id": "node_id",
    "limit_kw": "limit_kw",
    "limit_a": "limit_a",
    "schedule": "schedule",
    "schedule.days": "days",
    "schedule.start": "start",
    "schedule.end": "end",
    "source": "source",
}
_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def format_kw(value: float | None) -> str:
    """A kW value as stored (at most 3 decimals), without trailing zeros."""
    if value is None:
        return "—"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def form_data(post) -> dict[str, Any]:
    """The Manage form as the API's fields; what cannot be read is passed on for the service to refuse."""
    data: dict[str, Any] = {}
    scope = post.get("scope", "").strip()
    data["scope"] = scope or None
    node_id = post.get("node_id", "").strip()
    if scope != LimitScope.MICROGRID:
        data["node_id"] = node_id or None
    text = post.get("limit_kw", "").strip()
    if text:
        data["limit_kw"] = float(text) if _NUMBER.match(text) else text
    text = post.get("limit_a", "").strip()
    if text:
        data["limit_a"] = float(text) if _NUMBER.match(text) else text
    days = post.getlist("days")
    start, end = post.get("start", "").strip(), post.get("end", "").strip()
    if days or start or end:
        schedule: dict[str, Any] = {"days": days}
        if start:
            schedule["start"] = start
        if end:
            schedule["end"] = end
        data["schedule"] = schedule
    source = post.get("source", "").strip()
    if source:
        data["source"] = source
    return data


def form_values(data: dict[str, Any] | None = None, spec: PolicySpec | None = None) -> dict:
    """What the form's inputs show: the values just posted, or a stored policy's."""
    if spec is not None:
        return {
            "scope": spec.scope,
            "node_id": spec.node_id or "",
            "limit_kw": format_kw(spec.limit_kw),
            "limit_a": format_kw(spec.limit_a) if spec.limit_a is not None else "",
            "days": list(spec.schedule.days) if spec.schedule else [],
            "start": spec.schedule.start_text if spec.schedule else "",
            "end": spec.schedule.end_text if spec.schedule else "",
            "source": spec.source,
        }
    data = data or {}
    schedule = data.get("schedule") or {}
    limit = data.get("limit_kw", "")
    limit_a = data.get("limit_a", "")
    return {
        "scope": data.get("scope") or LimitScope.NODE,
        "node_id": data.get("node_id") or "",
        "limit_kw": format_kw(limit) if isinstance(limit, float) else limit,
        "limit_a": format_kw(limit_a) if isinstance(limit_a, float) else limit_a,
        "days": schedule.get("days", []),
        "start": schedule.get("start", ""),
        "end": schedule.get("end", ""),
        "source": data.get("source") or LimitSource.MANUAL,
    }


def form_errors(exc: DomainError) -> tuple[dict[str, list[dict]], list[dict]]:
    """(findings per form field, every finding) of a refusal."""
    items = [e.to_dict() for e in exc.errors] or [
        {
            "code": exc.code,
            "message": exc.message,
            "node_id": exc.details.get("node_id"),
            "field": exc.details.get("field")
            or ("schedule" if exc.code == "LIMIT_ALREADY_EXISTS" else None),
        }
    ]
    by_field: dict[str, list[dict]] = {}
    for item in items:
        name = FORM_FIELDS.get(item.get("field") or "", "other")
        by_field.setdefault(name, []).append(item)
    return by_field, items


def _node_options(nodes: list[dict]) -> list[dict]:
    depth = depths((n["node_id"], n["parent_id"]) for n in nodes)
    out = []
    for node in nodes:
        out.append(
            {
                "node_id": node["node_id"],
                "label": f"{'· ' * depth[node['node_id']]}{node['name']} ({node['node_id']}) · "
                f"rating {format_kw(node['physical_rating_kw'])} kW",
            }
        )
    return out


def _page_context(microgrid, at, *, form: dict, errors=None, editing: LimitPolicy | None = None):
    nodes = node_rows(microgrid)
    policies = selectors.policy_list(microgrid, nodes=nodes)
    now_limits = selectors.limits_for(microgrid, at, nodes=nodes, policies=policies)
    base_limits = selectors.limits_for(
        microgrid, at, nodes=nodes, policies=policies, schedules=False
    )
    zone = selectors.depot_zone(microgrid)
    names = {n["node_id"]: n for n in nodes}
    root = root_id(nodes)
    depth = depths((n["node_id"], n["parent_id"]) for n in nodes)
    limit_rows = []
    for node in nodes:
        now, base = now_limits[node["node_id"]], base_limits[node["node_id"]]
        limit_rows.append(
            {
                "node": node,
                "kind_label": NodeKind(node["kind"]).label
                if node["kind"] in NodeKind.values
                else node["kind"],
                "indent": depth[node["node_id"]] * 20,
                "rating": format_kw(node["physical_rating_kw"]),
                "rating_a": format_kw(node["rating_a"]) if node.get("rating_a") else None,
                "now": now,
                "now_a": format_kw(now.current.limit_a) if now.current else None,
                "now_kw": format_kw(now.effective_limit_kw),
                "now_label": ConstraintSource(now.limit_source).label
                if now.limit_source in ConstraintSource.values
                else now.limit_source,
                "base": base,
                "base_kw": format_kw(base.effective_limit_kw),
            }
        )
    active_tou = {
        p.target: p for p in policies if p.schedule is not None and is_active(p.schedule, at, zone)
    }
    policy_rows = []
    for p in policies:
        node = names.get(p.node_id) if p.node_id else None
        if p.schedule is not None:
            status = "active" if active_tou.get(p.target) is p else "inactive"
        else:
            status = "overridden" if p.target in active_tou else "applies"
        policy_rows.append(
            {
                "policy": p,
                "kind": "Node Limit" if p.scope == LimitScope.NODE else "Microgrid limit",
                "target_name": node["name"] if node else None,
                "limit": format_kw(p.limit_kw),
                "limit_a": format_kw(p.limit_a) if p.limit_a is not None else None,
                "status": status,
                "overridden_by": active_tou.get(p.target),
                "source_label": LimitSource(p.source).label,
            }
        )
    by_field, all_errors = form_errors(errors) if errors else ({}, [])
    return {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "limits"),
        "at": at,
        "at_local": at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"),
        "zone": zone.key,
        "limit_rows": limit_rows,
        "root_id": root,
        "root_name": names[root]["name"] if root else None,
        "policy_rows": policy_rows,
        "node_options": _node_options(nodes),
        "days": DAYS,
        "scopes": LimitScope.choices,
        "sources": LimitSource.choices,
        "form": form,
        "field_errors": by_field,
        "errors": all_errors,
        "error": errors,
        "editing": editing,
        "history": _history(editing) if editing else [],
        "activations": [
            {"row": a, "local": a.at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")}
            for a in ScheduleActivation.objects.filter(microgrid=microgrid).order_by("-at", "-id")[
                :10
            ]
        ]
        if editing is None
        else [],
    }


def _history(policy: LimitPolicy) -> list[dict]:
    rows = policy.history.select_related("history_user").order_by("-history_date", "-history_id")[
        :20
    ]
    out = []
    for h in rows:
        schedule = h.instance.schedule
        out.append(
            {
                "when": h.history_date,
                "who": h.history_user.get_username() if h.history_user else None,
                "type": {"+": "created", "~": "changed", "-": "deleted"}.get(
                    h.history_type, h.history_type
                ),
                "limit": format_kw(h.limit_kw),
                "schedule": schedule.describe() if schedule else "not scheduled",
                "source": h.source,
            }
        )
    return out


def _saved_message(policy: LimitPolicy, verb: str) -> str:
    spec = selectors.spec_of(policy)
    kind = "Node Limit" if spec.scope == LimitScope.NODE else "Microgrid limit"
    target = f" on Microgrid Node {spec.node_id}" if spec.node_id else ""
    schedule = f", {spec.schedule.describe()}" if spec.schedule else ""
    return f"{verb} {kind} {spec.policy_id}{target}: {format_kw(spec.limit_kw)} kW{schedule}."


def _at(request):
    """The instant the page shows (`?at=`, default now) and a bad `at` as a refusal to show."""
    try:
        return query_at(request.GET), None
    except DomainError as exc:
        return timezone.now(), exc


@manage_view()
def limits_page(request, microgrid_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    if request.method == "POST":
        data = form_data(request.POST)
        try:
            values = policy_input(data)
            policy = services.limit_policy_create(microgrid=microgrid, **values, user=request.user)
        except DomainError as exc:
            if exc.status == 404:
                raise
            context = _page_context(microgrid, timezone.now(), form=form_values(data), errors=exc)
            return render(request, "manage/limits.html", context, status=exc.status)
        messages.success(request, _saved_message(policy, "Saved"))
        return redirect(f"/manage/microgrids/{microgrid.microgrid_id}/limits/")
    at, bad_at = _at(request)
    context = _page_context(microgrid, at, form=form_values())
    context["at_given"] = "at" in request.GET and bad_at is None
    context["bad_at"] = bad_at
    return render(request, "manage/limits.html", context)


@manage_view(WRITERS)
def limit_edit_page(request, microgrid_id: str, policy_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    policy = selectors.policy_get(microgrid, policy_id)
    if request.method == "POST":
        data = form_data(request.POST)
        try:
            values = policy_input(data, policy_id=policy.policy_id)
            policy = services.limit_policy_update(policy=policy, **values, user=request.user)
        except DomainError as exc:
            if exc.status == 404:
                raise
            context = _page_context(
                microgrid, timezone.now(), form=form_values(data), errors=exc, editing=policy
            )
            return render(request, "manage/limit_edit.html", context, status=exc.status)
        messages.success(request, _saved_message(policy, "Saved"))
        return redirect(f"/manage/microgrids/{microgrid.microgrid_id}/limits/")
    context = _page_context(
        microgrid, timezone.now(), form=form_values(spec=selectors.spec_of(policy)), editing=policy
    )
    return render(request, "manage/limit_edit.html", context)


@require_http_methods(["GET", "POST"])
@manage_view(WRITERS)
def limit_delete(request, microgrid_id: str, policy_id: str):
    """GET: "Delete LP-1?" with what it limits (the list's Delete leads here: nothing is
    deleted on one click); POST: delete it."""
    microgrid = microgrid_get(microgrid_id, user=request.user)
    policy = selectors.policy_get(microgrid, policy_id)
    if request.method == "GET":
        return render(
            request,
            "manage/limit_delete.html",
            {
                "microgrid": microgrid,
                "tabs": microgrid_tabs(microgrid, "limits"),
                "policy": policy,
                "description": _saved_message(policy, "Delete"),
            },
        )
    message = _saved_message(policy, "Deleted")
    services.limit_policy_delete(policy=policy, user=request.user)
    messages.success(request, message)
    return redirect(f"/manage/microgrids/{microgrid.microgrid_id}/limits/")


def limits_page_section(microgrid) -> dict[str, Any]:
    """The card page's limits block (the same figures as the API card's `limits`)."""
    card = selectors.limits_card(microgrid)
    source = card["limit_source"]
    return {
        **card,
        "microgrid_id": microgrid.microgrid_id,
        "limit": format_kw(card["effective_limit_kw"]),
        "source_label": ConstraintSource(source).label
        if source in ConstraintSource.values
        else source,
    }
