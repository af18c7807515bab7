"""The `legacy_circuits:` section of depot profiles (spec 8.1), registered with the simulator loader.

```yaml
legacy_circuits:
  - {circuit_id: CIR-101, name: Board 1, configured_capacity_kw: 350, alias: {type: NODE, node_id: sb-1}}
  - {circuit_id: CIR-103, name: Old split, configured_capacity_kw: 300,
     aliases: [{type: NODE, node_id: sb-1}, {type: NODE, node_id: grp-a}]}
```

`alias` or `aliases` (neither: a circuit without an alias). `check` validates
against the profile's own nodes and chargers without writing; `apply` makes
each listed circuit and its active aliases on this microgrid what the profile
says, through the same services as admin: aliases the profile no longer lists
are deactivated (kept in history), a changed circuit is updated, and nothing
is written when nothing differs, so loading twice changes nothing. Circuits
the profile does not list are left alone.
"""

from __future__ import annotations

from typing import Any

from legacy_circuit.choices import AliasScope
from legacy_circuit.models import CircuitAlias, LegacyCircuit
from legacy_circuit.services import (
    alias_problems,
    circuit_alias_save,
    circuit_alias_set_active,
    legacy_circuit_save,
)
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_id, check_kw, check_text

SECTION = "legacy_circuits"
CIRCUIT_FIELDS = ("circuit_id", "name", "configured_capacity_kw", "alias", "aliases")


def _alias_key(raw: dict[str, Any]) -> tuple[str, str, str]:
    return (raw.get("type"), raw.get("node_id") or "", raw.get("asset_id") or "")


def _profile_targets(profile: dict[str, Any]) -> tuple[set[str], set[str]]:
    nodes = profile.get("nodes")
    assets = profile.get("assets")
    node_ids = {
        n["node_id"]
        for n in (nodes if isinstance(nodes, list) else [])
        if isinstance(n, dict) and isinstance(n.get("node_id"), str)
    }
    charger_ids = {
        a["asset_id"]
        for a in (assets if isinstance(assets, list) else [])
        if isinstance(a, dict) and isinstance(a.get("asset_id"), str) and a.get("kind") == "CHARGER"
    }
    return node_ids, charger_ids


def _aliases_of(raw: dict[str, Any]) -> list[Any]:
    if "alias" in raw:
        return [raw["alias"]]
    aliases = raw.get("aliases")
    return aliases if isinstance(aliases, list) else []


def check_legacy_circuits(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    if not isinstance(value, list):
        return [ErrorItem("FIELD_INVALID", f"{SECTION} must be a list of circuits", field=SECTION)]
    node_ids, charger_ids = _profile_targets(profile)
    errors: list[ErrorItem] = []
    seen: set[str] = set()

    def bad(field: str, message: str, code: str = "FIELD_INVALID", **ids: str) -> None:
        errors.append(ErrorItem(code, f"{field} {message}", field=field, **ids))

    for i, raw in enumerate(value):
        prefix = f"{SECTION}[{i}]"
        if not isinstance(raw, dict):
            bad(prefix, "must be a mapping {circuit_id, name, configured_capacity_kw, alias}")
            continue
        for key in sorted(set(raw) - set(CIRCUIT_FIELDS), key=str):
            bad(f"{prefix}.{key}", "is not a field of a legacy circuit", "PROFILE_INVALID")
        try:
            circuit_id = check_id(raw.get("circuit_id"), "circuit_id")
            if circuit_id in seen:
                bad(f"{prefix}.circuit_id", f"{circuit_id!r} is listed twice")
            seen.add(circuit_id)
        except FieldProblem as exc:
            bad(f"{prefix}.circuit_id", str(exc))
        try:
            check_text(raw.get("name"), max_length=200)
        except FieldProblem as exc:
            bad(f"{prefix}.name", str(exc))
        try:
            check_kw(raw.get("configured_capacity_kw"), minimum=0)
        except FieldProblem as exc:
            bad(f"{prefix}.configured_capacity_kw", str(exc))
        if "alias" in raw and "aliases" in raw:
            bad(prefix, "has both alias and aliases; give one")
        if "aliases" in raw and not isinstance(raw["aliases"], list):
            bad(f"{prefix}.aliases", "must be a list of aliases")
        keys: set[tuple[str, str, str]] = set()
        for j, alias in enumerate(_aliases_of(raw)):
            where = f"{prefix}.alias" if "alias" in raw else f"{prefix}.aliases[{j}]"
            if not isinstance(alias, dict):
                bad(where, "must be a mapping {type, node_id | asset_id}")
                continue
            kind = alias.get("type")
            for key in sorted(set(alias) - {"type", "node_id", "asset_id"}, key=str):
                bad(f"{where}.{key}", "is not a field of an alias", "PROFILE_INVALID")
            found = alias_problems(
                scope_type=kind if isinstance(kind, str) else "",
                node_id=alias.get("node_id") or "",
                asset_id=alias.get("asset_id") or "",
                prefix=f"{where}.",
            )
            errors.extend(found)
            if found:
                continue
            if kind == AliasScope.NODE and alias["node_id"] not in node_ids:
                bad(
                    f"{where}.node_id",
                    f"names Microgrid Node {alias['node_id']!r}, which is not in this profile",
                    "NODE_NOT_FOUND",
                    node_id=alias["node_id"],
                )
            if kind == AliasScope.ASSET and alias["asset_id"] not in charger_ids:
                bad(
                    f"{where}.asset_id",
                    f"names {alias['asset_id']!r}, which is not a CHARGER of this profile",
                    "ASSET_NOT_FOUND",
                    asset_id=alias["asset_id"],
                )
            key = _alias_key(alias)
            if key in keys:
                bad(where, "repeats an alias of this circuit")
            keys.add(key)
    return errors


def apply_legacy_circuits(microgrid, value: Any, user) -> None:
    depot = microgrid.depot
    for raw in value:
        circuit_id = raw["circuit_id"]
        existing = LegacyCircuit.objects.filter(circuit_id=circuit_id).first()
        if existing is not None and existing.depot_id not in (None, depot.pk):
            raise DomainError.from_errors(
                [
                    ErrorItem(
                        "PROFILE_INVALID",
                        f"circuit {circuit_id!r} belongs to another depot",
                        field=f"{SECTION}.circuit_id",
                    )
                ]
            )
        circuit, _ = legacy_circuit_save(
            circuit_id=circuit_id,
            name=raw["name"],
            configured_capacity_kw=raw["configured_capacity_kw"],
            depot=depot,
            user=user,
        )
        wanted = [_alias_key(a) for a in _aliases_of(raw)]
        for alias in CircuitAlias.objects.filter(circuit=circuit).order_by("pk"):
            key = (alias.scope_type, alias.node_id, alias.asset_id)
            if alias.microgrid_id == microgrid.pk and key in wanted:
                wanted.remove(key)
                circuit_alias_set_active(alias=alias, active=True, user=user)
            else:
                circuit_alias_set_active(alias=alias, active=False, user=user)
        for scope_type, node_id, asset_id in wanted:
            circuit_alias_save(
                alias=CircuitAlias(
                    circuit=circuit,
                    microgrid=microgrid,
                    scope_type=scope_type,
                    node_id=node_id,
                    asset_id=asset_id,
                ),
                user=user,
            )


# Found by the simulator's profile loader (simulator/loader.py): the section, its order, its
# check and how it is applied.
ORDER = 60
check = check_legacy_circuits
apply = apply_legacy_circuits
