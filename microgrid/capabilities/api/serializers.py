"""The capability request bodies (bind, transfer, status event), validated once.

The API, admin and the profile loader read them here; the services take the
clean values (`Scope`, ids, times) and add the rules that need the database
(the node exists, no overlapping source, the sender is the active source).
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from microgrid.capabilities.choices import CapabilityState, CapabilityType
from microgrid.capabilities.scopes import parse_scope
from microgrid.common.errors import ErrorItem
from microgrid.common.fields import FieldProblem, contains_nul
from microgrid.common.serializers import (
    ID_SCHEMA,
    CheckedField,
    ChoiceField,
    IdField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
    TextField,
    TimestampField,
    error_items,
    validated,
)
from microgrid.topology.api.serializers import ScopeAnswerField

MAX_DETAIL_CHARS = 4000

SCOPE_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["MICROGRID"]}},
            "required": ["type"],
            "additionalProperties": False,
            "description": "The whole microgrid.",
        },
        {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["NODE"]}, "node_id": ID_SCHEMA},
            "required": ["type", "node_id"],
            "additionalProperties": False,
            "description": "The subtree rooted at a Microgrid Node.",
        },
    ]
}


class ScopeField(CheckedField):
    """`{type: MICROGRID}` or `{type: NODE, node_id}` (capabilities.scopes.parse_scope)."""

    def __init__(self, **kwargs):
        super().__init__(lambda v: v, SCOPE_SCHEMA, **kwargs)

    def to_internal_value(self, data):
        scope, problems = parse_scope(data, "scope")
        if not problems:
            return scope
        detail: dict[str, list[str]] = {}
        whole = [p.message for p in problems if p.field == "scope"]
        if whole:
            raise serializers.ValidationError(whole)
        for p in problems:
            detail.setdefault(p.field.removeprefix("scope."), []).append(p.message)
        raise serializers.ValidationError(detail)


def _detail(value: Any) -> Any:
    if not isinstance(value, str | dict):
        raise FieldProblem("must be a string or an object")
    if len(json.dumps(value)) > MAX_DETAIL_CHARS:
        raise FieldProblem(f"must be at most {MAX_DETAIL_CHARS} characters")
    if contains_nul(value):
        # PostgreSQL's jsonb cannot hold a NUL character: refused, never a 500.
        raise FieldProblem("must not contain NUL characters")
    return value


def _required(**kwargs) -> dict[str, Any]:
    # A null is a missing value here: "x is required", not the type's complaint.
    return {"null_is_missing": True, **kwargs}


class CapabilityBind(RequestSerializer):
    """Bind a source device to a capability for a scope."""

    capability_type = ChoiceField(CapabilityType.values, **_required())
    scope = ScopeField(**_required())
    source_device_id = IdField(**_required())


class CapabilityTransfer(RequestSerializer):
    """Hand the binding of (capability, scope) from the expected source to a new one."""

    capability_type = ChoiceField(CapabilityType.values, **_required())
    scope = ScopeField(**_required())
    expected_source_device_id = IdField(**_required())
    new_source_device_id = IdField(**_required())


class CapabilityEventInput(RequestSerializer):
    """A status event of the active source of (capability, scope)."""

    capability_type = ChoiceField(CapabilityType.values, **_required())
    scope = ScopeField(**_required())
    source_device_id = IdField(**_required())
    event_ref = TextField(max_length=128, **_required())
    state = ChoiceField(CapabilityState.values, **_required())
    observed_at = TimestampField(
        **_required(help_text="with an offset; at most 5 minutes ahead of the product's clock")
    )
    detail = CheckedField(
        _detail,
        {
            "nullable": True,
            "description": f"a string or an object (at most {MAX_DETAIL_CHARS} characters as JSON)",
            "oneOf": [{"type": "string"}, {"type": "object"}],
        },
        required=False,
        allow_null=True,
    )


def binding_problems(raw: Any, prefix: str = "") -> tuple[dict[str, Any] | None, list[ErrorItem]]:
    """A profile's binding item: (clean values, []) or (None, every FIELD_INVALID)."""
    if not isinstance(raw, dict):
        return None, [
            ErrorItem("FIELD_INVALID", "must be an object", field=prefix.rstrip(".") or None)
        ]
    serializer = CapabilityBind(data=raw)
    if serializer.is_valid():
        return dict(serializer.validated_data), []
    return None, error_items(serializer.errors, prefix)


def bind_input(raw: Any) -> dict[str, Any]:
    """The binding service's keyword arguments for a client's body, or FIELD_INVALID."""
    return validated(CapabilityBind, raw)


def transfer_input(raw: Any) -> dict[str, Any]:
    return validated(CapabilityTransfer, raw)


def event_input(raw: Any) -> dict[str, Any]:
    return validated(CapabilityEventInput, raw)


class CapabilityRelease(RequestSerializer):
    """Release takes no fields: an empty body or {}."""


# -- answers ------------------------------------------------------------------------------------


class CapabilityStatus(ResponseSerializer):
    state = serializers.ChoiceField(CapabilityState.values)
    observed_at = serializers.DateTimeField()
    event_ref = serializers.CharField()


class CapabilityBinding(ResponseSerializer):
    binding_id = serializers.CharField(help_text="CB-<n>")
    capability_type = serializers.ChoiceField(CapabilityType.values)
    scope = ScopeAnswerField()
    source_device_id = SchemaField(ID_SCHEMA)
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    released_at = serializers.DateTimeField(allow_null=True)
    latest_status = CapabilityStatus(allow_null=True)


class CapabilityList(ResponseSerializer):
    bindings = CapabilityBinding(many=True, help_text="active first")


class CapabilityEvent(ResponseSerializer):
    binding_id = serializers.CharField()
    capability_type = serializers.ChoiceField(CapabilityType.values)
    scope = ScopeAnswerField()
    source_device_id = SchemaField(ID_SCHEMA)
    event_ref = serializers.CharField()
    state = serializers.ChoiceField(CapabilityState.values)
    observed_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    detail = SchemaField({"nullable": True, "oneOf": [{"type": "string"}, {"type": "object"}]})


class CapabilityEventAnswer(ResponseSerializer):
    event = CapabilityEvent()
    binding = CapabilityBinding()


class CardBinding(CapabilityBinding):
    scope_label = serializers.CharField()
    status_fresh = serializers.BooleanField()
    external_control = serializers.BooleanField()


class CapabilitiesCard(ResponseSerializer):
    """The microgrid card's `capabilities` section."""

    bindings = CardBinding(many=True)
    ended_binding_count = serializers.IntegerField()
