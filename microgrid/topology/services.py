"""Writes to the canonical topology. Each service is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.history import unattributed_reason
from microgrid.common.prepared import PreparedRead
from microgrid.topology.choices import ASSET_FIELDS, ASSET_KIND_FIELDS, NODE_FIELDS
from microgrid.topology.models import (
    Asset,
    Depot,
    Microgrid,
    MicrogridMembership,
    MicrogridNode,
    TopologyRevision,
)
from microgrid.topology.references import references_for, station_ids_for
from microgrid.topology.selectors import diff_snapshots, topology_document
from microgrid.topology.tree import depths
from microgrid.topology.validation import validate_topology


def microgrid_create(
    *,
    microgrid_id: str,
    name: str,
    depot: dict[str, str],
    telemetry_stale_after_s: int = 60,
    cycle_interval_s: int = 15,
    user=None,
) -> Microgrid:
    """Create a depot (when new) and its empty microgrid at topology version 0, from validated
    values (`MicrogridCreate`): `depot` is `{depot_id, name, timezone}`."""
    clean = {
        "microgrid_id": microgrid_id,
        "name": name,
        "telemetry_stale_after_s": telemetry_stale_after_s,
        "cycle_interval_s": cycle_interval_s,
    }
    depot_clean = {"timezone": "UTC", **depot}
    with transaction.atomic():
        if Microgrid.objects.filter(microgrid_id=clean["microgrid_id"]).exists():
            raise DomainError(
                "MICROGRID_EXISTS",
                f"Microgrid {clean['microgrid_id']!r} already exists",
                {"microgrid_id": clean["microgrid_id"]},
            )
        depot_obj, created = Depot.objects.get_or_create(
            depot_id=depot_clean["depot_id"],
            defaults={"name": depot_clean["name"], "timezone": depot_clean["timezone"]},
        )
        if not created and hasattr(depot_obj, "microgrid"):
            raise DomainError(
                "MICROGRID_EXISTS",
                f"Depot {depot_obj.depot_id!r} already has microgrid {depot_obj.microgrid.microgrid_id!r}",
                {"depot_id": depot_obj.depot_id, "microgrid_id": depot_obj.microgrid.microgrid_id},
            )
        try:
            with transaction.atomic():
                return Microgrid.objects.create(depot=depot_obj, updated_by=user, **clean)
        except IntegrityError:
            raise DomainError(
                "MICROGRID_EXISTS",
                f"Microgrid {clean['microgrid_id']!r} already exists",
                {"microgrid_id": clean["microgrid_id"]},
            ) from None


def lock_microgrid(microgrid: Microgrid) -> Microgrid:
    """The microgrid row, locked until the transaction ends: the one lock every writer takes.

    Topology saves, limit writes, capability binds and cycles all serialise on
    it, so none of them sees the others half done. Only the microgrid row is
    locked (`of=("self",)`): PostgreSQL refuses FOR UPDATE across the outer
    join to the nullable updated_by, and the depot needs no lock.
    """
    return (
        Microgrid.objects.select_for_update(of=("self",))
        .select_related("depot", "updated_by")
        .get(pk=microgrid.pk)
    )


# Every balancing cycle takes it: a prepared read (microgrid.common.prepared).
_try_lock = PreparedRead(
    lambda microgrid: (
        Microgrid.objects.select_for_update(of=("self",), skip_locked=True)
        .select_related("depot")
        .filter(pk=microgrid)
        .order_by()[:1]
    ),
    microgrid=int,
)


def try_lock_microgrid(microgrid: Microgrid) -> Microgrid | None:
    """`lock_microgrid` without waiting: the locked row, or None when another transaction
    holds it (PostgreSQL SKIP LOCKED; on SQLite the IMMEDIATE transaction has already
    waited for the one writer, so the row is always returned)."""
    rows = _try_lock(microgrid=microgrid.pk)
    return rows[0] if rows else None


_lock = lock_microgrid


def topology_replace(
    *, microgrid: Microgrid, base_version: Any, nodes: Any, assets: Any, user=None
) -> dict[str, Any]:
    """Replace a microgrid's nodes and assets, saved against the version the editor loaded.

    Validates everything, refuses a stale base_version with
    TOPOLOGY_VERSION_CONFLICT, applies the difference, bumps the version and
    writes the revision, all in one transaction: any failure changes nothing.
    """
    if isinstance(base_version, bool) or not isinstance(base_version, int):
        raise DomainError.from_errors(
            [ErrorItem("FIELD_INVALID", "base_version must be an integer", field="base_version")]
        )
    with transaction.atomic():
        locked = _lock(microgrid)
        if base_version != locked.topology_version:
            raise DomainError(
                "TOPOLOGY_VERSION_CONFLICT",
                f"The topology changed since version {base_version} was loaded: it is now version "
                f"{locked.topology_version}",
                {
                    "base_version": base_version,
                    "current_version": locked.topology_version,
                    "updated_at": locked.updated_at.isoformat() if locked.updated_at else None,
                    "updated_by": locked.updated_by.get_username() if locked.updated_by else None,
                },
            )
        current_nodes = {n.node_id: n for n in MicrogridNode.objects.filter(microgrid=locked)}
        current_assets = {a.asset_id: a for a in Asset.objects.filter(microgrid=locked)}
        result = validate_topology(
            nodes,
            assets,
            current_node_ids=frozenset(current_nodes),
            current_asset_ids=frozenset(current_assets),
            references=references_for(locked),
            station_ids=station_ids_for(locked),
        )
        if not result.ok:
            raise DomainError.from_errors(
                result.errors, "The topology is invalid; nothing was saved"
            )
        before = _latest_snapshot(locked)
        _apply(
            locked,
            result.topology.nodes,
            result.topology.assets,
            current_nodes,
            current_assets,
            user,
        )
        locked.topology_version += 1
        locked.updated_by = user if getattr(user, "is_authenticated", False) else None
        locked._history_user = locked.updated_by
        locked.save()
        document = topology_document(locked)
        changes = diff_snapshots(before, document)
        TopologyRevision.objects.create(
            microgrid=locked,
            version=locked.topology_version,
            snapshot=document,
            summary=_summary(changes),
            created_at=locked.updated_at or timezone.now(),
            created_by=locked.updated_by,
        )
    microgrid.topology_version = locked.topology_version
    microgrid.updated_at = locked.updated_at
    return document


def _latest_snapshot(microgrid: Microgrid) -> dict[str, Any] | None:
    rev = TopologyRevision.objects.filter(microgrid=microgrid).order_by("-version").first()
    return rev.snapshot if rev else None


def _summary(changes: dict[str, list]) -> str:
    """In words: "added node grp-c; changed nodes grp-a, grp-b; removed asset CH-09"."""
    parts = []
    for key, label in (("nodes", "node"), ("assets", "asset")):
        for verb in ("added", "changed", "removed"):
            ids = changes[f"{key}_{verb}"]
            if ids:
                shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
                parts.append(f"{verb} {label}{'s' if len(ids) != 1 else ''} {shown}")
    return "; ".join(parts)[:500] or "no change"


def _apply(microgrid, nodes, assets, current_nodes, current_assets, user) -> None:
    history_user = user if getattr(user, "is_authenticated", False) else None
    wanted_parent = {n["node_id"]: n["parent_id"] for n in nodes}
    wanted_nodes = set(wanted_parent)
    wanted_assets = {a["asset_id"] for a in assets}

    # Assets first: a removed node may still hold assets that are being removed or moved.
    for asset_id in sorted(set(current_assets) - wanted_assets):
        obj = current_assets.pop(asset_id)
        obj._history_user = history_user
        obj.delete()

    by_id: dict[str, MicrogridNode] = {}
    depth = depths((data["node_id"], data["parent_id"]) for data in nodes)
    pending: dict[int, list[MicrogridNode]] = {}
    # Nodes arrive in tree order, so a parent is always handled before its children.
    for data in nodes:
        parent_id = data["parent_id"]
        obj = current_nodes.get(data["node_id"])
        if obj is None:
            obj = MicrogridNode(microgrid=microgrid, node_id=data["node_id"])
            _set_columns(obj, data, NODE_FIELDS)
            pending.setdefault(depth[data["node_id"]], []).append(obj)
            by_id[data["node_id"]] = obj
            continue
        by_id[data["node_id"]] = obj
        changed = _set_columns(obj, data, NODE_FIELDS)
        new_parent = by_id[parent_id] if parent_id else None
        if (obj.parent_id or None) != (new_parent.pk if new_parent else None) or (
            new_parent is not None and new_parent.pk is None
        ):
            changed = True
        if changed:
            pending.setdefault(depth[data["node_id"]], []).append(obj)
    # Save level by level so every parent has a primary key before its children.
    for level in sorted(pending):
        creates = []
        for obj in pending[level]:
            parent_id = wanted_parent[obj.node_id]
            obj.parent = by_id[parent_id] if parent_id else None
            if obj.pk is None:
                creates.append(obj)
            else:
                obj._history_user = history_user
                obj.save()
        if creates:
            bulk_create_with_history(
                creates,
                MicrogridNode,
                default_user=history_user,
                default_change_reason=unattributed_reason(history_user),
            )
            if any(o.pk is None for o in creates):
                fresh = {
                    n.node_id: n
                    for n in MicrogridNode.objects.filter(
                        microgrid=microgrid, node_id__in=[o.node_id for o in creates]
                    )
                }
                for o in creates:
                    o.pk = o.id = fresh[o.node_id].pk

    creates = []
    for data in assets:
        obj = current_assets.get(data["asset_id"])
        node = by_id[data["node_id"]]
        if obj is None:
            obj = Asset(microgrid=microgrid, asset_id=data["asset_id"], node=node)
            _set_asset(obj, data)
            creates.append(obj)
            continue
        changed = _set_asset(obj, data)
        if obj.node_id != node.pk:
            obj.node = node
            changed = True
        if changed:
            obj._history_user = history_user
            obj.save()
    if creates:
        bulk_create_with_history(
            creates,
            Asset,
            default_user=history_user,
            default_change_reason=unattributed_reason(history_user),
        )

    removed = [current_nodes[n] for n in current_nodes if n not in wanted_nodes]
    # Children before parents: PROTECT on the parent key must never fire.
    depth_of = depths((n.pk, n.parent_id) for n in current_nodes.values())
    for obj in sorted(removed, key=lambda n: (-depth_of[n.pk], n.node_id)):
        obj._history_user = history_user
        obj.delete()


def _set_columns(obj, data: dict[str, Any], columns) -> bool:
    changed = False
    for name in columns:
        if getattr(obj, name) != data[name]:
            setattr(obj, name, data[name])
            changed = True
    return changed


def _set_asset(obj: Asset, data: dict[str, Any]) -> bool:
    changed = _set_columns(obj, data, ("kind", "name"))
    kind_fields = ASSET_KIND_FIELDS[data["kind"]]
    for name in ASSET_FIELDS:
        value = data.get(name) if name in kind_fields else None
        if name == "phase_rotation" and value is None:
            value = ""  # a text column: empty, not null, for the kinds without one
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


def microgrid_delete(*, microgrid: Microgrid, delete_depot: bool = True) -> None:
    """Remove a microgrid with everything that hangs off it (support clean-up, simulator reset).

    Nodes and assets protect each other (an asset's node, a node's parent), so
    they are detached and removed before the cascade from the microgrid runs.
    """
    with transaction.atomic():
        locked = lock_microgrid(microgrid)
        depot = locked.depot
        for model in _dependent_models_before_nodes():
            model.objects.filter(microgrid=locked).delete()
        Asset.objects.filter(microgrid=locked).delete()
        MicrogridNode.objects.filter(microgrid=locked).update(parent=None)
        MicrogridNode.objects.filter(microgrid=locked).delete()
        locked.delete()
        if delete_depot:
            depot.delete()


def _dependent_models_before_nodes() -> list:
    """Models with a microgrid FK that also point at nodes or assets (deleted first)."""
    from django.apps import apps

    out = []
    for model in apps.get_models():
        if model in (Asset, MicrogridNode, Microgrid) or model._meta.app_label == "topology":
            continue
        fields = {f.name: f for f in model._meta.get_fields() if getattr(f, "many_to_one", False)}
        microgrid_fk = fields.get("microgrid")
        points_at_topology = any(
            f.related_model in (Asset, MicrogridNode)
            for f in fields.values()
            if f.name != "microgrid"
        )
        if (
            microgrid_fk is not None
            and microgrid_fk.related_model is Microgrid
            and points_at_topology
        ):
            out.append(model)
    return out


def microgrid_memberships_grant(
    *, user, microgrid_ids: Sequence[str] = (), all_microgrids: bool = False, by=None
) -> list[MicrogridMembership]:
    """Make `user` a member of each microgrid (or of all of them); memberships it already has
    stay as they are. Every id must name a microgrid, or nothing is granted (404
    MICROGRID_NOT_FOUND naming the unknown ids). Returns the memberships made."""
    wanted = list(dict.fromkeys(microgrid_ids))
    with transaction.atomic():
        found = dict(
            Microgrid.objects.filter(microgrid_id__in=wanted).values_list("microgrid_id", "pk")
        )
        unknown = [m for m in wanted if m not in found]
        if unknown:
            raise DomainError(
                "MICROGRID_NOT_FOUND",
                f"No microgrid {', '.join(repr(m) for m in unknown)}",
                {"microgrid_ids": unknown},
                status=404,
            )
        have = MicrogridMembership.objects.filter(user=user)
        had_all = have.filter(all_microgrids=True).exists()
        had = set(have.filter(microgrid_id__isnull=False).values_list("microgrid_id", flat=True))
        made = [
            MicrogridMembership(user=user, microgrid_id=found[m])
            for m in wanted
            if found[m] not in had
        ]
        if all_microgrids and not had_all:
            made.append(MicrogridMembership(user=user, all_microgrids=True))
        for membership in made:
            membership._history_user = by
            membership.save()
    return made


def microgrid_headroom_set(
    *, microgrid: Microgrid, mode: str, static_kw: float, user=None
) -> Microgrid:
    """Set how much budget cycles keep back for uncontrolled load (spec 4.3, "Headroom");
    `mode` one of HeadroomMode, `static_kw` 0..100,000 (checked by the caller's form or
    profile check). Writes a history row only when something changes."""
    with transaction.atomic():
        locked = lock_microgrid(microgrid)
        if (locked.headroom_mode, locked.headroom_static_kw) != (mode, static_kw):
            locked.headroom_mode = mode
            locked.headroom_static_kw = static_kw
            locked.updated_by = user if getattr(user, "is_authenticated", False) else None
            locked.save(update_fields=["headroom_mode", "headroom_static_kw", "updated_at"])
    microgrid.headroom_mode, microgrid.headroom_static_kw = mode, static_kw
    return microgrid
