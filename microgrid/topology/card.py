"""The microgrid card is assembled from sections that each app contributes.

The apps above topology answer the signals of `microgrid.topology.signals` (card sections,
Manage tabs, card page sections); this module puts their answers together.
"""

from __future__ import annotations

from typing import Any

from microgrid.common.signals import collect
from microgrid.topology import signals


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
    sections: dict[str, Any] = {}
    for answer in collect(signals.card_sections, microgrid=microgrid):
        sections.update(answer)
    for name in sorted(sections):
        card[name] = sections[name]
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


# The Manage pages: the tabs every app adds and the blocks of the card page.
TOPOLOGY_TABS = [(0, "overview", "Overview", ""), (10, "topology", "Topology", "topology/")]


def node_loads(microgrid) -> dict[str, dict[str, Any]]:
    """node_id -> {load_kw, limit_kw, load_pct, ...} of the latest cycle, drawn on the diagrams;
    empty when no app answers `node_loads`."""
    out: dict[str, dict[str, Any]] = {}
    for answer in collect(signals.node_loads, microgrid=microgrid):
        out.update(answer)
    return out


def microgrid_tabs(microgrid, active: str) -> list[dict[str, Any]]:
    base = f"/manage/microgrids/{microgrid.microgrid_id}/"
    tabs = sorted(
        [*TOPOLOGY_TABS, *(tab for answer in collect(signals.manage_tabs) for tab in answer)]
    )
    return [
        {"key": key, "label": label, "url": base + suffix, "active": key == active}
        for _, key, label, suffix in tabs
    ]


def page_sections(microgrid) -> list[dict[str, Any]]:
    blocks = sorted(collect(signals.card_page_sections, microgrid=microgrid), key=lambda b: b[0])
    return [{"template": template, "context": context} for _, template, context in blocks]
