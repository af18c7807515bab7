"""The `capability_bindings:` section of depot profiles (spec 8.1), registered with the loader.

`check` validates without writing, against the profile's own Microgrid Nodes:
fields, that a NODE scope names a node of the profile, and that no two
entries of one capability with different sources overlap. `apply` binds each
entry through the same service as the API: an entry already bound to the
same source is left as it is, so loading the same file twice changes
nothing. Bindings the profile does not list are left alone, and an entry
that competes with a binding made since (say a transfer to another source)
is refused with CAPABILITY_SOURCE_CONFLICT, like any other bind: a profile
never silently takes a capability from its current source.
"""

from __future__ import annotations

from typing import Any

from microgrid.capabilities.api.serializers import binding_problems
from microgrid.capabilities.scopes import overlaps
from microgrid.capabilities.services import BindingRequest, capability_binding_create
from microgrid.common.errors import ErrorItem
from microgrid.topology.tree import ancestors_map

SECTION = "capability_bindings"


def _profile_nodes(profile: dict[str, Any]) -> list[tuple[str, str | None]]:
    nodes = profile.get("nodes")
    return [
        (raw["node_id"], raw.get("parent_id"))
        for raw in (nodes if isinstance(nodes, list) else [])
        if isinstance(raw, dict) and isinstance(raw.get("node_id"), str)
    ]


def check_bindings(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    if not isinstance(value, list):
        return [
            ErrorItem(
                "FIELD_INVALID",
                "capability_bindings must be a list of {capability_type, scope, source_device_id}",
                field=SECTION,
            )
        ]
    pairs = _profile_nodes(profile)
    known = {node_id for node_id, _ in pairs}
    ancestors = ancestors_map(pairs)
    errors: list[ErrorItem] = []
    accepted = []
    for i, raw in enumerate(value):
        prefix = f"{SECTION}[{i}]."
        values, problems = binding_problems(raw, prefix=prefix)
        errors.extend(problems)
        if values is None:
            continue
        request = BindingRequest(**values)
        if not request.scope.is_microgrid and request.scope.node_id not in known:
            errors.append(
                ErrorItem(
                    "NODE_NOT_FOUND",
                    f"no Microgrid Node {request.scope.node_id!r} in this profile",
                    node_id=request.scope.node_id,
                    field=f"{prefix}scope.node_id",
                )
            )
            continue
        for j, other in accepted:
            if (
                other.capability_type == request.capability_type
                and overlaps(other.scope, request.scope, ancestors)
                and other != request
            ):
                errors.append(
                    ErrorItem(
                        "CAPABILITY_SOURCE_CONFLICT",
                        f"{request.capability_type} for {request.scope.to_dict()} from "
                        f"{request.source_device_id!r} overlaps {SECTION}[{j}] "
                        f"({other.source_device_id!r} for {other.scope.to_dict()})",
                        field=f"{prefix}scope",
                    )
                )
                break
        else:
            accepted.append((i, request))
    return errors


def apply_bindings(microgrid, value: Any, user) -> None:
    for raw in value:
        values, _ = binding_problems(raw)  # the section was checked: no problems here
        capability_binding_create(microgrid=microgrid, **values, user=user)
