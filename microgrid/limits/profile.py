"""The `limits:` section of depot profiles (spec 8.1), registered with the simulator loader.

`check` validates without writing, against the profile's own Microgrid Nodes
(existence, the physical rating guardrail, duplicates, overlaps); `apply`
replaces the microgrid's policies with the profile's through the same
service as the API, touching only what differs, so loading the same file
twice changes nothing. LEGACY_TOU policies written by legacy clients stay
unless the profile lists them itself.
"""

from __future__ import annotations

from typing import Any

from microgrid.common.errors import ErrorItem
from microgrid.common.fields import is_number
from microgrid.limits.api.serializers import parse_policy
from microgrid.limits.choices import LimitSource
from microgrid.limits.services import limit_policies_replace
from microgrid.limits.validation import NodeFacts, check_policy_set, raise_problems

SECTION = "limits"


def _facts(profile: dict[str, Any]) -> NodeFacts:
    ratings: dict[str, float | None] = {}
    root_id = None
    nodes = profile.get("nodes")
    for raw in nodes if isinstance(nodes, list) else []:
        if not isinstance(raw, dict) or not isinstance(raw.get("node_id"), str):
            continue
        rating = raw.get("physical_rating_kw")
        # An unusable rating is the topology validator's finding; do not repeat it here.
        ratings.setdefault(raw["node_id"], float(rating) if is_number(rating) else None)
        if raw.get("kind") == "GRID_CONNECTION" and raw.get("parent_id") is None:
            root_id = root_id or raw["node_id"]
    return NodeFacts(ratings=ratings, root_id=root_id)


def check_limits(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    if not isinstance(value, list):
        return [ErrorItem("FIELD_INVALID", "limits must be a list of policies", field=SECTION)]
    errors: list[ErrorItem] = []
    specs = []
    for i, raw in enumerate(value):
        prefix = f"{SECTION}[{i}]."
        spec, problems = parse_policy(raw, prefix=prefix, default_source=LimitSource.SIMULATOR)
        errors.extend(problems)
        if spec is not None:
            specs.append((prefix, spec))
    errors.extend(check_policy_set(specs, _facts(profile)))
    return errors


def apply_limits(microgrid, value: Any, user) -> None:
    """Write a checked section (`check_limits` found nothing)."""
    specs = []
    for i, raw in enumerate(value):
        prefix = f"{SECTION}[{i}]."
        spec, problems = parse_policy(raw, prefix=prefix, default_source=LimitSource.SIMULATOR)
        raise_problems(problems)
        specs.append((prefix, spec))
    wanted = {spec.values for _, spec in specs}
    limit_policies_replace(
        microgrid=microgrid,
        specs=specs,
        replaces=lambda s: s.source != LimitSource.LEGACY_TOU or s.values in wanted,
        user=user,
    )
