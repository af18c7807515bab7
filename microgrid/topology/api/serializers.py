"""The topology request bodies: creating a microgrid (its depot with it).

A topology save (`PUT .../topology/`) is validated as a whole by
`topology.validation.validate_topology` (spec 3.1: every finding names its node
or asset), so its serializer reads only the envelope of the body.
"""

from __future__ import annotations

import copy
from typing import Any
from zoneinfo import available_timezones

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from microgrid.common.fields import MAX_A, MAX_KW, FieldProblem
from microgrid.common.serializers import (
    ID_SCHEMA,
    CheckedField,
    ChoiceField,
    IdField,
    IntField,
    KwField,
    RequestSerializer,
    ResponseSerializer,
    SchemaField,
    ShapeField,
    TextField,
    nullable,
    validated,
)
from microgrid.common.signals import collect
from microgrid.topology import signals
from microgrid.topology.choices import AssetKind, NodeKind, PhaseRotation

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


# -- the parts of a topology save, for the document (topology.validation reads them) --------------


class MicrogridNodeInput(RequestSerializer):
    """A Microgrid Node of a topology save."""

    node_id = IdField()
    parent_id = IdField(required=False, allow_null=True)
    kind = ChoiceField(NodeKind.values)
    name = TextField()
    physical_rating_kw = KwField(exclusive_minimum=0)
    voltage_v = KwField(exclusive_minimum=0, maximum=100000, required=False, default=230)
    phases = CheckedField(
        lambda v: v, {"type": "integer", "enum": [1, 3]}, required=False, default=3
    )
    rating_a = KwField(
        exclusive_minimum=0,
        maximum=MAX_A,
        required=False,
        allow_null=True,
        help_text="per-phase current rating (A) of the node's protective device",
    )
    max_unbalance_a = KwField(
        minimum=0,
        maximum=MAX_A,
        required=False,
        allow_null=True,
        help_text="largest current difference (A) allowed between two of its phases",
    )


class _AssetInput(RequestSerializer):
    asset_id = IdField()
    node_id = IdField()
    name = TextField()


class ChargerAssetInput(_AssetInput):
    """a CHARGER asset"""

    kind = ChoiceField([AssetKind.CHARGER])
    max_power_kw = KwField(exclusive_minimum=0)
    min_power_kw = KwField(minimum=0, required=False, default=0)
    priority = IntField(minimum=-1000, maximum=1000, required=False, default=0)
    failsafe_power_kw = KwField(
        minimum=0, required=False, allow_null=True, help_text="default: min_power_kw"
    )
    phases = CheckedField(
        lambda v: v, {"type": "integer", "enum": [1, 3]}, required=False, default=3
    )
    phase_rotation = ChoiceField(
        PhaseRotation.values,
        required=False,
        allow_null=True,
        help_text="single-phase: L1, L2, L3 (default L1); three-phase: L1L2L3, L2L3L1, "
        "L3L1L2 (default L1L2L3)",
    )
    min_current_a = KwField(minimum=0, maximum=MAX_A, required=False, allow_null=True)
    max_current_a = KwField(exclusive_minimum=0, maximum=MAX_A, required=False, allow_null=True)
    station_id = IdField(
        required=False, allow_null=True, help_text="its OCPP charging station (with evse_id)"
    )
    evse_id = IntField(
        minimum=1,
        maximum=1000,
        required=False,
        allow_null=True,
        help_text="its EVSE on the station (the connector id on OCPP 1.6)",
    )


class SiteLoadAssetInput(_AssetInput):
    """a SITE_LOAD asset"""

    kind = ChoiceField([AssetKind.SITE_LOAD])
    rated_power_kw = KwField(exclusive_minimum=0, required=False, allow_null=True)
    fallback_kw = KwField(minimum=0, required=False, allow_null=True)


class BatteryAssetInput(_AssetInput):
    """a BATTERY asset"""

    kind = ChoiceField([AssetKind.BATTERY])
    rated_power_kw = KwField(exclusive_minimum=0, required=False, allow_null=True)
    fallback_kw = KwField(maximum=MAX_KW, required=False, allow_null=True)


class PvAssetInput(_AssetInput):
    """a PV asset"""

    kind = ChoiceField([AssetKind.PV])
    rated_power_kw = KwField(exclusive_minimum=0, required=False, allow_null=True)


class MeterAssetInput(_AssetInput):
    """a METER asset"""

    kind = ChoiceField([AssetKind.METER])


def _by_kind(name: str, variants: dict[str, Any]) -> PolymorphicProxySerializer:
    """One schema per asset kind, only that kind's fields (spec 3.1)."""
    assert set(variants) == set(AssetKind.values)
    # Plain str keys: the YAML form of the schema cannot represent an enum member.
    return PolymorphicProxySerializer(
        component_name=name,
        serializers={str(kind): s for kind, s in variants.items()},
        resource_type_field_name="kind",
    )


ASSET_INPUT = _by_kind(
    "AssetInput",
    {
        AssetKind.CHARGER: ChargerAssetInput,
        AssetKind.SITE_LOAD: SiteLoadAssetInput,
        AssetKind.BATTERY: BatteryAssetInput,
        AssetKind.PV: PvAssetInput,
        AssetKind.METER: MeterAssetInput,
    },
)


class TopologyReplace(RequestSerializer):
    """Replaces every node and asset; the GET shape may be sent back edited."""

    unknown_text = "is not a field of a topology save"
    # What a GET answered may be sent back: these keys are ignored.
    read_only_keys = frozenset(
        {"microgrid_id", "depot_id", "depot_name", "topology_version", "updated_at", "updated_by"}
    )

    base_version = CheckedField(
        lambda value: value,
        {
            "type": "integer",
            "minimum": 0,
            "description": "the topology_version the edit was made on",
        },
    )
    # Taken as sent: validated as a whole by topology.validation (every finding names its item).
    nodes = ShapeField(MicrogridNodeInput, many=True)
    assets = ShapeField(ASSET_INPUT, many=True)


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


class RevisionChanges(ResponseSerializer):
    nodes_added = serializers.ListField(child=SchemaField(ID_SCHEMA))
    nodes_removed = serializers.ListField(child=SchemaField(ID_SCHEMA))
    nodes_changed = serializers.ListField(child=SchemaField(ID_SCHEMA))
    assets_added = serializers.ListField(child=SchemaField(ID_SCHEMA))
    assets_removed = serializers.ListField(child=SchemaField(ID_SCHEMA))
    assets_changed = serializers.ListField(child=SchemaField(ID_SCHEMA))


# -- scopes -------------------------------------------------------------------------------------


class MicrogridScope(ResponseSerializer):
    """The whole microgrid."""

    additional_properties = False
    type = serializers.ChoiceField(["MICROGRID"])


class NodeScope(ResponseSerializer):
    """The subtree rooted at a Microgrid Node."""

    additional_properties = False
    type = serializers.ChoiceField(["NODE"])
    node_id = SchemaField(ID_SCHEMA)


SCOPE = PolymorphicProxySerializer(
    component_name="Scope",
    serializers={"MICROGRID": MicrogridScope, "NODE": NodeScope},
    resource_type_field_name="type",
)


def ScopeAnswerField(**kwargs) -> ShapeField:
    """An answer's scope: `{type: MICROGRID}` or `{type: NODE, node_id}`."""
    return ShapeField(SCOPE, **kwargs)


# -- the topology document ----------------------------------------------------------------------


class Depot(ResponseSerializer):
    depot_id = SchemaField(ID_SCHEMA)
    name = serializers.CharField()
    timezone = serializers.CharField()


class MicrogridNode(ResponseSerializer):
    node_id = SchemaField(ID_SCHEMA)
    parent_id = SchemaField(nullable(ID_SCHEMA))
    kind = serializers.ChoiceField(NodeKind.values)
    name = serializers.CharField()
    physical_rating_kw = serializers.FloatField()
    voltage_v = serializers.FloatField()
    phases = serializers.ChoiceField([1, 3])
    rating_a = serializers.FloatField(allow_null=True, help_text="A per phase")
    max_unbalance_a = serializers.FloatField(allow_null=True, help_text="A")


class _Asset(ResponseSerializer):
    asset_id = SchemaField(ID_SCHEMA)
    node_id = SchemaField(ID_SCHEMA)
    name = serializers.CharField()


class ChargerAsset(_Asset):
    """a CHARGER asset"""

    kind = serializers.ChoiceField([AssetKind.CHARGER])
    max_power_kw = serializers.FloatField()
    min_power_kw = serializers.FloatField()
    priority = serializers.IntegerField()
    failsafe_power_kw = serializers.FloatField()
    phases = serializers.ChoiceField([1, 3])
    phase_rotation = serializers.ChoiceField(PhaseRotation.values)
    min_current_a = serializers.FloatField(allow_null=True)
    max_current_a = serializers.FloatField(allow_null=True)
    station_id = serializers.CharField(allow_null=True)
    evse_id = serializers.IntegerField(allow_null=True)


class SiteLoadAsset(_Asset):
    """a SITE_LOAD asset"""

    kind = serializers.ChoiceField([AssetKind.SITE_LOAD])
    rated_power_kw = serializers.FloatField(allow_null=True)
    fallback_kw = serializers.FloatField(allow_null=True)


class BatteryAsset(_Asset):
    """a BATTERY asset"""

    kind = serializers.ChoiceField([AssetKind.BATTERY])
    rated_power_kw = serializers.FloatField(allow_null=True)
    fallback_kw = serializers.FloatField(allow_null=True)


class PvAsset(_Asset):
    """a PV asset"""

    kind = serializers.ChoiceField([AssetKind.PV])
    rated_power_kw = serializers.FloatField(allow_null=True)


class MeterAsset(_Asset):
    """a METER asset"""

    kind = serializers.ChoiceField([AssetKind.METER])


ASSET = _by_kind(
    "Asset",
    {
        AssetKind.CHARGER: ChargerAsset,
        AssetKind.SITE_LOAD: SiteLoadAsset,
        AssetKind.BATTERY: BatteryAsset,
        AssetKind.PV: PvAsset,
        AssetKind.METER: MeterAsset,
    },
)


class Topology(ResponseSerializer):
    """The topology document (spec 6): nodes in tree order, assets by asset_id."""

    microgrid_id = SchemaField(ID_SCHEMA)
    depot_id = SchemaField(ID_SCHEMA)
    depot_name = serializers.CharField()
    topology_version = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    updated_by = serializers.CharField(allow_null=True)
    nodes = MicrogridNode(many=True, help_text="tree order")
    assets = ShapeField(ASSET, many=True, help_text="by asset_id")


class RevisionDetail(RevisionSummary):
    changes = RevisionChanges()
    topology = Topology()


class MicrogridCard(ResponseSerializer):
    """Identity, depot, version and the current state of every concern."""

    microgrid_id = SchemaField(ID_SCHEMA)
    name = serializers.CharField()
    depot = Depot()
    topology_version = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    updated_by = serializers.CharField(allow_null=True)
    telemetry_stale_after_s = serializers.IntegerField()
    cycle_interval_s = serializers.IntegerField()
    enabled = serializers.BooleanField()

    def get_fields(self):
        # The sections the apps above add to the card (`card_sections`), as they document them.
        fields = super().get_fields()
        sections: dict[str, serializers.Field] = {}
        for answer in collect(signals.card_section_fields):
            sections.update(answer)
        for name in sorted(sections):
            fields[name] = copy.deepcopy(sections[name])
        return fields
