"""The Manage topology editor: stage edits in a form, save them together.

GET renders the saved topology as editable rows with the version it was
loaded at (hidden `base_version`). POST turns the rows into nodes and assets
(`forms.staged_topology`) and calls `topology_replace`, the same service as
the API: on success it redirects to the topology view; on a validation error
or a version conflict it re-renders the operator's staged rows with every
error beside the row it concerns, and nothing is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.pages import manage_view
from microgrid.common.roles import WRITERS
from microgrid.topology import forms as editor_forms
from microgrid.topology import selectors, services, tree
from microgrid.topology.card import microgrid_tabs
from microgrid.topology.diagram import render_topology_svg

NODE_COLUMNS = 10
ASSET_COLUMNS = 17
FIELD_LABELS = {
    "node_id": "Node ID",
    "parent_id": "Parent",
    "kind": "Kind",
    "name": "Name",
    "physical_rating_kw": "Physical rating (kW)",
    "voltage_v": "Voltage (V)",
    "phases": "Phases",
    "rating_a": "Rating per phase (A)",
    "max_unbalance_a": "Max unbalance (A)",
    "phase_rotation": "Phase rotation",
    "min_current_a": "Min current (A)",
    "max_current_a": "Max current (A)",
    "asset_id": "Asset ID",
    "max_power_kw": "Max power (kW)",
    "min_power_kw": "Min power (kW)",
    "priority": "Priority",
    "failsafe_power_kw": "Failsafe power (kW)",
    "station_id": "OCPP station",
    "evse_id": "EVSE",
    "rated_power_kw": "Rated power (kW)",
    "fallback_kw": "Fallback (kW)",
    "remove": "Remove",
}
# Which input a structural error points at.
ERROR_FIELD = {
    "TOPOLOGY_CYCLE": "parent_id",
    "TOPOLOGY_ORPHAN_NODE": "parent_id",
    "ASSET_NODE_NOT_FOUND": "node_id",
    "NODE_IN_USE": "remove",
}


@dataclass
class Row:
    form: Any
    kind: str  # "node" or "asset"
    ident: str
    depth: int = 0
    errors: list[ErrorItem] = field(default_factory=list)
    badges: list[tuple[str, str]] = field(default_factory=list)  # (css class, text)

    @property
    def anchor(self) -> str:
        return f"{self.kind}-row-{self.ident or self.form.prefix}"


@manage_view(WRITERS)
def topology_edit(request, microgrid_id: str):
    microgrid = selectors.microgrid_get(microgrid_id, user=request.user)
    if request.method in ("GET", "HEAD"):
        document = selectors.topology_document(microgrid)
        node_fs, asset_fs = editor_forms.editor_formsets(document=document)
        return _render(request, microgrid, document, node_fs, asset_fs, microgrid.topology_version)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])

    adding_rows = "add_rows" in request.POST
    data = editor_forms.with_more_rows(request.POST) if adding_rows else request.POST
    node_fs, asset_fs = editor_forms.editor_formsets(data=data)
    base_version = _parse_version(request.POST.get("base_version", ""))
    loaded = _loaded_topology(microgrid, base_version)
    if not (node_fs.is_valid() and asset_fs.is_valid()):
        # A tampered or truncated form: the rows cannot be trusted, so nothing is staged.
        problems = [*node_fs.non_form_errors(), *asset_fs.non_form_errors()]
        error = DomainError(
            "MALFORMED_REQUEST",
            "The editor form was incomplete: " + " ".join(problems),
            status=400,
        )
        return _render(request, microgrid, loaded, None, None, base_version, error=error)
    if adding_rows:
        return _render(request, microgrid, loaded, node_fs, asset_fs, base_version)

    staged = editor_forms.staged_topology(node_fs, asset_fs)
    try:
        services.topology_replace(
            microgrid=microgrid,
            base_version=base_version,
            nodes=staged.nodes,
            assets=staged.assets,
            user=request.user,
        )
    except DomainError as exc:
        return _render(request, microgrid, loaded, node_fs, asset_fs, base_version, error=exc)
    revision = selectors.revision_get(microgrid, microgrid.topology_version)
    messages.success(request, f"Topology saved as version {revision.version}: {revision.summary}.")
    return redirect("manage-topology", microgrid_id=microgrid.microgrid_id)


def _parse_version(raw: str) -> Any:
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else raw


def _loaded_topology(microgrid, base_version: Any) -> dict[str, Any]:
    """The topology the operator's form was loaded from, to mark what they changed."""
    if base_version == 0:
        return {"nodes": [], "assets": []}
    if isinstance(base_version, int):
        revision = selectors.revision_list(microgrid).filter(version=base_version).first()
        if revision is not None:
            return revision.snapshot
    return selectors.topology_document(microgrid)


def _render(
    request,
    microgrid,
    loaded: dict[str, Any],
    node_fs,
    asset_fs,
    base_version: Any,
    *,
    error: DomainError | None = None,
):
    saved = selectors.topology_document(microgrid)
    conflict = error is not None and error.code == "TOPOLOGY_VERSION_CONFLICT"
    node_rows = _node_rows(node_fs, loaded) if node_fs is not None else []
    asset_rows = _asset_rows(asset_fs, loaded) if asset_fs is not None else []
    errors = error.errors if error is not None else []
    if error is not None and not errors and not conflict:
        errors = [ErrorItem(error.code, error.message, field=error.details.get("field"))]
    _attach_errors(errors, node_rows, asset_rows)
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "topology"),
        "title": "Edit topology",
        "base_version": base_version,
        "node_fs": node_fs,
        "asset_fs": asset_fs,
        "node_rows": node_rows,
        "asset_rows": asset_rows,
        "node_columns": NODE_COLUMNS,
        "asset_columns": ASSET_COLUMNS,
        "error": None if conflict else error,
        "errors": [_summary_item(e, node_rows, asset_rows) for e in errors],
        "conflict": _conflict(microgrid, error) if conflict else None,
        "staged_count": sum(bool(r.badges) for r in node_rows + asset_rows),
        "saved": saved,
        "saved_diagram": render_topology_svg(saved["nodes"], saved["assets"]),
    }
    status = error.status if error is not None else 200
    return render(request, "manage/topology_edit.html", context, status=status)


def _node_rows(formset, loaded: dict[str, Any]) -> list[Row]:
    saved = {n["node_id"]: n for n in loaded.get("nodes", [])}
    depths = tree.depths((n["node_id"], n.get("parent_id")) for n in loaded.get("nodes", []))
    rows = []
    for form in formset.forms:
        data = _row_data(form)
        ident = data.get("node_id", "")
        row = Row(form, "node", ident, depth=depths.get(ident, 0) if form.is_loaded_row() else 0)
        if form.is_bound and not editor_forms.is_blank(data, editor_forms.NODE_CONTENT):
            _mark_changes(
                row,
                data,
                saved.get(ident) if form.is_loaded_row() else None,
                editor_forms.node_row_changes(data, saved.get(ident)),
                move_field="parent_id",
            )
        _label_inputs(form, ident or "new Microgrid Node")
        rows.append(row)
    return rows


def _asset_rows(formset, loaded: dict[str, Any]) -> list[Row]:
    saved = {a["asset_id"]: a for a in loaded.get("assets", [])}
    rows = []
    for form in formset.forms:
        data = _row_data(form)
        ident = data.get("asset_id", "")
        row = Row(form, "asset", ident)
        if form.is_bound and not editor_forms.is_blank(data, editor_forms.ASSET_CONTENT):
            _mark_changes(
                row,
                data,
                saved.get(ident) if form.is_loaded_row() else None,
                editor_forms.asset_row_changes(data, saved.get(ident)),
                move_field="node_id",
            )
        _label_inputs(form, ident or "new asset")
        rows.append(row)
    return rows


def _row_data(form) -> dict[str, Any]:
    if form.is_bound:
        return getattr(form, "cleaned_data", None) or {}
    return {name: form.initial.get(name, "") for name in form.fields}


def _mark_changes(row: Row, data, saved, changes: list[str], *, move_field: str) -> None:
    if data.get("remove"):
        row.badges.append(("badge-bad", "to remove"))
        return
    if saved is None:
        row.badges.append(("badge-info", "new"))
        return
    if move_field in changes:
        row.badges.append(("badge-warn", f"moved from {saved.get(move_field) or 'none'}"))
    if any(name != move_field for name in changes):
        row.badges.append(("badge-warn", "edited"))
    for name in changes:
        _add_class(row.form, name, "changed")


def _label_inputs(form, ident: str) -> None:
    for name, label in FIELD_LABELS.items():
        if name in form.fields:
            text = f"Remove {ident}" if name == "remove" else f"{label} of {ident}"
            form.fields[name].widget.attrs["aria-label"] = text


def _add_class(form, name: str, css: str) -> None:
    if name in form.fields:
        attrs = form.fields[name].widget.attrs
        attrs["class"] = f"{attrs.get('class', '')} {css}".strip()


def _attach_errors(errors: list[ErrorItem], node_rows: list[Row], asset_rows: list[Row]) -> None:
    """Each error goes beside every row it concerns, its field marked invalid."""
    for error in errors:
        for row, field_name in _targets(error, node_rows, asset_rows):
            row.errors.append(error)
            if field_name and field_name in row.form.fields:
                _add_class(row.form, field_name, "invalid")
                row.form.fields[field_name].widget.attrs["aria-invalid"] = "true"


def _targets(error: ErrorItem, node_rows: list[Row], asset_rows: list[Row]):
    details = error.details or {}
    if error.asset_id is not None:
        field_name = error.field or ERROR_FIELD.get(error.code) or "asset_id"
        return [(r, field_name) for r in asset_rows if r.ident == error.asset_id]
    if error.code == "TOPOLOGY_CYCLE":
        on_cycle = set(details.get("node_ids", []))
        return [(r, "parent_id") for r in node_rows if r.ident in on_cycle]
    if error.code == "TOPOLOGY_ROOT_INVALID":
        parented = set(details.get("grid_connections_with_parent", []))
        roots = set(details.get("roots", []))
        many_roots = len(roots) > 1
        return [
            (r, "parent_id" if r.ident in parented else "kind")
            for r in node_rows
            if r.ident in parented or (many_roots and r.ident in roots)
        ]
    if error.node_id is not None:
        field_name = error.field or ERROR_FIELD.get(error.code) or "node_id"
        return [(r, field_name) for r in node_rows if r.ident == error.node_id]
    if error.code == "FIELD_INVALID" and error.field:
        return [(r, error.field) for r in _unnamed_rows_for(error.field, node_rows, asset_rows)]
    return []


def _unnamed_rows_for(field_name: str, node_rows: list[Row], asset_rows: list[Row]) -> list[Row]:
    """The validator cannot name a row that has no id: its errors go to the staged rows
    without an id that have that field, preferring those where it is empty."""
    candidates = []
    for rows, content in (
        (node_rows, editor_forms.NODE_CONTENT),
        (asset_rows, editor_forms.ASSET_CONTENT),
    ):
        for r in rows:
            data = _row_data(r.form)
            if (
                not r.ident
                and r.form.is_bound
                and field_name in r.form.fields
                and not data.get("remove")
                and not editor_forms.is_blank(data, content)
            ):
                candidates.append(r)
    empty = [r for r in candidates if not _row_data(r.form).get(field_name)]
    return empty or candidates


def _summary_item(error: ErrorItem, node_rows: list[Row], asset_rows: list[Row]) -> dict:
    if error.asset_id is not None:
        target, rows = f"Asset {error.asset_id}", asset_rows
        anchor = next((r.anchor for r in rows if r.ident == error.asset_id), None)
    elif error.code == "TOPOLOGY_CYCLE" and error.details.get("node_ids"):
        # The message names every node on the cycle: the link goes to the first, unrepeated.
        target = f"Microgrid Node {error.details['node_ids'][0]}"
        anchor = next((r.anchor for r in node_rows if r.ident == error.node_id), None)
    elif error.node_id is not None:
        target, rows = f"Microgrid Node {error.node_id}", node_rows
        anchor = next((r.anchor for r in rows if r.ident == error.node_id), None)
    else:
        target = "Topology" if error.code.startswith("TOPOLOGY") else None
        anchor = None
    return {
        "error": error,
        "target": target,
        "anchor": anchor,
        "field": FIELD_LABELS.get(error.field or "", error.field),
    }


def _conflict(microgrid, error: DomainError) -> dict[str, Any]:
    details = error.details
    base = details.get("base_version")
    newer = []
    if isinstance(base, int):
        newer = [
            {
                "version": r.version,
                "created_at": r.created_at,
                "created_by": r.created_by.get_username() if r.created_by else None,
                "summary": r.summary,
            }
            for r in selectors.revision_list(microgrid).filter(version__gt=base)[:10]
        ]
    return {
        "base_version": base,
        "current_version": details.get("current_version"),
        "updated_by": details.get("updated_by"),
        "updated_at": parse_datetime(details["updated_at"]) if details.get("updated_at") else None,
        "revisions": newer,
        "message": error.message,
        "code": error.code,
    }
