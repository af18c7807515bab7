"""The one topology validator, used by every writer (API, admin, editor, loader).

Pure: it takes the raw, untrusted node and asset dicts of a proposed
topology plus what still references the current one, and reports every
violation at once in the spec's order (section 3.1), or returns the cleaned
topology. The same bad input always yields the same error list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from microgrid.common.errors import ErrorItem, sort_errors
from microgrid.common.fields import (
    FieldProblem,
    check_amps,
    check_choice,
    check_id,
    check_int,
    check_kw,
    check_text,
)
from microgrid.topology.choices import (
    ASSET_FIELDS,
    ASSET_KIND_FIELDS,
    DEFAULT_ROTATION,
    NODE_FIELDS,
    SINGLE_PHASE_ROTATIONS,
    THREE_PHASE_ROTATIONS,
    AssetKind,
    NodeKind,
)
from microgrid.topology.tree import tree_order

NODE_KEYS = ("node_id", "parent_id", *NODE_FIELDS)
ASSET_BASE_FIELDS = ("asset_id", "node_id", "kind", "name")
ALL_ASSET_FIELDS = frozenset((*ASSET_BASE_FIELDS, *ASSET_FIELDS))

# (kind, id) -> descriptions of what refers to it, e.g. {"type": "LIMIT_POLICY", "id": "12"}
References = Mapping[tuple[str, str], Sequence[dict[str, Any]]]


@dataclass
class CleanTopology:
    nodes: list[dict[str, Any]] = field(default_factory=list)  # in tree order
    assets: list[dict[str, Any]] = field(default_factory=list)  # by asset_id


@dataclass
class ValidationResult:
    topology: CleanTopology
    errors: list[ErrorItem]

    @property
    def ok(self) -> bool:
        return not self.errors


def _ident(raw: Any, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _clean_node(raw: Any, index: int, errors: list[ErrorItem]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        errors.append(
            ErrorItem("FIELD_INVALID", f"nodes[{index}] must be an object", field=f"nodes[{index}]")
        )
        return None
    node_id = _ident(raw, "node_id")
    bad = False

    def problem(name: str, message: str) -> None:
        nonlocal bad
        bad = True
        errors.append(ErrorItem("FIELD_INVALID", f"{name} {message}", node_id=node_id, field=name))

    for key in sorted(set(raw) - set(NODE_KEYS)):
        problem(str(key), "is not a field of a Microgrid Node")
    out: dict[str, Any] = {}
    checks = (
        ("node_id", lambda v: check_id(v, "node_id"), True, None),
        ("parent_id", lambda v: None if v is None else check_id(v, "parent_id"), False, None),
        ("kind", lambda v: check_choice(v, NodeKind.values), True, None),
        ("name", check_text, True, None),
        ("physical_rating_kw", lambda v: check_kw(v, exclusive_minimum=0), True, None),
        ("voltage_v", lambda v: check_kw(v, exclusive_minimum=0, maximum=100000), False, 230.0),
        ("phases", lambda v: check_int(v, minimum=1, maximum=3), False, 3),
        (
            "rating_a",
            lambda v: None if v is None else check_amps(v, exclusive_minimum=0),
            False,
            None,
        ),
        (
            "max_unbalance_a",
            lambda v: None if v is None else check_amps(v, minimum=0),
            False,
            None,
        ),
    )
    for name, check, required, default in checks:
        if name not in raw:
            if required:
                problem(name, "is required")
            else:
                out[name] = default
            continue
        try:
            out[name] = check(raw[name])
        except FieldProblem as exc:
            problem(name, str(exc))
    if out.get("phases") == 2:
        problem("phases", "must be 1 or 3")
    if "name" not in out and node_id and not bad:
        out["name"] = node_id
    return None if bad else out


def _clean_asset(raw: Any, index: int, errors: list[ErrorItem]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        errors.append(
            ErrorItem(
                "FIELD_INVALID", f"assets[{index}] must be an object", field=f"assets[{index}]"
            )
        )
        return None
    asset_id = _ident(raw, "asset_id")
    bad = False

    def problem(name: str, message: str) -> None:
        nonlocal bad
        bad = True
        errors.append(
            ErrorItem("FIELD_INVALID", f"{name} {message}", asset_id=asset_id, field=name)
        )

    out: dict[str, Any] = {}
    for name, check in (
        ("asset_id", lambda v: check_id(v, "asset_id")),
        ("node_id", lambda v: check_id(v, "node_id")),
        ("kind", lambda v: check_choice(v, AssetKind.values)),
        ("name", check_text),
    ):
        if name not in raw:
            problem(name, "is required")
            continue
        try:
            out[name] = check(raw[name])
        except FieldProblem as exc:
            problem(name, str(exc))
    kind = out.get("kind")
    # With an unknown kind only truly unknown fields are reported: the kind error says the rest.
    allowed = set(ASSET_BASE_FIELDS) | set(ASSET_KIND_FIELDS.get(kind, ALL_ASSET_FIELDS))
    for key in sorted(set(raw) - allowed, key=str):
        where = "an asset" if key not in ALL_ASSET_FIELDS or kind is None else f"a {kind} asset"
        problem(str(key), f"is not a field of {where}")
    if kind is None:
        return None

    def take(
        name: str, check, *, required: bool = False, default: Any = None, nullable: bool = True
    ):
        if name not in raw or (raw[name] is None and nullable and not required):
            if required:
                problem(name, "is required")
            return default
        if raw[name] is None:
            problem(name, "must not be null")
            return default
        try:
            return check(raw[name])
        except FieldProblem as exc:
            problem(name, str(exc))
            return default

    if kind == AssetKind.CHARGER:
        max_kw = take("max_power_kw", lambda v: check_kw(v, exclusive_minimum=0), required=True)
        min_kw = take("min_power_kw", lambda v: check_kw(v, minimum=0), default=0.0)
        priority = take("priority", lambda v: check_int(v, minimum=-1000, maximum=1000), default=0)
        failsafe = take("failsafe_power_kw", lambda v: check_kw(v, minimum=0), default=None)
        if failsafe is None:
            failsafe = min_kw
        if max_kw is not None and min_kw is not None and min_kw > max_kw:
            problem("min_power_kw", "must not exceed max_power_kw")
        if max_kw is not None and failsafe is not None and failsafe > max_kw:
            problem("failsafe_power_kw", "must not exceed max_power_kw")
        phases = take("phases", lambda v: check_int(v, minimum=1, maximum=3), default=3)
        if phases == 2:
            problem("phases", "must be 1 or 3")
            phases = None
        rotations = SINGLE_PHASE_ROTATIONS if phases == 1 else THREE_PHASE_ROTATIONS
        rotation = take(
            "phase_rotation",
            lambda v: check_choice(v, (*SINGLE_PHASE_ROTATIONS, *THREE_PHASE_ROTATIONS)),
            default=DEFAULT_ROTATION.get(phases),
        )
        if phases is not None and rotation is not None and rotation not in rotations:
            problem(
                "phase_rotation",
                f"must be one of {', '.join(rotations)} for a {phases}-phase charger",
            )
        min_a = take("min_current_a", lambda v: check_amps(v, minimum=0))
        max_a = take("max_current_a", lambda v: check_amps(v, exclusive_minimum=0))
        if min_a is not None and max_a is not None and min_a > max_a:
            problem("min_current_a", "must not exceed max_current_a")
        # OCPP: the charger's charging station and EVSE (the connector id on 1.6), both or
        # neither (spec 4.8).
        station = take("station_id", lambda v: check_id(v, "station_id"), default=None)
        evse = take("evse_id", lambda v: check_int(v, minimum=1, maximum=1000), default=None)
        if (raw.get("station_id") is None) != (raw.get("evse_id") is None):
            missing = "evse_id" if raw.get("evse_id") is None else "station_id"
            problem(
                missing, "is required with " + ("station_id" if missing == "evse_id" else "evse_id")
            )
        out.update(
            max_power_kw=max_kw,
            min_power_kw=min_kw,
            priority=priority,
            failsafe_power_kw=failsafe,
            phases=phases,
            phase_rotation=rotation,
            min_current_a=min_a,
            max_current_a=max_a,
            station_id=station,
            evse_id=evse,
        )
    elif kind in (AssetKind.SITE_LOAD, AssetKind.BATTERY):
        out["rated_power_kw"] = take("rated_power_kw", lambda v: check_kw(v, exclusive_minimum=0))
        fallback_min = 0 if kind == AssetKind.SITE_LOAD else None
        out["fallback_kw"] = take("fallback_kw", lambda v: check_kw(v, minimum=fallback_min))
    elif kind == AssetKind.PV:
        out["rated_power_kw"] = take("rated_power_kw", lambda v: check_kw(v, exclusive_minimum=0))
    return None if bad else out


def _find_cycles(parent_of: dict[str, str | None]) -> list[list[str]]:
    """Each cycle once, its node ids sorted; nodes merely hanging below a cycle are not on it."""
    state: dict[str, int] = {}  # 1 = on the current walk, 2 = done
    cycles: list[list[str]] = []
    for start in sorted(parent_of):
        walk: list[str] = []
        current: str | None = start
        while current is not None and current in parent_of and state.get(current) is None:
            state[current] = 1
            walk.append(current)
            current = parent_of[current]
        if current is not None and state.get(current) == 1:
            cycles.append(sorted(walk[walk.index(current) :]))
        for node in walk:
            state[node] = 2
    return sorted(cycles)


def validate_topology(
    raw_nodes: Any,
    raw_assets: Any,
    *,
    current_node_ids: frozenset[str] = frozenset(),
    current_asset_ids: frozenset[str] = frozenset(),
    references: References | None = None,
    station_ids: frozenset[str] | None = None,
) -> ValidationResult:
    """`station_ids`: the OCPP charging stations of the microgrid, which a charger's
    `station_id` must name (STATION_NOT_FOUND); None (a profile checked before its stations
    exist) skips that check."""
    errors: list[ErrorItem] = []
    if not isinstance(raw_nodes, list):
        errors.append(ErrorItem("FIELD_INVALID", "nodes must be a list", field="nodes"))
        raw_nodes = []
    if not isinstance(raw_assets, list):
        errors.append(ErrorItem("FIELD_INVALID", "assets must be a list", field="assets"))
        raw_assets = []

    # Structure is judged on every node that names itself, even one with a bad
    # field, so that one typo does not hide a cycle or an orphan.
    nodes = [_clean_node(raw, i, errors) for i, raw in enumerate(raw_nodes)]
    assets = [_clean_asset(raw, i, errors) for i, raw in enumerate(raw_assets)]

    named_nodes = [raw for raw in raw_nodes if _ident(raw, "node_id") is not None]
    node_counts = Counter(raw["node_id"] for raw in named_nodes)
    for node_id, count in sorted(node_counts.items()):
        if count > 1:
            errors.append(
                ErrorItem(
                    "TOPOLOGY_DUPLICATE_ID",
                    f"node_id {node_id!r} is used by {count} nodes",
                    node_id=node_id,
                    details={"count": count},
                )
            )
    asset_counts = Counter(
        a for a in (_ident(raw, "asset_id") for raw in raw_assets) if a is not None
    )
    for asset_id, count in sorted(asset_counts.items()):
        if count > 1:
            errors.append(
                ErrorItem(
                    "TOPOLOGY_DUPLICATE_ID",
                    f"asset_id {asset_id!r} is used by {count} assets",
                    asset_id=asset_id,
                    details={"count": count},
                )
            )

    parent_of: dict[str, str | None] = {}
    kind_of: dict[str, Any] = {}
    for raw in named_nodes:
        node_id = raw["node_id"]
        if node_id in parent_of:
            continue  # a duplicate: reported above, judged by its first occurrence
        parent = raw.get("parent_id")
        parent_of[node_id] = parent if isinstance(parent, str) else None
        kind_of[node_id] = raw.get("kind")

    roots = sorted(
        n for n, p in parent_of.items() if kind_of[n] == NodeKind.GRID_CONNECTION and p is None
    )
    parented_roots = sorted(
        n for n, p in parent_of.items() if kind_of[n] == NodeKind.GRID_CONNECTION and p
    )
    if len(roots) != 1 or parented_roots:
        if not roots:
            why = "there is no root: one Microgrid Node of kind GRID_CONNECTION without a parent"
        elif len(roots) > 1:
            why = f"there are {len(roots)} GRID_CONNECTION nodes without a parent; exactly one is allowed"
        else:
            why = "a GRID_CONNECTION node must not have a parent"
        errors.append(
            ErrorItem(
                "TOPOLOGY_ROOT_INVALID",
                why,
                details={"roots": roots, "grid_connections_with_parent": parented_roots},
            )
        )

    for node_id, parent in sorted(parent_of.items()):
        if parent is None:
            if kind_of[node_id] != NodeKind.GRID_CONNECTION:
                errors.append(
                    ErrorItem(
                        "TOPOLOGY_ORPHAN_NODE",
                        f"Microgrid Node {node_id!r} has no parent",
                        node_id=node_id,
                        details={"parent_id": None},
                    )
                )
        elif parent not in parent_of:
            errors.append(
                ErrorItem(
                    "TOPOLOGY_ORPHAN_NODE",
                    f"Microgrid Node {node_id!r} names parent {parent!r}, which is not in the topology",
                    node_id=node_id,
                    details={"parent_id": parent},
                )
            )

    linked = {n: p for n, p in parent_of.items() if p is None or p in parent_of}
    for cycle in _find_cycles(linked):
        errors.append(
            ErrorItem(
                "TOPOLOGY_CYCLE",
                f"Microgrid Nodes {', '.join(cycle)} form a cycle",
                node_id=cycle[0],
                details={"node_ids": cycle},
            )
        )

    for raw in raw_assets:
        asset_id, node_id = _ident(raw, "asset_id"), _ident(raw, "node_id")
        if node_id is not None and node_id not in parent_of:
            errors.append(
                ErrorItem(
                    "ASSET_NODE_NOT_FOUND",
                    f"asset {asset_id!r} is attached to Microgrid Node {node_id!r}, which is not in the topology",
                    asset_id=asset_id,
                    details={"node_id": node_id},
                )
            )

    # One charger per (station_id, evse_id); the station must be one of the microgrid's.
    evse_users: dict[tuple[str, int], list[str]] = {}
    for raw in raw_assets:
        if not isinstance(raw, dict) or raw.get("kind") != AssetKind.CHARGER:
            continue
        station, evse = raw.get("station_id"), raw.get("evse_id")
        if not isinstance(station, str) or isinstance(evse, bool) or not isinstance(evse, int):
            continue
        asset_id = _ident(raw, "asset_id")
        evse_users.setdefault((station, evse), []).append(str(asset_id))
        if station_ids is not None and station not in station_ids:
            errors.append(
                ErrorItem(
                    "STATION_NOT_FOUND",
                    f"charger {asset_id!r} names OCPP station {station!r}, which is not a "
                    "charging station of this microgrid",
                    asset_id=asset_id,
                    field="station_id",
                    details={"station_id": station},
                )
            )
    for (station, evse), users in sorted(evse_users.items()):
        if len(users) > 1:
            errors.append(
                ErrorItem(
                    "TOPOLOGY_DUPLICATE_ID",
                    f"EVSE {evse} of station {station!r} is mapped to {len(users)} chargers",
                    asset_id=sorted(users)[0],
                    field="evse_id",
                    details={"station_id": station, "evse_id": evse, "asset_ids": sorted(users)},
                )
            )

    refs = references or {}
    new_assets = set(asset_counts)
    for node_id in sorted(current_node_ids - set(parent_of)):
        if refs.get(("node", node_id)):
            errors.append(
                _in_use("Microgrid Node", node_id, refs[("node", node_id)], node_id=node_id)
            )
    for asset_id in sorted(current_asset_ids - new_assets):
        if refs.get(("asset", asset_id)):
            errors.append(_in_use("asset", asset_id, refs[("asset", asset_id)], asset_id=asset_id))

    errors = _dedupe(sort_errors(errors))
    clean = CleanTopology()
    if not errors:
        clean.nodes = tree_order([n for n in nodes if n is not None])
        clean.assets = sorted((a for a in assets if a is not None), key=lambda a: a["asset_id"])
    return ValidationResult(topology=clean, errors=errors)


def _in_use(what: str, ident: str, refs: Sequence[dict[str, Any]], **ids: str) -> ErrorItem:
    listed = sorted(refs, key=lambda r: (str(r.get("type")), str(r.get("id"))))
    kinds = ", ".join(sorted({str(r.get("type")) for r in listed}))
    return ErrorItem(
        "NODE_IN_USE",
        f"{what} {ident!r} cannot be removed: still referenced by {kinds}",
        details={"references": listed},
        **ids,
    )


def _dedupe(errors: list[ErrorItem]) -> list[ErrorItem]:
    seen: set[tuple] = set()
    out = []
    for e in errors:
        key = (e.sort_key(), repr(sorted(e.details.items())))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
