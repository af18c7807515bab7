"""Depot profiles (YAML) loaded through the same services as the API.

A profile is checked whole before anything is written: unknown sections or
fields, an invalid topology, bad policies or references are all reported at
once (PROFILE_INVALID with the API's codes in `errors`). Loading the same
file twice changes nothing; a changed file is applied as one topology save.

Apps that own a profile section say so in a `profile.py` module, which the loader
discovers through the app registry as Django's admin discovers `admin.py` (no app imports the
simulator): `SECTION` (its key), `ORDER` (sections apply in this order, after the topology),
`check(value, profile)` -> [ErrorItem] (pure) and `apply(microgrid, value, user)` (inside the
load transaction). A section with a negative ORDER applies before the topology, for what the
topology names (the OCPP stations of `ocpp_stations:`, named by chargers' `station_id`). The
loader refuses sections nobody handles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import yaml
from django.apps import apps
from django.db import transaction
from django.utils.module_loading import module_has_submodule

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_kw
from microgrid.topology import selectors as topology_selectors
from microgrid.topology import services as topology_services
from microgrid.topology.access import SYSTEM
from microgrid.topology.api.serializers import microgrid_input
from microgrid.topology.choices import HeadroomMode
from microgrid.topology.models import Microgrid
from microgrid.topology.validation import validate_topology

CORE_SECTIONS = ("depot", "microgrid", "nodes", "assets")


@dataclass(frozen=True)
class Section:
    name: str
    order: int
    # check(value, profile) -> list of ErrorItem (pure: no writes)
    check: Callable[[Any, dict[str, Any]], list[ErrorItem]]
    # apply(microgrid, value, user) -> None; runs inside the load transaction
    apply: Callable[[Microgrid, Any, Any], None]


@functools.cache
def sections() -> dict[str, Section]:
    """Every app's profile section (its `<app>/profile.py`), in the order they apply."""
    found = []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "profile"):
            module = import_module(f"{config.name}.profile")
            found.append(Section(module.SECTION, module.ORDER, module.check, module.apply))
    return {s.name: s for s in sorted(found, key=lambda s: s.order)}


def known_sections() -> list[str]:
    return list(CORE_SECTIONS) + sorted(sections())


@dataclass
class LoadResult:
    microgrid: Microgrid
    created: bool
    topology_changed: bool


def read_profile(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DomainError(
            "PROFILE_INVALID", f"cannot read profile {path}: {exc}", {"path": str(path)}
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DomainError(
            "PROFILE_INVALID", f"profile {path} is not valid YAML: {exc}", {"path": str(path)}
        ) from exc
    if not isinstance(data, dict):
        raise DomainError(
            "PROFILE_INVALID", "a profile must be a YAML mapping", {"path": str(path)}
        )
    return data


def check_profile(profile: dict[str, Any]) -> list[ErrorItem]:
    """Every problem of a profile, without writing anything."""
    errors: list[ErrorItem] = []
    known = set(known_sections())
    for key in sorted(set(profile) - known, key=str):
        errors.append(
            ErrorItem(
                "PROFILE_INVALID",
                f"unknown section {key!r} (known: {', '.join(known_sections())})",
                field=str(key),
            )
        )
    for name in ("depot", "microgrid", "nodes"):
        if name not in profile:
            errors.append(ErrorItem("PROFILE_INVALID", f"section {name!r} is required", field=name))
    depot, microgrid = profile.get("depot"), profile.get("microgrid")
    if "depot" in profile and not isinstance(depot, dict):
        errors.append(ErrorItem("FIELD_INVALID", "depot must be a mapping", field="depot"))
    if "microgrid" in profile and not isinstance(microgrid, dict):
        errors.append(ErrorItem("FIELD_INVALID", "microgrid must be a mapping", field="microgrid"))
    if isinstance(microgrid, dict):
        for key in sorted(
            set(microgrid)
            - {"microgrid_id", "name", "telemetry_stale_after_s", "cycle_interval_s", *HEADROOM}
        ):
            errors.append(
                ErrorItem(
                    "PROFILE_INVALID",
                    f"microgrid.{key} is not a known field",
                    field=f"microgrid.{key}",
                )
            )
    if isinstance(microgrid, dict):
        errors.extend(_check_headroom(microgrid))
    if isinstance(depot, dict):
        for key in sorted(set(depot) - {"depot_id", "name", "timezone"}):
            errors.append(
                ErrorItem(
                    "PROFILE_INVALID", f"depot.{key} is not a known field", field=f"depot.{key}"
                )
            )
    result = validate_topology(profile.get("nodes", []), profile.get("assets", []) or [])
    errors.extend(result.errors)
    for name, section in sections().items():
        if name in profile:
            errors.extend(section.check(profile[name], profile))
    return errors


def load_profile(profile: dict[str, Any], *, user=None) -> LoadResult:
    errors = check_profile(profile)
    if errors:
        raise DomainError.from_errors(errors, f"the profile is invalid: {len(errors)} problem(s)")
    depot, meta = profile["depot"], profile["microgrid"]
    with transaction.atomic():
        existing = (
            Microgrid.objects.filter(microgrid_id=meta.get("microgrid_id"))
            .select_related("depot")
            .first()
        )
        created = existing is None
        plain = {k: v for k, v in meta.items() if k not in HEADROOM}
        if created:
            values = microgrid_input({**plain, "depot": depot})
            microgrid = topology_services.microgrid_create(**values, user=user)
        else:
            microgrid = existing
            _update_settings(microgrid, depot, plain)
        topology_services.microgrid_headroom_set(
            microgrid=microgrid,
            mode=meta.get("headroom_mode", HeadroomMode.OFF),
            static_kw=float(meta.get("headroom_static_kw", 0.0)),
            user=user,
        )
        microgrid = topology_selectors.microgrid_get(microgrid.microgrid_id, user=SYSTEM)
        for name, section in sections().items():
            if name in profile and section.order < 0:
                section.apply(microgrid, profile[name], user)
        current = topology_selectors.topology_document(microgrid)
        wanted = validate_topology(profile["nodes"], profile.get("assets") or []).topology
        changed = (current["nodes"], current["assets"]) != (wanted.nodes, wanted.assets)
        if changed:
            topology_services.topology_replace(
                microgrid=microgrid,
                base_version=microgrid.topology_version,
                nodes=profile["nodes"],
                assets=profile.get("assets") or [],
                user=user,
            )
        for name, section in sections().items():
            if name in profile and section.order >= 0:
                section.apply(microgrid, profile[name], user)
    return LoadResult(microgrid=microgrid, created=created, topology_changed=changed)


def _update_settings(microgrid: Microgrid, depot: dict[str, Any], meta: dict[str, Any]) -> None:
    if microgrid.depot.depot_id != depot.get("depot_id"):
        raise DomainError.from_errors(
            [
                ErrorItem(
                    "PROFILE_INVALID",
                    f"microgrid {microgrid.microgrid_id!r} belongs to depot {microgrid.depot.depot_id!r}, "
                    f"not {depot.get('depot_id')!r}",
                    field="depot.depot_id",
                )
            ]
        )
    d = microgrid.depot
    new_depot = {"name": depot.get("name", d.name), "timezone": depot.get("timezone", d.timezone)}
    if any(getattr(d, k) != v for k, v in new_depot.items()):
        for k, v in new_depot.items():
            setattr(d, k, v)
        d.save()
    fields = {
        "name": meta.get("name", microgrid.name),
        "telemetry_stale_after_s": meta.get("telemetry_stale_after_s", 60),
        "cycle_interval_s": meta.get("cycle_interval_s", 15),
    }
    if any(getattr(microgrid, k) != v for k, v in fields.items()):
        for k, v in fields.items():
            setattr(microgrid, k, v)
        microgrid.save()


# Headroom (spec 4.3) is set in the profile's microgrid section, as support sets it in admin.
HEADROOM = ("headroom_mode", "headroom_static_kw")


def _check_headroom(meta: dict[str, Any]) -> list[ErrorItem]:
    errors = []
    mode = meta.get("headroom_mode", HeadroomMode.OFF)
    if mode not in HeadroomMode.values:
        errors.append(
            ErrorItem(
                "FIELD_INVALID",
                f"microgrid.headroom_mode must be one of {', '.join(HeadroomMode.values)}",
                field="microgrid.headroom_mode",
            )
        )
    if "headroom_static_kw" in meta:
        try:
            check_kw(meta["headroom_static_kw"], minimum=0, maximum=100_000)
        except FieldProblem as exc:
            errors.append(
                ErrorItem(
                    "FIELD_INVALID",
                    f"microgrid.headroom_static_kw {exc}",
                    field="microgrid.headroom_static_kw",
                )
            )
    return errors
