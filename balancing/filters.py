"""The filters of the cycle and breach lists (one FilterSet each; see common.filters)."""

from __future__ import annotations

from balancing.choices import BreachStatus, Outcome, SourceMode, TriggerType
from microgrid.common.filters import (
    TIME_QUERY_TEXT,
    ChoiceFilter,
    FilterSet,
    IdFilter,
    LimitFilter,
    TimeFilter,
)

CYCLE_LIMIT = 50
BREACH_LIMIT = 200


class CycleFilter(FilterSet):
    trigger = ChoiceFilter("trigger_type", TriggerType.values)
    outcome = ChoiceFilter("outcome", Outcome.values)
    source_mode = ChoiceFilter("source_mode", SourceMode.values)
    since = TimeFilter("started_at", "gte", f"started at or after: {TIME_QUERY_TEXT}")
    until = TimeFilter("started_at", "lt", f"started before: {TIME_QUERY_TEXT}")
    limit = LimitFilter(CYCLE_LIMIT)
    default_limit = CYCLE_LIMIT


class BreachFilter(FilterSet):
    status = ChoiceFilter("status", BreachStatus.values)
    node_id = IdFilter("node_id")
    limit = LimitFilter(BREACH_LIMIT)
    default_limit = BREACH_LIMIT
