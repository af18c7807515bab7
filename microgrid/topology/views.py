"""Manage pages for microgrids and their topology (read-only view; the editor is in editor.py)."""

from __future__ import annotations

from collections import defaultdict

from django.core.paginator import Paginator
from django.shortcuts import render

from microgrid.common.pages import manage_view
from microgrid.common.roles import WRITERS, has_any_role
from microgrid.topology import selectors
from microgrid.topology.card import microgrid_card, microgrid_tabs, node_loads, page_sections
from microgrid.topology.choices import AssetKind, NodeKind
from microgrid.topology.diagram import render_topology_svg
from microgrid.topology.tree import depths


def _base_context(microgrid, active: str, **extra):
    return {"microgrid": microgrid, "tabs": microgrid_tabs(microgrid, active), **extra}


@manage_view()
def microgrid_card_page(request, microgrid_id: str):
    microgrid = selectors.microgrid_get(microgrid_id, user=request.user)
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
            loads=node_loads(microgrid),
        ),
    )
    return render(request, "manage/microgrid_card.html", context)


@manage_view()
def topology_page(request, microgrid_id: str):
    microgrid = selectors.microgrid_get(microgrid_id, user=request.user)
    document = selectors.topology_document(microgrid)
    return render(
        request,
        "manage/topology.html",
        _base_context(
            microgrid,
            "topology",
            perms_edit=has_any_role(request.user, WRITERS),
            **topology_context(document, loads=node_loads(microgrid)),
        ),
    )


def topology_context(document: dict, loads: dict | None = None) -> dict:
    """The diagram and the indented tree (each asset under its node) of one topology response."""
    assets_by_node = defaultdict(list)
    for asset in document["assets"]:
        assets_by_node[asset["node_id"]].append(asset)
    depth = depths((n["node_id"], n["parent_id"]) for n in document["nodes"])
    rows = []
    for node in document["nodes"]:
        rows.append(
            {
                "node": node,
                "kind_label": NodeKind(node["kind"]).label,
                "depth": depth[node["node_id"]],
                "indent": depth[node["node_id"]] * 24,
                "load": (loads or {}).get(node["node_id"]),
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
            loads=loads,
        ),
    }


REVISIONS_PER_PAGE = 50


@manage_view()
def revision_list_page(request, microgrid_id: str):
    """Every saved topology version, newest first: who, when, what (paged)."""
    microgrid = selectors.microgrid_get(microgrid_id, user=request.user)
    paginator = Paginator(selectors.revision_list(microgrid), REVISIONS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "manage/topology_revisions.html",
        _base_context(
            microgrid,
            "topology",
            page=page,
            revisions=[selectors.revision_summary(r) for r in page.object_list],
        ),
    )


@manage_view()
def revision_detail_page(request, microgrid_id: str, version: int):
    """One saved version: who and when, what changed from the version before (field by
    field), and the snapshot drawn as the diagram and listed."""
    microgrid = selectors.microgrid_get(microgrid_id, user=request.user)
    rev = selectors.revision_get(microgrid, version)
    previous = selectors.revision_list(microgrid).filter(version__lt=version).first()
    before = previous.snapshot if previous else None
    changes = selectors.diff_snapshots(before, rev.snapshot)
    return render(
        request,
        "manage/topology_revision.html",
        _base_context(
            microgrid,
            "topology",
            rev=selectors.revision_summary(rev),
            previous_version=previous.version if previous else None,
            changes=changes,
            field_changes=_field_changes(before, rev.snapshot),
            snapshot=rev.snapshot,
            diagram=render_topology_svg(
                rev.snapshot.get("nodes", []),
                rev.snapshot.get("assets", []),
                highlight_node_ids=changes["nodes_added"] + changes["nodes_changed"],
            ),
        ),
    )


def _field_changes(old: dict | None, new: dict) -> list[dict]:
    """[{kind, id, name, changes: [(field, before, after)]}] for every changed node and asset."""
    out = []
    for key, ident, kind in (("nodes", "node_id", "Node"), ("assets", "asset_id", "Asset")):
        before = {item[ident]: item for item in (old or {}).get(key, [])}
        for item in new.get(key, []):
            prior = before.get(item[ident])
            if prior is None or prior == item:
                continue
            fields = sorted(set(prior) | set(item))
            out.append(
                {
                    "kind": kind,
                    "id": item[ident],
                    "name": item.get("name", ""),
                    "changes": [
                        (f, prior.get(f), item.get(f))
                        for f in fields
                        if prior.get(f) != item.get(f)
                    ],
                }
            )
    return out
