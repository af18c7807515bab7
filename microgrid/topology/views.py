"""Manage pages for microgrids and their topology (read-only view; the editor is in editor.py)."""

from __future__ import annotations

from collections import defaultdict

from django.shortcuts import render

from microgrid.common.pages import manage_view
from microgrid.common.roles import WRITERS, has_any_role
from microgrid.topology import selectors
from microgrid.topology.card import microgrid_card, microgrid_tabs, page_sections
from microgrid.topology.choices import AssetKind, NodeKind
from microgrid.topology.diagram import render_topology_svg


def _base_context(microgrid, active: str, **extra):
    return {"microgrid": microgrid, "tabs": microgrid_tabs(microgrid, active), **extra}


@manage_view()
def microgrid_card_page(request, microgrid_id: str):
    microgrid = selectors.microgrid_get(microgrid_id)
    document = selectors.topology_document(microgrid)
    counts = defaultdict(int)
    for asset in document["assets"]:
        counts[asset["kind"]] += 1
    context = _base_context(
        microgrid,
        "overview",
        card=microgrid_card(microgrid),
        node_count=len(document["nodes"]),
        asset_counts=[(AssetKind(k).label, counts[k]) for k in AssetKind.values if counts[k]],
        sections=page_sections(microgrid),
        diagram=render_topology_svg(
            document["nodes"],
            document["assets"],
            node_href=lambda n: f"/manage/microgrids/{microgrid.microgrid_id}/topology/#node-{n}",
        ),
    )
    return render(request, "manage/microgrid_card.html", context)


@manage_view()
def topology_page(request, microgrid_id: str):
    microgrid = selectors.microgrid_get(microgrid_id)
    document = selectors.topology_document(microgrid)
    return render(
        request,
        "manage/topology.html",
        _base_context(
            microgrid,
            "topology",
            perms_edit=has_any_role(request.user, WRITERS),
            **topology_context(document),
        ),
    )


def topology_context(document: dict) -> dict:
    """The diagram and the indented tree (each asset under its node) of one topology response."""
    assets_by_node = defaultdict(list)
    for asset in document["assets"]:
        assets_by_node[asset["node_id"]].append(asset)
    depth: dict[str, int] = {}
    rows = []
    for node in document["nodes"]:
        depth[node["node_id"]] = (
            0 if node["parent_id"] is None else depth.get(node["parent_id"], 0) + 1
        )
        rows.append(
            {
                "node": node,
                "kind_label": NodeKind(node["kind"]).label,
                "depth": depth[node["node_id"]],
                "indent": depth[node["node_id"]] * 24,
                "assets": [
                    {**a, "kind_label": AssetKind(a["kind"]).label}
                    for a in assets_by_node[node["node_id"]]
                ],
            }
        )
    return {
        "document": document,
        "tree_rows": rows,
        "diagram": render_topology_svg(
            document["nodes"],
            document["assets"],
            node_href=lambda n: f"#node-{n}",
        ),
    }
