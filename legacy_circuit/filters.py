"""The filters of the alias usage report (see common.filters). Strict by the legacy contract:
a parameter that is not a filter is refused."""

from __future__ import annotations

import re

from microgrid.common.fields import ID_RE, ID_SCHEMA_PATTERN, FieldProblem
from microgrid.common.filters import (
    TIME_QUERY_TEXT,
    CheckedFilter,
    FilterSet,
    LimitFilter,
    TimeFilter,
)

USAGE_LIMIT = 200
# A username (AliasUsage.client): printable, at most 150 characters (Django's limit).
_CLIENT_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,150}\Z")


def _circuit_id(raw: str) -> str:
    value = raw.strip()
    if not ID_RE.match(value):
        raise FieldProblem("is not a circuit id")
    return value


def _client(raw: str) -> str:
    value = raw.strip()
    if not _CLIENT_RE.match(value):
        raise FieldProblem("is no username")
    return value


class UsageFilter(FilterSet):
    strict = True
    unknown_text = "is not a filter of the alias usage report"

    circuit_id = CheckedFilter(
        field_name="circuit_id",
        check=_circuit_id,
        schema={"type": "string", "pattern": ID_SCHEMA_PATTERN},
    )
    client = CheckedFilter(
        field_name="client",
        check=_client,
        schema={"type": "string", "minLength": 1, "maxLength": 150},
        description="a username",
    )
    since = TimeFilter("at", "gte", TIME_QUERY_TEXT)
    limit = LimitFilter(USAGE_LIMIT)
    default_limit = USAGE_LIMIT
