"""Pure helpers on an adjacency-list tree given as (node_id, parent_id) pairs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


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
