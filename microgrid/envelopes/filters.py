"""The filters of the envelope list (see common.filters)."""

from __future__ import annotations

from microgrid.common.fields import FieldProblem
from microgrid.common.filters import (
    TIME_QUERY_TEXT,
    CheckedFilter,
    FilterSet,
    LimitFilter,
    TimeFilter,
    keep,
)
from microgrid.envelopes.choices import EnvelopeStatus

ENVELOPE_LIMIT = 200
_STATUSES = "|".join(EnvelopeStatus.values)


def check_statuses(raw: str) -> list[str]:
    """`ACTIVE` or a comma-separated list of statuses."""
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not values or any(v not in EnvelopeStatus.values for v in values):
        raise FieldProblem(
            f"must be one or more of {', '.join(EnvelopeStatus.values)} (comma-separated); "
            f"got {raw!r}"
        )
    return values


class EnvelopeFilter(FilterSet):
    """The status filter is decided at `at` (an envelope's status depends on the time), so the
    list's selector applies the cleaned values; the FilterSet reads and refuses them."""

    status = CheckedFilter(
        method=keep,
        check=check_statuses,
        schema={"type": "string", "pattern": rf"^({_STATUSES})(,({_STATUSES}))*$"},
        description="one status or a comma-separated list",
    )
    at = TimeFilter(None, method=keep, description=f"{TIME_QUERY_TEXT}; default now")
    limit = LimitFilter(ENVELOPE_LIMIT)
    default_limit = ENVELOPE_LIMIT
