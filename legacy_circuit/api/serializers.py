"""The frozen legacy bodies: the TOU write, read here at the edge, and the answers.

`tou_limits_input` reads a TOU write in the legacy contract's words (`tou_limits[1].start`,
"... is not a field of a TOU limits request"): the envelope by hand, as the contract fixes
its messages, each entry by the limits app's policy serializer (`parse_policy`), whose
findings are renamed to the legacy fields. The service gets typed `TouLimit`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from microgrid.common.errors import ErrorItem
from microgrid.common.serializers import (
    ID_SCHEMA,
    KwField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
    nullable,
)
from microgrid.limits.api.serializers import HHMM_SCHEMA, parse_policy
from microgrid.limits.choices import LimitScope, LimitSource
from microgrid.limits.schedules import DAYS, Schedule
from microgrid.limits.validation import raise_problems

TOU_FIELDS = ("start", "end", "days", "limit_kw")
# A week holds few real windows; the cap keeps the pairwise overlap check small.
MAX_TOU_LIMITS = 500

DAYS_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "enum": list(DAYS)},
    "minItems": 1,
    "maxItems": 7,
    "uniqueItems": True,
}


class LegacyScope(ResponseSerializer):
    """The frozen legacy shape: node_id is null for the whole microgrid."""

    type = serializers.ChoiceField(["MICROGRID", "NODE"])
    node_id = SchemaField(nullable(ID_SCHEMA))


class AliasScope(ResponseSerializer):
    """A circuit alias's scope as resolved (ASSET for a per-charger circuit)."""

    type = serializers.ChoiceField(["MICROGRID", "NODE", "ASSET"])
    node_id = SchemaField(ID_SCHEMA, required=False)
    asset_id = SchemaField(ID_SCHEMA, required=False)


class LegacyCircuit(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    name = serializers.CharField()
    available_capacity_kw = serializers.FloatField()
    configured_capacity_kw = serializers.FloatField()


class LegacyRebalance(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    microgrid_id = SchemaField(ID_SCHEMA)
    scope = LegacyScope()
    cycle_id = serializers.CharField()
    status = serializers.ChoiceField(["COMPLETED"])


class LegacyTouLimit(ResponseSerializer):
    start = SchemaField(HHMM_SCHEMA)
    end = SchemaField(HHMM_SCHEMA)
    days = SchemaField(DAYS_SCHEMA)
    limit_kw = serializers.FloatField()


class LegacyTouLimits(ResponseSerializer):
    circuit_id = SchemaField(ID_SCHEMA)
    tou_limits = LegacyTouLimit(many=True)


class AliasUsageFilters(ResponseSerializer):
    circuit_id = serializers.CharField(allow_null=True)
    client = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)


class AliasUsageRow(ResponseSerializer):
    circuit_id = serializers.CharField()
    endpoint = serializers.CharField()
    method = serializers.CharField()
    client = serializers.CharField(allow_null=True)
    status_code = serializers.IntegerField()
    microgrid_id = serializers.CharField(allow_null=True)
    scope = AliasScope(allow_null=True)
    failure_code = serializers.CharField(allow_null=True)
    failure_reason = serializers.CharField(allow_null=True)
    cycle_id = serializers.CharField(allow_null=True)
    at = serializers.DateTimeField()


class AliasUsageSummary(ResponseSerializer):
    client = serializers.CharField(allow_null=True)
    circuit_id = serializers.CharField()
    calls = serializers.IntegerField()
    failures = serializers.IntegerField()
    first_used_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField()


class AliasUsageReport(ResponseSerializer):
    filters = AliasUsageFilters()
    usage = AliasUsageRow(many=True, help_text="newest first")
    summary = AliasUsageSummary(many=True, help_text="by client, then circuit")


# -- the TOU body, for the document (`services.tou_policies` reads it, in legacy wording) -------


class LegacyTouLimitInput(RequestSerializer):
    """One TOU limit: limit_kw from start to end on the days named."""

    start = SchemaField(HHMM_SCHEMA)
    end = SchemaField(HHMM_SCHEMA)
    days = SchemaField(DAYS_SCHEMA)
    limit_kw = KwField(exclusive_minimum=0)


class LegacyTouLimitsInput(RequestSerializer):
    """Every TOU limit of the circuit (replaces them all)."""

    tou_limits = serializers.ListField(child=LegacyTouLimitInput(), max_length=MAX_TOU_LIMITS)
    circuit_id = SchemaField(
        {**ID_SCHEMA, "description": "may be sent back as read: the URL's circuit"},
        required=False,
    )


@dataclass(frozen=True)
class TouLimit:
    """One legacy TOU limit, validated: its schedule and limit, and the field prefix its
    findings carry (`tou_limits[1].`)."""

    field_prefix: str
    schedule: Schedule
    limit_kw: float


def legacy_field(field: str | None) -> str | None:
    """The legacy name of a canonical policy field: tou_limits[i].schedule.start -> tou_limits[i].start."""
    if field is None:
        return None
    field = field.replace(".schedule.", ".")
    if field.endswith(".schedule"):
        field = field[: -len(".schedule")]
    return field


def legacy_item(item: ErrorItem, *, field_problem: bool = False) -> ErrorItem:
    """The item in legacy field names; a field problem does not name the mapped node, which
    the client never sent."""
    details = dict(item.details)
    if isinstance(details.get("field"), str) and details["field"].startswith("tou_limits["):
        details["field"] = legacy_field(details["field"])
    return ErrorItem(
        item.code,
        item.message,
        node_id=None if field_problem else item.node_id,
        asset_id=item.asset_id,
        field=legacy_field(item.field),
        details=details,
    )


def tou_limits_input(data: Any, *, circuit_id: str) -> list[TouLimit]:
    """A legacy TOU body -> its TOU limits, or every FIELD_INVALID (in legacy field names).

    A client may send back the `circuit_id` it read; it must name this circuit.
    """
    errors: list[ErrorItem] = []

    def problem(field: str, message: str) -> None:
        errors.append(ErrorItem("FIELD_INVALID", f"{field} {message}", field=field))

    for key in sorted(set(data) - {"tou_limits", "circuit_id"}, key=str):
        problem(str(key), "is not a field of a TOU limits request")
    if "circuit_id" in data and data["circuit_id"] != circuit_id:
        problem("circuit_id", f"must be {circuit_id!r}, the circuit of this URL, when it is sent")
    raw = data.get("tou_limits")
    limits: list[TouLimit] = []
    if "tou_limits" not in data:
        problem("tou_limits", "is required (a list of {start, end, days, limit_kw})")
    elif not isinstance(raw, list):
        problem("tou_limits", "must be a list of {start, end, days, limit_kw}")
    elif len(raw) > MAX_TOU_LIMITS:
        problem("tou_limits", f"must have at most {MAX_TOU_LIMITS} entries")
    else:
        for i, item in enumerate(raw):
            prefix = f"tou_limits[{i}]"
            if not isinstance(item, dict):
                problem(prefix, "must be an object {start, end, days, limit_kw}")
                continue
            for key in sorted(set(item) - set(TOU_FIELDS), key=str):
                problem(f"{prefix}.{key}", "is not a field of a TOU limit")
            # The entry's fields as a scheduled policy; the circuit's target (a node or the
            # microgrid) is the service's, and no finding about these fields depends on it.
            policy: dict[str, Any] = {
                "scope": LimitScope.MICROGRID,
                "schedule": {k: item[k] for k in ("days", "start", "end") if k in item},
                "source": LimitSource.LEGACY_TOU,
            }
            if "limit_kw" in item:
                policy["limit_kw"] = item["limit_kw"]
            spec, problems = parse_policy(
                policy, prefix=prefix + ".", default_source=LimitSource.LEGACY_TOU
            )
            errors.extend(legacy_item(p, field_problem=True) for p in problems)
            if spec is not None:
                limits.append(TouLimit(f"{prefix}.", spec.schedule, spec.limit_kw))
    raise_problems(errors)
    return limits
