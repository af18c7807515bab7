"""The rebalance body (an optional scope: the one scope reader, capabilities.scopes) and the
cycle and breach documents, for the OpenAPI document (spec 4)."""

from __future__ import annotations

from rest_framework import serializers

from balancing.choices import BreachStatus, Outcome, SourceMode, TriggerType
from balancing.codes import BREACH_PRECEDENCE, REASON_PRECEDENCE
from microgrid.capabilities.api.serializers import ScopeField
from microgrid.common.serializers import (
    ID_SCHEMA,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
)
from microgrid.limits.choices import ConstraintSource
from microgrid.topology.api.serializers import ScopeAnswerField


class Rebalance(RequestSerializer):
    """Run one cycle now for a scope (default: the whole microgrid)."""

    unknown_text = "is not a field of a rebalance request"

    scope = ScopeField(required=False, allow_null=True, help_text="default: the whole microgrid")


# -- answers ------------------------------------------------------------------------------------


def _reasons() -> serializers.ListField:
    return serializers.ListField(child=serializers.ChoiceField(list(REASON_PRECEDENCE)))


class Trigger(ResponseSerializer):
    """what asked for the cycle, with its particulars (e.g. circuit_id)"""

    additional_properties = True
    type = serializers.ChoiceField(TriggerType.values)


class CycleSummary(ResponseSerializer):
    cycle_id = serializers.CharField()
    seq = serializers.IntegerField()
    trigger = Trigger()
    scope = ScopeAnswerField()
    started_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField()
    topology_version = serializers.IntegerField()
    outcome = serializers.ChoiceField(Outcome.values)
    source_mode = serializers.ChoiceField(SourceMode.values)
    reason_codes = _reasons()


class CycleList(ResponseSerializer):
    microgrid_id = SchemaField(ID_SCHEMA)
    cycles = CycleSummary(many=True)


class Binding(ResponseSerializer):
    """the node whose limit stopped the charger"""

    node_id = SchemaField(ID_SCHEMA)
    limit_source = serializers.ChoiceField(ConstraintSource.values)
    limit_kw = serializers.FloatField()
    envelope_id = serializers.CharField(required=False)
    peer_offline = serializers.BooleanField(required=False)
    phase = serializers.CharField(
        required=False,
        help_text="a per-phase binding: the phase (L1, L2, L3), or the pair of an unbalance "
        "(L1-L2)",
    )
    limit_a = serializers.FloatField(
        required=False, help_text="the current limit (A) that bound: per phase, or the unbalance"
    )


class CycleFallback(ResponseSerializer):
    asset_id = SchemaField(ID_SCHEMA)
    why = serializers.ChoiceField(["STALE", "MISSING"])
    last_observed_at = serializers.DateTimeField(allow_null=True)
    value_kw = serializers.FloatField()
    threshold_s = serializers.IntegerField()


class CycleNode(ResponseSerializer):
    node_id = SchemaField(ID_SCHEMA)
    effective_limit_kw = serializers.FloatField()
    limit_source = serializers.ChoiceField(ConstraintSource.values)
    uncontrolled_load_kw = serializers.FloatField()
    allocated_kw = serializers.FloatField()
    headroom_kw = serializers.FloatField()
    source_mode = serializers.ChoiceField(SourceMode.values)
    fallback = CycleFallback(many=True)
    reason_codes = _reasons()
    budget_kw = serializers.FloatField(
        required=False, help_text="only for a node under external control"
    )


class CycleCharger(ResponseSerializer):
    asset_id = SchemaField(ID_SCHEMA)
    node_id = SchemaField(ID_SCHEMA)
    requested_kw = serializers.FloatField()
    allocated_kw = serializers.FloatField(
        allow_null=True, help_text="null: set by an external controller"
    )
    reason_codes = _reasons()
    binding = Binding(allow_null=True)
    valid_until = serializers.DateTimeField(required=False, help_text="with every setpoint")
    dispatch_status = serializers.CharField(
        required=False, allow_null=True, help_text="its delivery's status (spec 4.7)"
    )
    limit_kw = serializers.FloatField(
        required=False, allow_null=True, help_text="with per-phase data: the setpoint in kW"
    )
    limit_a = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="with per-phase data: the setpoint as a current per phase (A, rounded down to "
        "0.1 A) on `phases` phases",
    )
    phases = serializers.IntegerField(
        required=False, help_text="with per-phase data: the phases the EV draws on"
    )


class CycleScopeBudget(ResponseSerializer):
    scope = ScopeAnswerField()
    budget_kw = serializers.FloatField()
    valid_until = serializers.DateTimeField()
    binding_id = serializers.CharField(required=False)
    source_device_id = SchemaField(ID_SCHEMA, required=False)


class _BreachFields(ResponseSerializer):
    breach_id = serializers.CharField()
    node_id = SchemaField(ID_SCHEMA)
    measured_kw = serializers.FloatField()
    limit_kw = serializers.FloatField()
    excess_kw = serializers.FloatField()
    exceeded = serializers.ListField(child=serializers.ChoiceField(list(BREACH_PRECEDENCE)))
    primary_reason_code = serializers.ChoiceField(list(BREACH_PRECEDENCE))
    status = serializers.ChoiceField(BreachStatus.values)
    phase = serializers.ChoiceField(
        ["L1", "L2", "L3"], required=False, help_text="a phase breach (BREACH_PHASE_CURRENT) only"
    )
    measured_a = serializers.FloatField(required=False, help_text="a phase breach only")
    limit_a = serializers.FloatField(required=False, help_text="a phase breach only")
    excess_a = serializers.FloatField(required=False, help_text="a phase breach only")


class CycleBreach(_BreachFields):
    new = serializers.BooleanField()
    resolved_at = serializers.DateTimeField(required=False, allow_null=True)


class CycleDispatch(ResponseSerializer):
    """how its setpoints were delivered (spec 4.7)"""

    channels = serializers.ListField(child=serializers.CharField())
    counts = serializers.DictField(child=serializers.IntegerField())


class Cycle(ResponseSerializer):
    """The cycle document of spec 4.1."""

    cycle_id = serializers.CharField()
    microgrid_id = SchemaField(ID_SCHEMA)
    scope = ScopeAnswerField()
    trigger = Trigger()
    started_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField()
    topology_version = serializers.IntegerField()
    outcome = serializers.ChoiceField(Outcome.values)
    source_mode = serializers.ChoiceField(SourceMode.values)
    reason_codes = _reasons()
    nodes = CycleNode(many=True, help_text="tree order")
    chargers = CycleCharger(many=True, help_text="by asset_id")
    scope_budgets = CycleScopeBudget(
        many=True, help_text="what external controllers may draw in their scopes"
    )
    breaches = CycleBreach(many=True)
    served_triggers = Trigger(many=True)
    dispatch = CycleDispatch(required=False)


class Breach(_BreachFields):
    cycle_id = serializers.CharField(allow_null=True)
    detected_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)


class BreachList(ResponseSerializer):
    microgrid_id = SchemaField(ID_SCHEMA)
    breaches = Breach(many=True)


def card_section_fields() -> dict[str, serializers.Field]:
    """The microgrid card's sections from balancing, as the document states them."""
    return {
        "latest_cycle": CycleSummary(allow_null=True),
        "vehicles_at_risk": serializers.IntegerField(
            allow_null=True,
            help_text="in the latest cycle: vehicles that cannot finish by their departure "
            "even at full power (spec 4.3, Departures); null before the first cycle",
        ),
        "open_breach_count": serializers.IntegerField(),
    }
