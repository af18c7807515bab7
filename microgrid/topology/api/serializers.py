"""The topology request bodies: creating a microgrid (its depot with it).

A topology save (`PUT .../topology/`) is validated as a whole by
`topology.validation.validate_topology` (spec 3.1: every finding names its node
or asset), so its serializer reads only the envelope of the body.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from microgrid.common.fields import FieldProblem
from microgrid.common.serializers import (
    CheckedField,
    IdField,
    IntField,
    RequestSerializer,
    TextField,
    validated,
)

_ZONES: set[str] | None = None


def check_timezone(value: Any) -> str:
    """An IANA time zone name."""
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones() | {"UTC"}
    if not isinstance(value, str) or value not in _ZONES:
        raise FieldProblem("must be an IANA time zone name such as Europe/Amsterdam")
    return value


class DepotInput(RequestSerializer):
    """The depot of a new microgrid (created when new)."""

    depot_id = IdField()
    name = TextField()
    timezone = CheckedField(
        check_timezone,
        {
            "type": "string",
            "description": "IANA zone name; default UTC",
            "example": "Europe/Amsterdam",
        },
        required=False,
        default="UTC",
    )


class MicrogridCreate(RequestSerializer):
    """A new, empty microgrid (topology version 0) and, when new, its depot."""

    microgrid_id = IdField()
    name = TextField()
    depot = DepotInput()
    telemetry_stale_after_s = IntField(minimum=1, maximum=86400, required=False, default=60)
    cycle_interval_s = IntField(minimum=1, maximum=86400, required=False, default=15)


def microgrid_input(raw: Any) -> dict[str, Any]:
    """`microgrid_create`'s keyword arguments for a client's body, or FIELD_INVALID."""
    return validated(MicrogridCreate, raw)
