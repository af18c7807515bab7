"""The Manage topology editor's forms and their mapping to a topology save.

One formset row per Microgrid Node and one per asset, plus blank rows to add
more. The forms only carry text: every rule (ids, kinds, numbers, structure)
is judged by the one validator behind `topology_replace`, so the editor, the
API, admin and the simulator refuse the same input with the same errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape
from typing import Any

from django import forms
from django.utils.safestring import mark_safe

from microgrid.topology.choices import (
    ASSET_FIELDS,
    ASSET_KIND_FIELDS,
    NODE_FIELDS,
    AssetKind,
    NodeKind,
    PhaseRotation,
)

# Django would silently ignore rows past absolute_max; refuse instead (validate_max).
# Larger topologies are edited through the API.
MAX_ROWS = 1500
BLANK_ROWS = 3

ASSET_TEXTS = ("station_id",)  # an id: "123" stays a string
# The rest of a row's fields are numbers (the rotation a choice), as topology.choices lists them.
NODE_NUMBERS = tuple(n for n in NODE_FIELDS if n not in ("kind", "name"))
ASSET_NUMBERS = tuple(n for n in ASSET_FIELDS if n not in ASSET_TEXTS)
# What makes a row more than a blank "add" row (selects with a default do not count).
NODE_CONTENT = (
    "node_id",
    "parent_id",
    "kind",
    "name",
    "physical_rating_kw",
    "voltage_v",
    "rating_a",
    "max_unbalance_a",
)
ASSET_CONTENT = (
    "asset_id",
    "node_id",
    "kind",
    "name",
    *(n for n in ASSET_NUMBERS if n not in ("phases", "phase_rotation")),
    *ASSET_TEXTS,
)

_INT_RE = re.compile(r"[+-]?\d+")


# An editor page holds thousands of widgets (a select of every node on every asset
# row); Django renders each through a template, which made a 170-row page take
# seconds. These render the same markup in Python, escaping with the standard
# library and building each list of options once.


def _attrs(attrs: Mapping[str, Any]) -> str:
    out = []
    for key, value in attrs.items():
        if value is True:
            out.append(f" {key}")
        elif value is not False and value is not None:
            out.append(f' {key}="{escape(str(value))}"')
    return "".join(out)


@lru_cache(maxsize=64)
def _options(choices: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str, str], ...]:
    return tuple((str(key), escape(str(key)), escape(str(label))) for key, label in choices)


class _FastInput:
    def render(self, name, value, attrs=None, renderer=None):
        widget = self.get_context(name, value, attrs)["widget"]
        shown = "" if widget["value"] is None else f' value="{escape(str(widget["value"]))}"'
        return mark_safe(
            f'<input type="{widget["type"]}" name="{escape(name)}"{shown}{_attrs(widget["attrs"])}>'
        )


class TextInput(_FastInput, forms.TextInput):
    pass


class NumberInput(_FastInput, forms.NumberInput):
    pass


class HiddenInput(_FastInput, forms.HiddenInput):
    pass


class CheckboxInput(_FastInput, forms.CheckboxInput):
    pass


class Select(forms.Select):
    def render(self, name, value, attrs=None, renderer=None):
        chosen = set(self.format_value(value))
        options = "".join(
            f'<option value="{key}"{" selected" if raw in chosen else ""}>{label}</option>'
            for raw, key, label in _options(tuple((str(k), str(v)) for k, v in self.choices))
        )
        attrs = _attrs(self.build_attrs(self.attrs, attrs))
        return mark_safe(f'<select name="{escape(name)}"{attrs}>{options}</select>')


def _text(**attrs) -> forms.CharField:
    return forms.CharField(required=False, widget=TextInput(attrs=attrs))


def _number(**attrs) -> forms.CharField:
    return forms.CharField(required=False, widget=NumberInput(attrs={"step": "any", **attrs}))


def _select(choices, **kwargs) -> forms.CharField:
    return forms.CharField(required=False, widget=Select(choices=choices), **kwargs)


class _RowForm(forms.Form):
    """Shared by node and asset rows: `node_choices` fill the Microgrid Node selects."""

    select_fields: tuple[str, ...] = ()
    id_field = ""

    loaded = forms.CharField(required=False, widget=HiddenInput)
    remove = forms.BooleanField(required=False, widget=CheckboxInput)

    def __init__(self, *args, node_choices: Iterable[tuple[str, str]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        choices = list(node_choices)
        loaded = self.is_loaded_row()
        own = self._own_node_id() if self.id_field == "node_id" else None
        for name in self.select_fields:
            blank = self.fields[name].widget.choices[:1]
            if name == "parent_id":
                # A new row must choose its parent (an empty parent would make it a second
                # root); only the saved root says "none". A node is never its own parent.
                blank = [("", "— none: the root —" if loaded and own else "— choose a parent —")]
                self.fields[name].widget.choices = blank + [c for c in choices if c[0] != own]
            else:
                self.fields[name].widget.choices = blank + choices
        if loaded:
            # The id is the row's identity: renaming means changing the name.
            self.fields[self.id_field].widget.attrs["readonly"] = True

    def _own_node_id(self) -> str:
        value = self.data.get(self.add_prefix("node_id")) if self.is_bound else None
        if value is None:
            value = self.initial.get("node_id")
        return (value or "").strip()

    def is_loaded_row(self) -> bool:
        value = self.data.get(self.add_prefix("loaded")) if self.is_bound else None
        if value is None:
            value = self.initial.get("loaded")
        return value == "1"


class NodeRowForm(_RowForm):
    select_fields = ("parent_id",)
    id_field = "node_id"

    node_id = _text(autocomplete="off", spellcheck="false", placeholder="new node id")
    parent_id = _select([("", "— choose a parent —")])
    kind = _select([("", "—"), *NodeKind.choices])
    name = _text(autocomplete="off")
    physical_rating_kw = _number(min="0")
    voltage_v = _number(min="0", placeholder="230")
    phases = _select([("3", "3"), ("1", "1")], initial="3")
    rating_a = _number(min="0")
    max_unbalance_a = _number(min="0")


class AssetRowForm(_RowForm):
    select_fields = ("node_id",)
    id_field = "asset_id"

    asset_id = _text(autocomplete="off", spellcheck="false", placeholder="new asset id")
    node_id = _select([("", "—")])
    kind = _select([("", "—"), *AssetKind.choices])
    name = _text(autocomplete="off")
    max_power_kw = _number(min="0")
    min_power_kw = _number(min="0")
    priority = _number(step="1", placeholder="0")
    failsafe_power_kw = _number(min="0")
    phases = _select([("3", "3"), ("1", "1")], initial="3")
    # Empty: the default for the phases (L1, L1L2L3).
    phase_rotation = _select([("", "default"), *((v, v) for v in PhaseRotation.values)])
    min_current_a = _number(min="0")
    max_current_a = _number(min="0")
    station_id = _text(autocomplete="off", spellcheck="false", placeholder="OCPP station")
    evse_id = _number(min="1", step="1")
    rated_power_kw = _number(min="0")
    fallback_kw = _number()


NodeFormSet = forms.formset_factory(
    NodeRowForm, extra=BLANK_ROWS, max_num=MAX_ROWS, absolute_max=MAX_ROWS, validate_max=True
)
AssetFormSet = forms.formset_factory(
    AssetRowForm, extra=BLANK_ROWS, max_num=MAX_ROWS, absolute_max=MAX_ROWS, validate_max=True
)


def format_number(value: Any) -> str:
    """A stored number as an operator would type it: 800, not 800.0."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def node_initial(nodes: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "loaded": "1",
            "node_id": n["node_id"],
            "parent_id": n["parent_id"] or "",
            "kind": n["kind"],
            "name": n["name"],
            **{name: format_number(n.get(name)) for name in NODE_NUMBERS},
        }
        for n in nodes
    ]


def asset_initial(assets: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "loaded": "1",
            "asset_id": a["asset_id"],
            "node_id": a["node_id"],
            "kind": a["kind"],
            "name": a["name"],
            **{name: format_number(a.get(name)) for name in ASSET_NUMBERS},
            **{name: a.get(name) or "" for name in ASSET_TEXTS},
        }
        for a in assets
    ]


def node_choices(nodes: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Options of the parent and node selects: each id once, labelled with its name."""
    seen: dict[str, str] = {}
    for n in nodes:
        node_id = n.get("node_id") or ""
        if node_id and node_id not in seen:
            name = n.get("name") or ""
            seen[node_id] = f"{node_id} — {name}" if name and name != node_id else node_id
    return list(seen.items())


def posted_node_choices(data: Mapping[str, str]) -> list[tuple[str, str]]:
    """The selects of a re-rendered form offer every id the operator staged or picked."""
    rows: dict[str, dict[str, str]] = {}
    extra: list[str] = []
    for key, value in data.items():
        match = re.fullmatch(r"nodes-(\d+)-(node_id|name)", key)
        if match:
            rows.setdefault(match[1], {})[match[2]] = value.strip()
        elif re.fullmatch(r"nodes-\d+-parent_id|assets-\d+-node_id", key) and value.strip():
            extra.append(value.strip())
    ordered = [rows[i] for i in sorted(rows, key=int)]
    return node_choices([*ordered, *({"node_id": v} for v in extra)])


def editor_formsets(
    *,
    data: Mapping[str, str] | None = None,
    document: Mapping[str, Any] | None = None,
) -> tuple[forms.BaseFormSet, forms.BaseFormSet]:
    """The two formsets of the editor: bound to a POST, or filled from a topology document."""
    if data is not None:
        choices = posted_node_choices(data)
        return (
            NodeFormSet(data, prefix="nodes", form_kwargs={"node_choices": choices}),
            AssetFormSet(data, prefix="assets", form_kwargs={"node_choices": choices}),
        )
    document = document or {"nodes": [], "assets": []}
    choices = node_choices(document["nodes"])
    return (
        NodeFormSet(
            prefix="nodes",
            initial=node_initial(document["nodes"]),
            form_kwargs={"node_choices": choices},
        ),
        AssetFormSet(
            prefix="assets",
            initial=asset_initial(document["assets"]),
            form_kwargs={"node_choices": choices},
        ),
    )


def with_more_rows(data, count: int = BLANK_ROWS):
    """The same POST with `count` more blank rows in each formset (the "Add rows" button)."""
    data = data.copy()
    for prefix in ("nodes", "assets"):
        key = f"{prefix}-TOTAL_FORMS"
        total = data.get(key, "")
        if total.isdigit():
            data[key] = str(min(int(total) + count, MAX_ROWS))
    return data


def parse_number(text: str) -> Any:
    """Typed text to a JSON number; anything else is passed on for the validator to refuse."""
    if _INT_RE.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def is_blank(row: Mapping[str, Any], content: Iterable[str]) -> bool:
    return not any(row.get(name) for name in content)


def node_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A node dict in the API's shape. Empty fields are left out, so the validator says
    "is required" or applies the default; no parent means "this is the root"."""
    node: dict[str, Any] = {"parent_id": row.get("parent_id") or None}
    for name in ("node_id", "kind", "name"):
        if row.get(name):
            node[name] = row[name]
    for name in NODE_NUMBERS:
        if row.get(name):
            node[name] = parse_number(row[name])
    return node


def asset_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An asset dict in the API's shape, with only its kind's fields (the page hides the rest)."""
    asset: dict[str, Any] = {}
    for name in ("asset_id", "node_id", "kind", "name"):
        if row.get(name):
            asset[name] = row[name]
    for name in ASSET_KIND_FIELDS.get(row.get("kind") or "", ()):
        if row.get(name):
            asset[name] = row[name] if name in ASSET_TEXTS else parse_number(row[name])
    return asset


@dataclass
class StagedTopology:
    nodes: list[dict[str, Any]] = field(default_factory=list)
    assets: list[dict[str, Any]] = field(default_factory=list)


def staged_topology(node_formset, asset_formset) -> StagedTopology:
    """What the operator staged: every row that is neither blank nor marked for removal.

    Call after both formsets' `is_valid()`.
    """
    staged = StagedTopology()
    for form in node_formset.forms:
        row = form.cleaned_data
        if not row.get("remove") and not is_blank(row, NODE_CONTENT):
            staged.nodes.append(node_from_row(row))
    for form in asset_formset.forms:
        row = form.cleaned_data
        if not row.get("remove") and not is_blank(row, ASSET_CONTENT):
            staged.assets.append(asset_from_row(row))
    return staged


# ---------------------------------------------------------------- staged changes per row


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=0, abs_tol=5e-4)
    return a == b


def node_row_changes(row: Mapping[str, Any], saved: Mapping[str, Any] | None) -> list[str]:
    """The fields of a node row that differ from the loaded topology (empty: unchanged)."""
    if saved is None:
        return []
    staged = node_from_row(row)
    staged.setdefault("voltage_v", 230.0)
    staged.setdefault("phases", 3)
    staged.setdefault("rating_a", None)
    staged.setdefault("max_unbalance_a", None)
    return [
        name
        for name in ("parent_id", "kind", "name", *NODE_NUMBERS)
        if not _same(staged.get(name), saved.get(name))
    ]


def asset_row_changes(row: Mapping[str, Any], saved: Mapping[str, Any] | None) -> list[str]:
    if saved is None:
        return []
    staged = asset_from_row(row)
    if staged.get("kind") == AssetKind.CHARGER:
        staged.setdefault("phases", 3)
        staged.setdefault("phase_rotation", "L1" if staged["phases"] == 1 else "L1L2L3")
    names = ("node_id", "kind", "name", *ASSET_KIND_FIELDS.get(staged.get("kind") or "", ()))
    return [name for name in names if not _same(staged.get(name), saved.get(name))]
