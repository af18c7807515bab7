"""Pure helpers on an adjacency-list tree given as (node_id, parent_id) pairs or node rows.

The one place for tree logic: order (`tree_order`), the root (`root_id`, `is_root`), depth
(`depths`), ancestors (`ancestors_map`) and subtrees (`subtree_ids`). Everything else calls
these rather than walking parents itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K")


def tree_order(
    items: Iterable[T], *, node_id=lambda n: n["node_id"], parent_id=lambda n: n["parent_id"]
) -> list[T]:
    """Depth first, parent before child, siblings by node_id.

    Items whose parent is unknown are treated as extra roots so that nothing
    is lost; items on a cycle are appended at the end in node_id order.
    """
    items = list(items)
    ids = {node_id(i) for i in items}
    children: dict[str | None, list[T]] = {}
    for item in items:
        parent = parent_id(item)
        key = parent if parent in ids else None
        children.setdefault(key, []).append(item)
    for siblings in children.values():
        siblings.sort(key=node_id)
    ordered: list[T] = []
    seen: set[str] = set()
    stack = list(reversed(children.get(None, [])))
    while stack:
        item = stack.pop()
        ident = node_id(item)
        if ident in seen:
            continue
        seen.add(ident)
        ordered.append(item)
        stack.extend(reversed(children.get(ident, [])))
    if len(ordered) < len(items):
        rest = [i for i in items if node_id(i) not in seen]
        ordered.extend(sorted(rest, key=node_id))
    return ordered


def ancestors_map(pairs: Sequence[tuple[str, str | None]]) -> dict[str, list[str]]:
    """node_id -> [node_id, parent, grandparent, ..., root] for a valid tree."""
    parent = dict(pairs)
    out: dict[str, list[str]] = {}
    for node in parent:
        path = [node]
        current = parent[node]
        while current is not None and current not in path:
            path.append(current)
            current = parent.get(current)
        out[node] = path
    return out


def subtree_ids(pairs: Sequence[tuple[str, str | None]], root_id: str) -> set[str]:
    """The ids of root_id and every node below it."""
    children: dict[str | None, list[str]] = {}
    for node, parent in pairs:
        children.setdefault(parent, []).append(node)
    found = {root_id}
    stack = [root_id]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


# The root of a topology is its one GRID_CONNECTION node without a parent (the validator
# refuses anything else, TOPOLOGY_ROOT_INVALID).
ROOT_KIND = "GRID_CONNECTION"


def is_root(*, parent_id, kind: str | None = ROOT_KIND) -> bool:
    """Whether a node with this parent and kind is the root."""
    return parent_id is None and kind == ROOT_KIND


def root_id(nodes: Iterable[Mapping]) -> str | None:
    """The root's node_id among node rows ({node_id, parent_id, kind?}; a row without `kind`
    counts as a grid connection), the first in their order; None when there is none."""
    for node in nodes:
        if is_root(parent_id=node.get("parent_id"), kind=node.get("kind", ROOT_KIND)):
            return node["node_id"]
    return None


def depths(pairs: Iterable[tuple[K, K | None]]) -> dict[K, int]:
    """node -> its depth (the root 0), for (node, parent) pairs in any order.

    A node whose parent is not among the pairs counts as a root; on a cycle (only in input
    not yet validated) the counting stops where it closes.
    """
    parent = dict(pairs)
    out: dict[K, int] = {}
    for node in parent:
        path: list[K] = []
        current: K | None = node
        while current in parent and current not in out and current not in path:
            path.append(current)
            current = parent[current]
        depth = out.get(current, -1)  # type: ignore[arg-type]
        for ident in reversed(path):
            depth += 1
            out[ident] = depth
    return out
