"""The topology request bodies: creating a microgrid (its depot with it).

A topology save (`PUT .../topology/`) is validated as a whole by
`topology.validation.validate_topology` (spec 3.1: every finding names its node
or asset), so its serializer reads only the envelope of the body.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from rest_framework import serializers

from microgrid.common.fields import FieldProblem
from microgrid.common.serializers import (
    ID_SCHEMA,
    CheckedField,
    IdField,
    IntField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
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


def _as_sent(value: Any) -> Any:
    return value  # validated as a whole by topology.validation (every finding names its item)


class TopologyReplace(RequestSerializer):
    """Replaces every node and asset; the GET shape may be sent back edited."""

    unknown_text = "is not a field of a topology save"
    # What a GET answered may be sent back: these keys are ignored.
    read_only_keys = frozenset(
        {"microgrid_id", "depot_id", "depot_name", "topology_version", "updated_at", "updated_by"}
    )

    base_version = CheckedField(
        _as_sent,
        {
            "type": "integer",
            "minimum": 0,
            "description": "the topology_version the edit was made on",
        },
    )
    nodes = CheckedField(
        _as_sent,
        {"type": "array", "items": {"$ref": "#/components/schemas/MicrogridNodeInput"}},
    )
    assets = CheckedField(
        _as_sent,
        {"type": "array", "items": {"$ref": "#/components/schemas/AssetInput"}},
    )


# -- answers ------------------------------------------------------------------------------------


class MicrogridSummary(ResponseSerializer):
    microgrid_id = SchemaField(ID_SCHEMA)
    name = serializers.CharField()
    depot_id = SchemaField(ID_SCHEMA)
    depot_name = serializers.CharField()
    topology_version = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    enabled = serializers.BooleanField()


class MicrogridList(ResponseSerializer):
    microgrids = MicrogridSummary(many=True)


class RevisionSummary(ResponseSerializer):
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    summary = serializers.CharField()
    node_count = serializers.IntegerField()
    asset_count = serializers.IntegerField()


class RevisionList(ResponseSerializer):
    microgrid_id = SchemaField(ID_SCHEMA)
    revisions = RevisionSummary(many=True)
