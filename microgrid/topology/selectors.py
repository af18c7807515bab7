"""Reads of the canonical topology: a constant number of queries whatever the tree size."""

from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet

from microgrid.common.access import refusal_note
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_id
from microgrid.common.prepared import PreparedRead
from microgrid.topology.access import microgrids_visible_to
from microgrid.topology.choices import ASSET_FIELDS, ASSET_KIND_FIELDS, NODE_FIELDS
from microgrid.topology.filters import MicrogridFilter
from microgrid.topology.models import Asset, Microgrid, MicrogridNode, TopologyRevision
from microgrid.topology.tree import ROOT_KIND, tree_order


def microgrid_list(*, user, params=None) -> QuerySet[Microgrid]:
    """The microgrids `user` may see (access.py), by microgrid_id, matching the
    `MicrogridFilter` parameters (all without), or FIELD_INVALID."""
    qs = microgrids_visible_to(user).select_related("depot", "updated_by").order_by("microgrid_id")
    if params is None:
        return qs
    return MicrogridFilter(params, queryset=qs).filtered()


def microgrid_get(microgrid_id: str, *, user) -> Microgrid:
    """The microgrid, when `user` may see it (access.py; `SYSTEM` for trusted code).

    Otherwise 404 MICROGRID_NOT_FOUND, the same answer as for an unknown id; a refusal
    of a microgrid that exists is noted for the access audit (one more query, only then).
    """
    try:
        return (
            microgrids_visible_to(user)
            .select_related("depot", "updated_by")
            .get(microgrid_id=microgrid_id)
        )
    except Microgrid.DoesNotExist:
        if Microgrid.objects.filter(microgrid_id=microgrid_id).exists():
            refusal_note(code="MICROGRID_NOT_FOUND", microgrid_id=microgrid_id)
        raise DomainError(
            "MICROGRID_NOT_FOUND",
            f"Microgrid {microgrid_id!r} not found",
            {"microgrid_id": microgrid_id},
            status=404,
        ) from None


_node_rows = PreparedRead(
    # No ORDER BY: tree_order puts them in order.
    lambda microgrid: (
        MicrogridNode.objects.filter(microgrid_id=microgrid)
        .order_by()
        .values("id", "node_id", "parent__node_id", *NODE_FIELDS)
    ),
    microgrid=int,
    batch_by="microgrid",  # scheduled cycles read it for a batch of microgrids at once
)


def node_rows(microgrid: Microgrid) -> list[dict[str, Any]]:
    """Every node as the API shows it, in tree order, in one query (every cycle reads them:
    a prepared read)."""
    rows = _node_rows(microgrid=microgrid.pk)
    out = [
        {
            "node_id": r["node_id"],
            "parent_id": r["parent__node_id"],
            **{name: r[name] for name in NODE_FIELDS},
        }
        for r in rows
    ]
    return tree_order(out)


def asset_dict(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        "asset_id": row["asset_id"],
        "node_id": row["node_id"],
        "kind": row["kind"],
        "name": row["name"],
    }
    for name in ASSET_KIND_FIELDS.get(row["kind"], ()):
        out[name] = row[name]
    return out


def asset_rows(microgrid: Microgrid) -> list[dict[str, Any]]:
    """Every asset with its kind's fields, by asset_id, in one query."""
    rows = (
        Asset.objects.filter(microgrid=microgrid)
        .order_by("asset_id")
        .values("asset_id", "kind", "name", *ASSET_FIELDS, node_id_str=F("node__node_id"))
    )
    return [asset_dict({**r, "node_id": r["node_id_str"]}) for r in rows]


def topology_document(microgrid: Microgrid) -> dict[str, Any]:
    """The spec's GET topology shape (section 6): one response, three queries."""
    return {
        "microgrid_id": microgrid.microgrid_id,
        "depot_id": microgrid.depot.depot_id,
        "depot_name": microgrid.depot.name,
        "topology_version": microgrid.topology_version,
        "updated_at": microgrid.updated_at.isoformat() if microgrid.updated_at else None,
        "updated_by": microgrid.updated_by.get_username() if microgrid.updated_by else None,
        "nodes": node_rows(microgrid),
        "assets": asset_rows(microgrid),
    }


def revision_list(microgrid: Microgrid) -> QuerySet[TopologyRevision]:
    return (
        TopologyRevision.objects.filter(microgrid=microgrid)
        .select_related("created_by")
        .order_by("-version")
    )


def revision_get(microgrid: Microgrid, version: int) -> TopologyRevision:
    try:
        return revision_list(microgrid).get(version=version)
    except TopologyRevision.DoesNotExist:
        raise DomainError(
            "REVISION_NOT_FOUND",
            f"Microgrid {microgrid.microgrid_id!r} has no topology version {version}",
            {"microgrid_id": microgrid.microgrid_id, "version": version},
            status=404,
        ) from None


def revision_summary(rev: TopologyRevision) -> dict[str, Any]:
    return {
        "version": rev.version,
        "created_at": rev.created_at.isoformat(),
        "created_by": rev.created_by.get_username() if rev.created_by else None,
        "summary": rev.summary,
        "node_count": len(rev.snapshot.get("nodes", [])),
        "asset_count": len(rev.snapshot.get("assets", [])),
    }


def diff_snapshots(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, list]:
    """What changed between two snapshots: added, removed and changed node and asset ids."""
    out: dict[str, list] = {}
    for key, ident in (("nodes", "node_id"), ("assets", "asset_id")):
        before = {item[ident]: item for item in (old or {}).get(key, [])}
        after = {item[ident]: item for item in new.get(key, [])}
        out[f"{key}_added"] = sorted(set(after) - set(before))
        out[f"{key}_removed"] = sorted(set(before) - set(after))
        out[f"{key}_changed"] = sorted(
            i for i in set(before) & set(after) if _differs(before[i], after[i])
        )
    return out


# Fields added after revisions were first saved (issue 19), with the value an older snapshot
# that lacks them meant: a save that only gains them is not a change of that node or asset.
_ADDED_FIELD_DEFAULTS = {
    "rating_a": None,
    "max_unbalance_a": None,
    "phases": 3,
    "phase_rotation": "L1L2L3",
    "min_current_a": None,
    "max_current_a": None,
}


def _differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    if old == new:
        return False
    for name in old.keys() | new.keys():
        missing = object()
        a, b = old.get(name, missing), new.get(name, missing)
        if a is missing:
            a = _ADDED_FIELD_DEFAULTS.get(name, missing)
        if b is missing:
            b = _ADDED_FIELD_DEFAULTS.get(name, missing)
        if a != b:
            return True
    return False


def check_scope(microgrid: Microgrid, scope: Any) -> dict[str, Any]:
    """A cycle scope: {"type": "MICROGRID"} or {"type": "NODE", "node_id": X} naming an existing node."""
    if scope is None:
        return {"type": "MICROGRID"}
    if not isinstance(scope, dict) or scope.get("type") not in ("MICROGRID", "NODE"):
        raise DomainError.from_errors(
            [
                ErrorItem(
                    "FIELD_INVALID",
                    'scope must be {"type": "MICROGRID"} or {"type": "NODE", "node_id": ...}',
                    field="scope",
                )
            ]
        )
    if scope["type"] == "MICROGRID":
        if set(scope) != {"type"}:
            raise DomainError.from_errors(
                [ErrorItem("FIELD_INVALID", "a MICROGRID scope has no other fields", field="scope")]
            )
        return {"type": "MICROGRID"}
    if set(scope) != {"type", "node_id"}:
        raise DomainError.from_errors(
            [ErrorItem("FIELD_INVALID", "a NODE scope is {type, node_id}", field="scope")]
        )
    try:
        node_id = check_id(scope["node_id"], "node_id")
    except FieldProblem as exc:
        raise DomainError.from_errors(
            [ErrorItem("FIELD_INVALID", str(exc), field="scope.node_id")]
        ) from None
    if not MicrogridNode.objects.filter(microgrid=microgrid, node_id=node_id).exists():
        raise DomainError(
            "NODE_NOT_FOUND",
            f"Microgrid Node {node_id!r} is not in microgrid {microgrid.microgrid_id!r}",
            {"node_id": node_id, "microgrid_id": microgrid.microgrid_id},
            errors=[
                ErrorItem(
                    "NODE_NOT_FOUND",
                    f"no Microgrid Node {node_id!r}",
                    node_id=node_id,
                    field="scope.node_id",
                )
            ],
        )
    return {"type": "NODE", "node_id": node_id}


def root_node(microgrid) -> MicrogridNode | None:
    """The microgrid's root node (one query); None before it has a topology."""
    return MicrogridNode.objects.filter(
        microgrid=microgrid, parent__isnull=True, kind=ROOT_KIND
    ).first()
