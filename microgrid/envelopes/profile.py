"""The `oscp_peers:` section of depot profiles (spec 8.1), registered with the simulator loader.

    oscp_peers:
      - {name: dso-north, token: "a-long-random-token", heartbeat_interval_s: 60,
         groups: [{group_id: GRP-N, scope: {type: MICROGRID}}]}

`check` validates without writing, against the profile's own Microgrid Nodes;
`apply` creates or updates each peer by name (its token stored hashed) and
makes this microgrid's group bindings exactly the listed ones, through the
same services as the admin, touching only what differs: loading the same
file twice changes nothing. Peers are never deleted by a profile (their
messages and envelopes are audit); bindings of this microgrid that the
section no longer lists are removed.
"""

from __future__ import annotations

from typing import Any

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_id
from microgrid.envelopes.models import OscpGroupBinding
from microgrid.envelopes.services import (
    oscp_group_binding_delete,
    oscp_group_binding_save,
    oscp_peer_save,
    peer_problems,
)

SECTION = "oscp_peers"
PEER_FIELDS = ("name", "token", "heartbeat_interval_s", "groups")
GROUP_FIELDS = ("group_id", "scope")
DEFAULT_HEARTBEAT_INTERVAL_S = 60


def _unknown(raw: dict, known, prefix: str) -> list[ErrorItem]:
    return [
        ErrorItem("PROFILE_INVALID", f"{prefix}{key} is not a known field", field=f"{prefix}{key}")
        for key in sorted(set(raw) - set(known), key=str)
    ]


def _profile_nodes(profile: dict[str, Any]) -> set[str]:
    nodes = profile.get("nodes")
    return {
        n["node_id"]
        for n in (nodes if isinstance(nodes, list) else [])
        if isinstance(n, dict) and isinstance(n.get("node_id"), str)
    }


def _check_scope(scope: Any, field: str, nodes: set[str]) -> list[ErrorItem]:
    if scope == {"type": "MICROGRID"}:
        return []
    if (
        isinstance(scope, dict)
        and scope.get("type") == "NODE"
        and set(scope) == {"type", "node_id"}
    ):
        node_id = scope["node_id"]
        try:
            check_id(node_id, "node_id")
        except FieldProblem as exc:
            return [ErrorItem("FIELD_INVALID", str(exc), field=f"{field}.node_id")]
        if node_id not in nodes:
            return [
                ErrorItem(
                    "NODE_NOT_FOUND",
                    f"no Microgrid Node {node_id!r} in this profile",
                    node_id=node_id,
                    field=f"{field}.node_id",
                )
            ]
        return []
    return [
        ErrorItem(
            "FIELD_INVALID",
            "scope must be {type: MICROGRID} or {type: NODE, node_id: ...}",
            field=field,
        )
    ]


def check_oscp_peers(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    if not isinstance(value, list):
        return [ErrorItem("FIELD_INVALID", "oscp_peers must be a list of peers", field=SECTION)]
    errors: list[ErrorItem] = []
    nodes = _profile_nodes(profile)
    names: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for i, raw in enumerate(value):
        prefix = f"{SECTION}[{i}]."
        if not isinstance(raw, dict):
            errors.append(ErrorItem("FIELD_INVALID", "a peer must be a mapping", field=prefix[:-1]))
            continue
        errors.extend(_unknown(raw, PEER_FIELDS, prefix))
        errors.extend(
            peer_problems(
                raw.get("name"),
                raw.get("token"),
                raw.get("heartbeat_interval_s"),
                prefix=prefix,
                token_required=True,
            )
        )
        name, token = raw.get("name"), raw.get("token")
        if isinstance(name, str):
            if name in names:
                errors.append(
                    ErrorItem(
                        "FIELD_INVALID",
                        f"peer {name!r} is listed twice ({SECTION}[{names[name]}])",
                        field=f"{prefix}name",
                    )
                )
            names.setdefault(name, i)
        if isinstance(token, str):
            if token.strip() in tokens:
                errors.append(
                    ErrorItem(
                        "FIELD_INVALID",
                        f"the same token as {SECTION}[{tokens[token.strip()]}]",
                        field=f"{prefix}token",
                    )
                )
            tokens.setdefault(token.strip(), i)
        groups = raw.get("groups", [])
        if not isinstance(groups, list):
            errors.append(
                ErrorItem("FIELD_INVALID", "groups must be a list", field=f"{prefix}groups")
            )
            continue
        seen: dict[str, int] = {}
        for j, group in enumerate(groups):
            where = f"{prefix}groups[{j}]"
            if not isinstance(group, dict):
                errors.append(ErrorItem("FIELD_INVALID", "a group must be a mapping", field=where))
                continue
            errors.extend(_unknown(group, GROUP_FIELDS, f"{where}."))
            group_id = group.get("group_id")
            try:
                check_id(group_id, "group_id")
            except FieldProblem as exc:
                errors.append(ErrorItem("FIELD_INVALID", str(exc), field=f"{where}.group_id"))
            else:
                if group_id in seen:
                    errors.append(
                        ErrorItem(
                            "FIELD_INVALID",
                            f"group {group_id!r} is listed twice: a group maps to one scope",
                            field=f"{where}.group_id",
                        )
                    )
                seen.setdefault(group_id, j)
            errors.extend(_check_scope(group.get("scope"), f"{where}.scope", nodes))
    return errors


def apply_oscp_peers(microgrid, value: Any, user) -> None:
    wanted: dict[tuple[int, str], dict] = {}
    for i, raw in enumerate(value):
        peer, _ = oscp_peer_save(
            name=raw["name"],
            token=raw["token"],
            heartbeat_interval_s=raw.get("heartbeat_interval_s", DEFAULT_HEARTBEAT_INTERVAL_S),
            user=user,
        )
        for j, group in enumerate(raw.get("groups", [])):
            wanted[(peer.pk, group["group_id"])] = {
                "peer": peer,
                "scope": group["scope"],
                "field": f"{SECTION}[{i}].groups[{j}]",
            }
    for binding in OscpGroupBinding.objects.filter(microgrid=microgrid).select_related("peer"):
        if (binding.peer_id, binding.group_id) not in wanted:
            oscp_group_binding_delete(binding=binding, user=user)
    for (_, group_id), item in wanted.items():
        try:
            oscp_group_binding_save(
                peer=item["peer"],
                group_id=group_id,
                microgrid=microgrid,
                scope=item["scope"],
                user=user,
            )
        except DomainError as exc:
            raise DomainError.from_errors(
                [ErrorItem(exc.code, exc.message, field=item["field"], details=exc.details)],
                f"the profile is invalid: {exc.message}",
            ) from None


# Found by the simulator's profile loader (simulator/loader.py): the section, its order, its
# check and how it is applied.
ORDER = 20
check = check_oscp_peers
apply = apply_oscp_peers
