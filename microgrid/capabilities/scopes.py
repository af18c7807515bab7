"""Scopes of capability bindings and the overlap rule of spec 3.4, on an in-memory tree (pure).

A scope is `{"type": "MICROGRID"}` (the whole site) or `{"type": "NODE",
"node_id": X}` (the subtree rooted at X). Two scopes overlap when either is
MICROGRID, or they name the same node, or one node is an ancestor of the
other; disjoint subtrees do not overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from microgrid.capabilities.choices import ScopeType
from microgrid.common.errors import ErrorItem
from microgrid.common.fields import FieldProblem, check_id

_SCOPE_HELP = 'scope must be {"type": "MICROGRID"} or {"type": "NODE", "node_id": ...}'


@dataclass(frozen=True)
class Scope:
    type: str
    node_id: str | None = None

    @classmethod
    def microgrid(cls) -> Scope:
        return cls(ScopeType.MICROGRID)

    @classmethod
    def node(cls, node_id: str) -> Scope:
        return cls(ScopeType.NODE, node_id)

    @classmethod
    def of(cls, binding) -> Scope:
        return cls(str(binding.scope_type), binding.node_id)

    @property
    def is_microgrid(self) -> bool:
        return self.type == ScopeType.MICROGRID

    def to_dict(self) -> dict[str, str]:
        if self.is_microgrid:
            return {"type": str(ScopeType.MICROGRID)}
        return {"type": str(ScopeType.NODE), "node_id": str(self.node_id)}

    def columns(self) -> dict[str, Any]:
        return {"scope_type": self.type, "node_id": self.node_id}

    def label(self, node_names: Mapping[str, str]) -> str:
        """ "Whole microgrid" or "Microgrid Node <name> (<id>)": never a bare status."""
        if self.is_microgrid:
            return "Whole microgrid"
        name = node_names.get(self.node_id or "")
        if name is None:
            return f"Microgrid Node {self.node_id} (no longer in the topology)"
        return f"Microgrid Node {name} ({self.node_id})"


def parse_scope(raw: Any, field: str = "scope") -> tuple[Scope | None, list[ErrorItem]]:
    if not isinstance(raw, dict) or raw.get("type") not in ScopeType.values:
        return None, [ErrorItem("FIELD_INVALID", _SCOPE_HELP, field=field)]
    if raw["type"] == ScopeType.MICROGRID:
        if set(raw) != {"type"}:
            return None, [
                ErrorItem("FIELD_INVALID", "a MICROGRID scope has no other fields", field=field)
            ]
        return Scope.microgrid(), []
    if set(raw) != {"type", "node_id"}:
        return None, [ErrorItem("FIELD_INVALID", "a NODE scope is {type, node_id}", field=field)]
    try:
        return Scope.node(check_id(raw["node_id"], "node_id")), []
    except FieldProblem as exc:
        return None, [ErrorItem("FIELD_INVALID", str(exc), field=f"{field}.node_id")]


def overlaps(a: Scope, b: Scope, ancestors: Mapping[str, Sequence[str]]) -> bool:
    """`ancestors`: node_id -> [node_id, parent, ..., root] (topology.tree.ancestors_map)."""
    if a.is_microgrid or b.is_microgrid:
        return True
    above_a = ancestors.get(a.node_id or "") or [a.node_id]
    above_b = ancestors.get(b.node_id or "") or [b.node_id]
    return a.node_id in above_b or b.node_id in above_a
