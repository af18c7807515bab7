"""The microgrid card is assembled from sections that each app contributes.

A section provider takes the microgrid and returns a JSON-ready value in a
constant number of queries; apps register theirs in AppConfig.ready().
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_sections: dict[str, Callable[[Any], Any]] = {}


def register_section(name: str, provider: Callable[[Any], Any]) -> None:
    _sections[name] = provider


def microgrid_card(microgrid) -> dict[str, Any]:
    card: dict[str, Any] = {
        "microgrid_id": microgrid.microgrid_id,
        "name": microgrid.name,
        "depot": {
            "depot_id": microgrid.depot.depot_id,
            "name": microgrid.depot.name,
            "timezone": microgrid.depot.timezone,
        },
        "topology_version": microgrid.topology_version,
        "updated_at": microgrid.updated_at.isoformat() if microgrid.updated_at else None,
        "updated_by": microgrid.updated_by.get_username() if microgrid.updated_by else None,
        "telemetry_stale_after_s": microgrid.telemetry_stale_after_s,
        "cycle_interval_s": microgrid.cycle_interval_s,
        "enabled": microgrid.enabled,
    }
    for name in sorted(_sections):
        card[name] = _sections[name](microgrid)
    return card


def microgrid_summary(microgrid) -> dict[str, Any]:
    return {
        "microgrid_id": microgrid.microgrid_id,
        "name": microgrid.name,
        "depot_id": microgrid.depot.depot_id,
        "depot_name": microgrid.depot.name,
        "topology_version": microgrid.topology_version,
        "updated_at": microgrid.updated_at.isoformat() if microgrid.updated_at else None,
        "enabled": microgrid.enabled,
    }


# Live load per node (the latest cycle's), drawn on the diagrams: balancing provides it.
_node_loads: list[Callable[[Any], dict[str, dict[str, Any]]]] = []


def register_node_loads(provider: Callable[[Any], dict[str, dict[str, Any]]]) -> None:
    if provider not in _node_loads:
        _node_loads.append(provider)


def node_loads(microgrid) -> dict[str, dict[str, Any]]:
    """node_id -> {load_kw, limit_kw, load_pct, ...}; empty when nothing provides it."""
    out: dict[str, dict[str, Any]] = {}
    for provider in _node_loads:
        out.update(provider(microgrid))
    return out


# Manage pages: each app adds its tab and, optionally, a section of the card page.
_tabs: list[tuple[int, str, str, str]] = []
_page_sections: list[tuple[int, str, Callable[[Any], dict[str, Any]]]] = []


def register_tab(order: int, key: str, label: str, suffix: str) -> None:
    if all(t[1] != key for t in _tabs):
        _tabs.append((order, key, label, suffix))
        _tabs.sort()


def microgrid_tabs(microgrid, active: str) -> list[dict[str, Any]]:
    base = f"/manage/microgrids/{microgrid.microgrid_id}/"
    return [
        {"key": key, "label": label, "url": base + suffix, "active": key == active}
        for _, key, label, suffix in _tabs
    ]


def register_page_section(
    order: int, template: str, context: Callable[[Any], dict[str, Any]]
) -> None:
    """A block of the Manage card page: `template` rendered with `context(microgrid)`."""
    if all(s[1] != template for s in _page_sections):
        _page_sections.append((order, template, context))
        _page_sections.sort(key=lambda s: s[0])


def page_sections(microgrid) -> list[dict[str, Any]]:
    return [
        {"template": template, "context": context(microgrid)}
        for _, template, context in _page_sections
    ]
