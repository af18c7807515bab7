"""The limit policy body, validated once for every writer.

`LimitPolicyInput` is the API's body (POST and PUT), and through `parse_policy`
the Manage form's, the admin's, a profile's `limits:` items and the legacy TOU
limits: the field checks live here; the rules that need the topology and the
other policies (node exists, physical rating, one cap per target, overlaps)
live in `limits.validation` and run in the services.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from microgrid.common.errors import ErrorItem
from microgrid.common.fields import MAX_A, FieldProblem, check_amps, check_choice, check_id_value
from microgrid.common.serializers import (
    ID_SCHEMA,
    CheckedField,
    ChoiceField,
    IdField,
    KwField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
    error_items,
    nullable,
)
from microgrid.limits.choices import ConstraintSource, LimitScope, LimitSource
from microgrid.limits.models import MAX_LIMIT_KW
from microgrid.limits.schedules import DAYS, parse_schedule, schedule_problems
from microgrid.limits.validation import PolicySpec, raise_problems

HHMM_SCHEMA = {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"}
SCHEDULE_SCHEMA = {
    "type": "object",
    "properties": {
        "days": {
            "type": "array",
            "items": {"type": "string", "enum": list(DAYS)},
            "minItems": 1,
            "maxItems": 7,
            "uniqueItems": True,
            "description": "the days a window starts on",
        },
        "start": {**HHMM_SCHEMA, "example": "17:00"},
        "end": {**HHMM_SCHEMA, "example": "21:00"},
    },
    "required": ["days", "start", "end"],
    "additionalProperties": False,
    "description": "A weekly window [start, end) in the depot's time zone; end < start "
    "crosses midnight; start == end is refused.",
}


class ScheduleField(CheckedField):
    """`{days, start, end}`: every problem of `schedules.schedule_problems`, per sub-field."""

    def __init__(self, **kwargs):
        super().__init__(parse_schedule, nullable(SCHEDULE_SCHEMA), **kwargs)

    def to_internal_value(self, data):
        problems = schedule_problems(data)
        if not problems:
            return parse_schedule(data)
        whole = [p.message for p in problems if not p.field]
        if whole:
            raise serializers.ValidationError(whole)
        detail: dict[str, list[str]] = {}
        for p in problems:
            detail.setdefault(p.field, []).append(p.message)
        raise serializers.ValidationError(detail)


def _anything(value: Any) -> Any:
    return value


class LimitPolicyInput(RequestSerializer):
    """A Node Limit or Microgrid limit. A client may send back `policy_id` (it must name the
    policy being written) and `updated_at` (ignored) with what it read."""

    # Context: `default_source` (MANUAL; SIMULATOR for profiles, LEGACY_TOU for the legacy
    # path), `policy_id` (the policy a PUT replaces), `accept_read_only`.

    unknown_text = "is not a field of a limit policy"
    read_only_keys = frozenset({"updated_at"})

    scope = ChoiceField(LimitScope.values, required_text="is required (NODE or MICROGRID)")
    node_id = IdField(
        required=False, allow_null=True, help_text="the node of a NODE limit; null else"
    )
    limit_kw = KwField(exclusive_minimum=0, maximum=MAX_LIMIT_KW)
    limit_a = CheckedField(
        lambda v: check_amps(v, exclusive_minimum=0),
        nullable(
            {
                "type": "number",
                "exclusiveMinimum": True,
                "minimum": 0,
                "maximum": MAX_A,
                "description": "optional per-phase current cap (A) on every phase of the "
                "target, on top of limit_kw; at most the node's rating_a",
            }
        ),
        required=False,
        allow_null=True,
    )
    schedule = ScheduleField(required=False, allow_null=True)
    source = ChoiceField(LimitSource.values, required=False, allow_null=True)
    policy_id = CheckedField(
        _anything,
        {"type": "string", "description": "read-only: must name this policy"},
        required=False,
    )

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)
        # node_id is read by the scope's rule below, not on its own; policy_id and updated_at
        # are what a client read back (API, Manage, admin), not fields of a profile's policy.
        errors: dict[str, Any] = {}
        skipped = {"node_id"}
        if not self.context.get("accept_read_only", True):
            for key in ("policy_id", "updated_at"):
                if key in data:
                    errors[key] = [f"{key} {self.unknown_text}"]
                    skipped.add(key)
        rest = {k: v for k, v in data.items() if k not in skipped}
        try:
            values = super().to_internal_value(rest)
        except serializers.ValidationError as exc:
            errors, values = {**errors, **exc.detail}, {}
        errors.update(self._node_errors(data))
        sent_id, current_id = data.get("policy_id"), self.context.get("policy_id")
        if current_id is not None and sent_id not in (None, current_id):
            errors["policy_id"] = [
                f"policy_id {sent_id!r} does not match the policy being written ({current_id})"
            ]
        if errors:
            raise serializers.ValidationError(errors)
        scope = values["scope"]
        return {
            "scope": scope,
            "node_id": data["node_id"] if scope == LimitScope.NODE else None,
            "limit_kw": values["limit_kw"],
            "limit_a": values.get("limit_a"),
            "schedule": values.get("schedule"),
            "source": values.get("source")
            or self.context.get("default_source", LimitSource.MANUAL),
        }

    @staticmethod
    def _node_errors(data: Mapping) -> dict[str, list[str]]:
        try:
            scope = check_choice(data.get("scope"), LimitScope.values)
        except FieldProblem:
            return {}  # the scope's own problem is reported; node_id waits for it
        raw = data.get("node_id")
        if scope == LimitScope.MICROGRID:
            if raw is not None:
                return {"node_id": ["node_id must be null for a Microgrid limit"]}
            return {}
        if raw is None:
            return {"node_id": ["node_id is required for a Node Limit"]}
        try:
            check_id_value(raw)
        except FieldProblem as exc:
            return {"node_id": [f"node_id {exc}"]}
        return {}


def parse_policy(
    raw: Any,
    *,
    prefix: str = "",
    default_source: str = LimitSource.MANUAL,
    policy_id: str | None = None,
    accept_read_only: bool = False,
) -> tuple[PolicySpec | None, list[ErrorItem]]:
    """One untrusted policy -> (clean policy, []) or (None, every FIELD_INVALID), each finding
    naming the policy's node (when it sent one) like the rules' findings do."""
    if not isinstance(raw, Mapping):
        name = prefix.rstrip(".") or None
        return None, [
            ErrorItem("FIELD_INVALID", f"{name or 'a limit'} must be an object", field=name)
        ]
    serializer = LimitPolicyInput(
        data=raw,
        context={
            "default_source": default_source,
            "policy_id": policy_id,
            "accept_read_only": accept_read_only,
        },
    )
    if serializer.is_valid():
        return PolicySpec(**serializer.validated_data), []
    node_hint = raw.get("node_id") if isinstance(raw.get("node_id"), str) else None
    items = error_items(serializer.errors, prefix)
    for item in items:
        item.node_id = node_hint
    return None, items


def policy_input(
    raw: Any, *, policy_id: str | None = None, default_source: str = LimitSource.MANUAL
) -> dict[str, Any]:
    """The service's keyword arguments for one policy a client sent (the API's body, the
    Manage and admin forms), or DomainError with every FIELD_INVALID (worded like the rules'
    refusals: the first one's details)."""
    spec, problems = parse_policy(
        raw, default_source=default_source, policy_id=policy_id, accept_read_only=True
    )
    raise_problems(problems)
    return spec.fields()


# -- answers ------------------------------------------------------------------------------------


class Schedule(ResponseSerializer):
    """A weekly window [start, end) in the depot's time zone; end < start crosses midnight."""

    days = serializers.ListField(child=serializers.ChoiceField(list(DAYS)))
    start = SchemaField(HHMM_SCHEMA)
    end = SchemaField(HHMM_SCHEMA)


class LimitPolicy(ResponseSerializer):
    policy_id = serializers.CharField(help_text="LP-<n>")
    scope = serializers.ChoiceField(LimitScope.values)
    node_id = SchemaField(ID_SCHEMA, allow_null=True)
    limit_kw = serializers.FloatField()
    limit_a = serializers.FloatField(allow_null=True, help_text="per-phase current cap (A)")
    schedule = Schedule(allow_null=True)
    source = serializers.ChoiceField(LimitSource.values)
    updated_at = serializers.DateTimeField(allow_null=True)


class LimitList(ResponseSerializer):
    microgrid_id = SchemaField(ID_SCHEMA)
    timezone = serializers.CharField()
    limits = LimitPolicy(many=True)


class ActiveMicrogridLimit(ResponseSerializer):
    effective_limit_kw = serializers.FloatField(allow_null=True)
    limit_source = serializers.ChoiceField(ConstraintSource.values, allow_null=True)
    active_policy_id = serializers.CharField(allow_null=True)


class PhaseLimit(ResponseSerializer):
    phase = serializers.ChoiceField(["L1", "L2", "L3"])
    limit_a = serializers.FloatField()
    limit_source = serializers.ChoiceField(ConstraintSource.values)


class ActiveNodeLimit(ResponseSerializer):
    node_id = SchemaField(ID_SCHEMA)
    effective_limit_kw = serializers.FloatField()
    limit_source = serializers.ChoiceField(ConstraintSource.values)
    effective_limit_a = serializers.FloatField(
        allow_null=True, help_text="per-phase current limit (A); null: no current limit"
    )
    limit_a_source = serializers.ChoiceField(ConstraintSource.values, allow_null=True)
    active_policy_id_a = serializers.CharField(allow_null=True)
    phase_limits_a = PhaseLimit(
        many=True,
        required=False,
        help_text="only where the phases differ (a per-phase operating envelope): each limited "
        "phase's current limit and source",
    )
    active_policy_id = serializers.CharField(allow_null=True)
    active_schedule = Schedule(allow_null=True)
    envelope_ids = serializers.ListField(child=serializers.CharField())


class ActiveLimits(ResponseSerializer):
    at = serializers.DateTimeField()
    microgrid = ActiveMicrogridLimit()
    nodes = ActiveNodeLimit(many=True, help_text="tree order")


class LimitsCard(ResponseSerializer):
    """The microgrid card's `limits` section."""

    at = serializers.DateTimeField()
    effective_limit_kw = serializers.FloatField(allow_null=True)
    limit_source = serializers.ChoiceField(ConstraintSource.values, allow_null=True)
    active_policy_id = serializers.CharField(allow_null=True)
    policy_count = serializers.IntegerField()
