"""The OpenAPI document's shared parts: component schemas, security schemes, error responses.

Views describe their operations with `api_doc(...)` / `oscp_doc(...)`, naming
the components here by `ref("Name")`; `postprocess` (a drf-spectacular
postprocessing hook, see SPECTACULAR_SETTINGS) adds the components and the
security schemes to the document and settles what the decorators cannot say
(required request bodies, OSCP paths without a trailing slash).

The shapes are the spec's (sections 3 to 6) as the code answers them: a test
runs schemathesis against this document (tests/reliability/test_schemathesis.py),
so a response that drifts from its schema fails there. Fix the schema when the
schema is wrong, never the response to fit a schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from balancing.choices import BreachStatus, Outcome, SourceMode, TriggerType
from balancing.codes import BREACH_PRECEDENCE, REASON_PRECEDENCE
from microgrid.capabilities.choices import BindingEnd
from microgrid.common.fields import (
    ID_SCHEMA_PATTERN,
    MAX_A,
    MAX_KW,
    TEXT_MAX_LENGTH,
    TEXT_SCHEMA_PATTERN,
)
from microgrid.envelopes.choices import (
    CapacityUnit,
    Direction,
    Enforcement,
    EnvelopeState,
    EnvelopeStatus,
    ForecastType,
    Phase,
)
from microgrid.limits.choices import ConstraintSource
from microgrid.topology.choices import AssetKind, NodeKind, PhaseRotation

HHMM_REGEX = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
DAYS = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]

TOKEN_SCHEME = "tokenAuth"
SESSION_SCHEME = "cookieAuth"
OSCP_SCHEME = "oscpPeerToken"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _enum(choices) -> dict[str, Any]:
    values = choices.values if hasattr(choices, "values") else list(choices)
    return {"type": "string", "enum": [str(v) for v in values]}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


def _obj(
    properties: Mapping[str, Any],
    *,
    optional: Iterable[str] = (),
    closed: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """An object whose properties are all required except `optional`; `closed` refuses others."""
    optional = set(optional)
    out: dict[str, Any] = {"type": "object", "properties": dict(properties)}
    required = [name for name in properties if name not in optional]
    if required:
        out["required"] = required
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


def _arr(items: dict[str, Any], **extra) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


ID = {"type": "string", "pattern": ID_SCHEMA_PATTERN}
STR = {"type": "string"}
TEXT = {
    "type": "string",
    "minLength": 1,
    "maxLength": TEXT_MAX_LENGTH,
    "pattern": TEXT_SCHEMA_PATTERN,
}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
DT = {"type": "string", "format": "date-time"}
# Inputs: a JSON number, finite (JSON has no NaN/Infinity; the parser refuses them too).
AMPS = {"type": "number", "maximum": MAX_A, "description": "A per phase"}
KW_POSITIVE = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": MAX_KW}
KW_NON_NEGATIVE = {"type": "number", "minimum": 0, "maximum": MAX_KW}
TIMESTAMP_IN = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 with a UTC offset (a time without one is refused)",
}

LIMIT_SOURCE = _enum(ConstraintSource)
REASON_CODE = {"type": "string", "enum": list(REASON_PRECEDENCE)}
BREACH_CODE = {"type": "string", "enum": list(BREACH_PRECEDENCE)}


def _asset_variants(*, request: bool) -> list[dict[str, Any]]:
    """One schema per asset kind: only that kind's fields (spec 3.1)."""
    if request:
        base = {"asset_id": ID, "node_id": ID, "name": TEXT}
        fields = {
            "CHARGER": {
                "max_power_kw": KW_POSITIVE,
                "min_power_kw": {**KW_NON_NEGATIVE, "default": 0},
                "priority": {"type": "integer", "minimum": -1000, "maximum": 1000, "default": 0},
                "failsafe_power_kw": _nullable(
                    {**KW_NON_NEGATIVE, "description": "default: min_power_kw"}
                ),
                "phases": {"type": "integer", "enum": [1, 3], "default": 3},
                "phase_rotation": _nullable(
                    {
                        "type": "string",
                        "enum": list(PhaseRotation.values),
                        "description": "single-phase: L1, L2, L3 (default L1); three-phase: "
                        "L1L2L3, L2L3L1, L3L1L2 (default L1L2L3)",
                    }
                ),
                "min_current_a": _nullable({**AMPS, "minimum": 0}),
                "max_current_a": _nullable({**AMPS, "exclusiveMinimum": True, "minimum": 0}),
            },
            "SITE_LOAD": {
                "rated_power_kw": _nullable(KW_POSITIVE),
                "fallback_kw": _nullable(KW_NON_NEGATIVE),
            },
            "BATTERY": {
                "rated_power_kw": _nullable(KW_POSITIVE),
                "fallback_kw": _nullable({"type": "number", "minimum": -MAX_KW, "maximum": MAX_KW}),
            },
            "PV": {"rated_power_kw": _nullable(KW_POSITIVE)},
            "METER": {},
        }
        optional_of = {kind: set(f) - {"max_power_kw"} for kind, f in fields.items()}
    else:
        base = {"asset_id": ID, "node_id": ID, "name": STR}
        fields = {
            "CHARGER": {
                "max_power_kw": NUM,
                "min_power_kw": NUM,
                "priority": INT,
                "failsafe_power_kw": NUM,
                "phases": {"type": "integer", "enum": [1, 3]},
                "phase_rotation": {"type": "string", "enum": list(PhaseRotation.values)},
                "min_current_a": _nullable(NUM),
                "max_current_a": _nullable(NUM),
            },
            "SITE_LOAD": {"rated_power_kw": _nullable(NUM), "fallback_kw": _nullable(NUM)},
            "BATTERY": {"rated_power_kw": _nullable(NUM), "fallback_kw": _nullable(NUM)},
            "PV": {"rated_power_kw": _nullable(NUM)},
            "METER": {},
        }
        optional_of = {kind: set() for kind in fields}
    assert set(fields) == set(AssetKind.values)
    return [
        _obj(
            {**base, "kind": {"type": "string", "enum": [kind]}, **extra},
            optional=optional_of[kind],
            closed=request,
            description=f"a {kind} asset",
        )
        for kind, extra in fields.items()
    ]


def _schemas() -> dict[str, dict[str, Any]]:
    s: dict[str, dict[str, Any]] = {}

    # -- errors (spec 6) ---------------------------------------------------------------------
    s["ErrorItem"] = _obj(
        {
            "code": STR,
            "node_id": STR,
            "asset_id": STR,
            "field": STR,
            "message": STR,
            "details": {"type": "object", "additionalProperties": True},
        },
        optional=("node_id", "asset_id", "field", "details"),
        description="One validation finding; lists are sorted by code, then id.",
    )
    s["Error"] = _obj(
        {
            "code": {"type": "string", "example": "FIELD_INVALID"},
            "message": STR,
            "details": {"type": "object", "additionalProperties": True},
            "errors": _arr(ref("ErrorItem")),
        },
        optional=("errors",),
        description="Every refusal: `code` says what, `errors` itemises validation problems.",
    )

    # -- scopes -------------------------------------------------------------------------------
    s["MicrogridScope"] = _obj(
        {"type": {"type": "string", "enum": ["MICROGRID"]}},
        closed=True,
        description="The whole microgrid.",
    )
    s["NodeScope"] = _obj(
        {"type": {"type": "string", "enum": ["NODE"]}, "node_id": ID},
        closed=True,
        description="The subtree rooted at a Microgrid Node.",
    )
    s["Scope"] = {"oneOf": [ref("MicrogridScope"), ref("NodeScope")]}
    s["LegacyScope"] = _obj(
        {"type": {"type": "string", "enum": ["MICROGRID", "NODE"]}, "node_id": _nullable(ID)},
        description="The frozen legacy shape: node_id is null for the whole microgrid.",
    )
    s["AliasScope"] = _obj(
        {
            "type": {"type": "string", "enum": ["MICROGRID", "NODE", "ASSET"]},
            "node_id": ID,
            "asset_id": ID,
        },
        optional=("node_id", "asset_id"),
        description="A circuit alias's scope as resolved (ASSET for a per-charger circuit).",
    )

    # -- topology (3.1) -----------------------------------------------------------------------
    s["Depot"] = _obj({"depot_id": ID, "name": STR, "timezone": STR})
    s["MicrogridNode"] = _obj(
        {
            "node_id": ID,
            "parent_id": _nullable(ID),
            "kind": _enum(NodeKind),
            "name": STR,
            "physical_rating_kw": NUM,
            "voltage_v": NUM,
            "phases": {"type": "integer", "enum": [1, 3]},
            "rating_a": _nullable(NUM),
        }
    )
    s["Asset"] = {"oneOf": _asset_variants(request=False)}
    s["Topology"] = _obj(
        {
            "microgrid_id": ID,
            "depot_id": ID,
            "depot_name": STR,
            "topology_version": INT,
            "updated_at": _nullable(DT),
            "updated_by": _nullable(STR),
            "nodes": _arr(ref("MicrogridNode"), description="tree order"),
            "assets": _arr(ref("Asset"), description="by asset_id"),
        },
        description="The topology document (spec 6): nodes in tree order, assets by asset_id.",
    )
    s["MicrogridNodeInput"] = _obj(
        {
            "node_id": ID,
            "parent_id": _nullable(ID),
            "kind": _enum(NodeKind),
            "name": TEXT,
            "physical_rating_kw": KW_POSITIVE,
            "voltage_v": {
                "type": "number",
                "exclusiveMinimum": True,
                "minimum": 0,
                "maximum": 100000,
                "default": 230,
            },
            "phases": {"type": "integer", "enum": [1, 3], "default": 3},
            "rating_a": _nullable(
                {
                    **AMPS,
                    "exclusiveMinimum": True,
                    "minimum": 0,
                    "description": "per-phase current rating of the node's protective device",
                }
            ),
        },
        optional=("parent_id", "voltage_v", "phases", "rating_a"),
        closed=True,
    )
    s["AssetInput"] = {"oneOf": _asset_variants(request=True)}
    s["RevisionDetail"] = {
        "allOf": [
            ref("RevisionSummary"),
            _obj(
                {
                    "changes": _obj(
                        {
                            name: _arr(ID)
                            for name in (
                                "nodes_added",
                                "nodes_removed",
                                "nodes_changed",
                                "assets_added",
                                "assets_removed",
                                "assets_changed",
                            )
                        }
                    ),
                    "topology": ref("Topology"),
                }
            ),
        ]
    }

    # -- limits (3.2) ---------------------------------------------------------------------------
    s["TelemetryBatch"] = _obj(
        {
            "readings": _arr(
                _obj(
                    {
                        "asset_id": ID,
                        "power_kw": {
                            "type": "number",
                            "minimum": -MAX_KW,
                            "maximum": MAX_KW,
                            "description": ">= 0 except for batteries (negative: discharging)",
                        },
                        "observed_at": TIMESTAMP_IN,
                        "connected": {**BOOL, "description": "chargers only (required there)"},
                        "requested_kw": _nullable(
                            {**KW_NON_NEGATIVE, "description": "chargers only"}
                        ),
                        "current_a": _nullable(
                            {
                                "type": "array",
                                "items": {"type": "number", "minimum": 0, "maximum": MAX_A},
                                "minItems": 3,
                                "maxItems": 3,
                                "description": "chargers and meters only: the currents of the "
                                "asset's own L1, L2, L3 in A",
                            }
                        ),
                    },
                    optional=("connected", "requested_kw", "current_a"),
                    closed=True,
                )
            )
        },
        closed=True,
    )

    # -- operating envelopes (3.3) --------------------------------------------------------------
    s["Envelope"] = _obj(
        {
            "envelope_id": {"type": "string", "example": "OE-1"},
            "microgrid_id": ID,
            "scope": ref("Scope"),
            "direction": _enum(Direction),
            "forecast_type": _enum(ForecastType),
            "capacity": NUM,
            "unit": _enum(CapacityUnit),
            "phase": _enum(Phase),
            "capacity_kw": NUM,
            "capacity_explanation": _nullable(STR),
            "conversion": _nullable(_obj({"voltage_v": NUM, "phases": INT})),
            "valid_from": DT,
            "valid_until": DT,
            "state": _enum(EnvelopeState),
            "status": _enum(EnvelopeStatus),
            "enforcement": _enum(Enforcement),
            "peer_offline": BOOL,
            "source": _obj(
                {
                    "protocol": {"type": "string", "enum": ["OSCP"]},
                    "version": STR,
                    "message_type": STR,
                    "peer": STR,
                    "group_id": STR,
                    "request_id": STR,
                    "correlation_id": _nullable(STR),
                    "received_at": DT,
                    "block_index": INT,
                }
            ),
            "superseded_by": _nullable(STR),
            "superseded_at": _nullable(DT),
            "split_from": _nullable(STR),
            "withdrawn_at": _nullable(DT),
            "withdrawn_by_peer": BOOL,
            "withdrawn_by": _nullable(STR),
            "withdraw_reason": _nullable(STR),
            "legacy_circuit": _nullable(
                _obj({"circuit_id": ID, "available_capacity_kw": NUM}),
            ),
        }
    )
    s["EnvelopeDetail"] = {
        "allOf": [
            ref("Envelope"),
            _obj(
                {
                    "supersedes": _arr(STR),
                    "parts": _arr(STR),
                    "transitions": _arr(
                        _obj({"transition": STR, "at": DT, "recorded_at": DT}),
                    ),
                    "history": _arr(
                        _obj(
                            {
                                "at": DT,
                                "change": STR,
                                "by": _nullable(STR),
                                "state": _enum(EnvelopeState),
                                "superseded_by": _nullable(STR),
                                "reason": _nullable(STR),
                            }
                        ),
                        description="oldest first",
                    ),
                }
            ),
        ]
    }
    s["EnvelopeList"] = _obj({"microgrid_id": ID, "at": DT, "envelopes": _arr(ref("Envelope"))})

    # -- capabilities (3.4) ----------------------------------------------------------------------

    # -- cycles and breaches (4) ----------------------------------------------------------------
    s["Trigger"] = {
        **_obj({"type": _enum(TriggerType)}),
        "additionalProperties": True,
        "description": "what asked for the cycle, with its particulars (e.g. circuit_id)",
    }
    s["CycleSummary"] = _obj(
        {
            "cycle_id": STR,
            "seq": INT,
            "trigger": ref("Trigger"),
            "scope": ref("Scope"),
            "started_at": DT,
            "completed_at": DT,
            "topology_version": INT,
            "outcome": _enum(Outcome),
            "source_mode": _enum(SourceMode),
            "reason_codes": _arr(REASON_CODE),
        }
    )
    s["CycleList"] = _obj({"microgrid_id": ID, "cycles": _arr(ref("CycleSummary"))})
    s["Binding"] = _obj(
        {
            "node_id": ID,
            "limit_source": LIMIT_SOURCE,
            "limit_kw": NUM,
            "envelope_id": STR,
            "peer_offline": BOOL,
        },
        optional=("envelope_id", "peer_offline"),
        description="the node whose limit stopped the charger",
    )
    s["Cycle"] = _obj(
        {
            "cycle_id": STR,
            "microgrid_id": ID,
            "scope": ref("Scope"),
            "trigger": ref("Trigger"),
            "started_at": DT,
            "completed_at": DT,
            "topology_version": INT,
            "outcome": _enum(Outcome),
            "source_mode": _enum(SourceMode),
            "reason_codes": _arr(REASON_CODE),
            "nodes": _arr(
                _obj(
                    {
                        "node_id": ID,
                        "effective_limit_kw": NUM,
                        "limit_source": LIMIT_SOURCE,
                        "uncontrolled_load_kw": NUM,
                        "allocated_kw": NUM,
                        "headroom_kw": NUM,
                        "source_mode": _enum(SourceMode),
                        "fallback": _arr(
                            _obj(
                                {
                                    "asset_id": ID,
                                    "why": {"type": "string", "enum": ["STALE", "MISSING"]},
                                    "last_observed_at": _nullable(DT),
                                    "value_kw": NUM,
                                    "threshold_s": INT,
                                }
                            )
                        ),
                        "reason_codes": _arr(REASON_CODE),
                        "budget_kw": {
                            "type": "number",
                            "description": "only for a node under external control",
                        },
                    },
                    optional=("budget_kw",),
                ),
                description="tree order",
            ),
            "chargers": _arr(
                _obj(
                    {
                        "asset_id": ID,
                        "node_id": ID,
                        "requested_kw": NUM,
                        "allocated_kw": _nullable(
                            {**NUM, "description": "null: set by an external controller"}
                        ),
                        "reason_codes": _arr(REASON_CODE),
                        "binding": _nullable(ref("Binding")),
                        "valid_until": {**DT, "description": "with every setpoint"},
                        "dispatch_status": _nullable(
                            {**STR, "description": "its delivery's status (spec 4.7)"}
                        ),
                    },
                    optional=("valid_until", "dispatch_status"),
                ),
                description="by asset_id",
            ),
            "scope_budgets": _arr(
                _obj(
                    {
                        "scope": ref("Scope"),
                        "budget_kw": NUM,
                        "valid_until": DT,
                        "binding_id": STR,
                        "source_device_id": ID,
                    },
                    optional=("binding_id", "source_device_id"),
                ),
                description="what external controllers may draw in their scopes",
            ),
            "breaches": _arr(
                _obj(
                    {
                        "breach_id": STR,
                        "node_id": ID,
                        "measured_kw": NUM,
                        "limit_kw": NUM,
                        "excess_kw": NUM,
                        "exceeded": _arr(BREACH_CODE),
                        "primary_reason_code": BREACH_CODE,
                        "status": _enum(BreachStatus),
                        "new": BOOL,
                        "resolved_at": _nullable(DT),
                        "phase": {"type": "string", "enum": ["L1", "L2", "L3"]},
                        "measured_a": NUM,
                        "limit_a": NUM,
                        "excess_a": NUM,
                    },
                    optional=("resolved_at", "phase", "measured_a", "limit_a", "excess_a"),
                )
            ),
            "served_triggers": _arr(ref("Trigger")),
            "dispatch": _obj(
                {
                    "channels": _arr(STR),
                    "counts": {"type": "object", "additionalProperties": INT},
                },
                description="how its setpoints were delivered (spec 4.7)",
            ),
        },
        optional=("dispatch",),
        description="The cycle document of spec 4.1.",
    )
    s["Breach"] = _obj(
        {
            "breach_id": STR,
            "cycle_id": _nullable(STR),
            "node_id": ID,
            "measured_kw": NUM,
            "limit_kw": NUM,
            "excess_kw": NUM,
            "exceeded": _arr(BREACH_CODE),
            "primary_reason_code": BREACH_CODE,
            "status": _enum(BreachStatus),
            "detected_at": DT,
            "resolved_at": _nullable(DT),
            "phase": {
                "type": "string",
                "enum": ["L1", "L2", "L3"],
                "description": "a phase breach (BREACH_PHASE_CURRENT) only",
            },
            "measured_a": NUM,
            "limit_a": NUM,
            "excess_a": NUM,
        },
        optional=("phase", "measured_a", "limit_a", "excess_a"),
    )
    s["BreachList"] = _obj({"microgrid_id": ID, "breaches": _arr(ref("Breach"))})

    # -- the microgrid card ------------------------------------------------------------------------
    s["MicrogridCard"] = _obj(
        {
            "microgrid_id": ID,
            "name": STR,
            "depot": ref("Depot"),
            "topology_version": INT,
            "updated_at": _nullable(DT),
            "updated_by": _nullable(STR),
            "telemetry_stale_after_s": INT,
            "cycle_interval_s": INT,
            "enabled": BOOL,
            "active_envelopes": _arr(
                _obj(
                    {
                        "envelope_id": STR,
                        "scope": ref("Scope"),
                        "direction": _enum(Direction),
                        "forecast_type": _enum(ForecastType),
                        "capacity_kw": NUM,
                        "valid_from": DT,
                        "valid_until": DT,
                        "enforcement": _enum(Enforcement),
                        "peer": STR,
                        "peer_offline": BOOL,
                    }
                )
            ),
            "capabilities": _obj(
                {
                    "bindings": _arr(
                        {
                            "allOf": [
                                ref("CapabilityBinding"),
                                _obj(
                                    {
                                        "scope_label": STR,
                                        "status_fresh": BOOL,
                                        "external_control": BOOL,
                                    }
                                ),
                            ]
                        }
                    ),
                    "ended_binding_count": INT,
                }
            ),
            "latest_cycle": _nullable(ref("CycleSummary")),
            "limits": _obj(
                {
                    "at": DT,
                    "effective_limit_kw": _nullable(NUM),
                    "limit_source": _nullable(LIMIT_SOURCE),
                    "active_policy_id": _nullable(STR),
                    "policy_count": INT,
                }
            ),
            "open_breach_count": INT,
        },
        description="Identity, depot, version and the current state of every concern.",
    )

    # -- legacy (5) --------------------------------------------------------------------------------
    tou_entry = {
        "start": {"type": "string", "pattern": HHMM_REGEX},
        "end": {"type": "string", "pattern": HHMM_REGEX},
        "days": _arr({"type": "string", "enum": DAYS}, minItems=1, maxItems=7, uniqueItems=True),
        "limit_kw": NUM,
    }
    s["LegacyTouLimitsInput"] = _obj(
        {
            "tou_limits": _arr(
                _obj({**tou_entry, "limit_kw": KW_POSITIVE}, closed=True), maxItems=500
            ),
            "circuit_id": {**ID, "description": "may be sent back as read: the URL's circuit"},
        },
        optional=("circuit_id",),
        closed=True,
    )

    # -- OSCP 2.0 inbound ----------------------------------------------------------------------------
    # Open objects: unknown fields are ignored (and kept in the stored raw message).
    s["OscpForecastedBlock"] = _obj(
        {
            "capacity": {"type": "number", "minimum": 0, "description": "0 means pause"},
            "phase": _enum(Phase),
            "unit": _enum(CapacityUnit),
            "start_time": TIMESTAMP_IN,
            "end_time": {**TIMESTAMP_IN, "description": "after start_time"},
        },
    )
    s["OscpUpdateGroupCapacityForecast"] = _obj(
        {
            "group_id": {**ID, "example": "GRP-N"},
            "type": _enum(ForecastType),
            "forecasted_blocks": _arr(
                ref("OscpForecastedBlock"),
                maxItems=1000,
                description="blocks of one message and phase must not overlap; an empty list "
                "withdraws the peer's forecast of this group and type",
            ),
        },
    )
    s["OscpHeartbeat"] = _obj(
        {
            "offline_mode_at": {
                "type": "string",
                "description": "ISO 8601; without an offset it is taken as UTC",
            }
        },
    )
    s["OscpHandshake"] = _obj(
        {
            "required_behaviour": _obj(
                {
                    "heartbeat_interval": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 10000000,
                        "nullable": True,
                    },
                    "measurement_configuration": _arr(
                        {"type": "string", "enum": ["CONTINUOUS", "INTERMITTENT"]}
                    ),
                },
                optional=("heartbeat_interval", "measurement_configuration"),
            )
        },
        optional=("required_behaviour",),
    )
    s["OscpRegister"] = _obj(
        {
            "token": {"type": "string", "minLength": 16, "maxLength": 256},
            "version_url": _arr(
                _obj({"version": STR, "base_url": {"type": "string", "format": "uri"}}),
                minItems=1,
                description="must offer version 2.0",
            ),
        },
    )
    return s


SCHEMAS = _schemas()
assert set(BindingEnd.values) == {"RELEASED", "TRANSFERRED"}

SECURITY_SCHEMES = {
    TOKEN_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <key>`; keys come from `manage.py create_api_token USER --role ROLE`",
    },
    SESSION_SCHEME: {
        "type": "apiKey",
        "in": "cookie",
        "name": "sessionid",
        "description": "the Manage login session (browsable API)",
    },
    OSCP_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <peer token>`: an OSCP peer's own token, valid on /oscp/ only",
    },
}


class TokenAuthScheme(OpenApiAuthenticationExtension):
    target_class = "microgrid.common.auth.HashedTokenAuthentication"
    name = TOKEN_SCHEME

    def get_security_definition(self, auto_schema):
        return SECURITY_SCHEMES[TOKEN_SCHEME]


# -- responses -------------------------------------------------------------------------------------

ERROR_TEXT = {
    400: "MALFORMED_REQUEST: the body is not a JSON object (or not UTF-8 JSON)",
    401: "NOT_AUTHENTICATED: no token, or an unknown or revoked one",
    403: "PERMISSION_DENIED: the token's role may not do this",
    404: "not found (MICROGRID_NOT_FOUND and the resource's own *_NOT_FOUND)",
    405: "METHOD_NOT_ALLOWED",
    409: "a conflict with the current state",
    413: "REQUEST_TOO_LARGE: the body is larger than the cap",
    422: "semantically invalid input (FIELD_INVALID and the codes of the spec), itemised",
}


def _responses(
    ok: Mapping[int, Any], errors: Mapping[int, str] | Iterable[int]
) -> dict[int, OpenApiResponse]:
    out: dict[int, OpenApiResponse] = {}
    for status, schema in ok.items():
        if isinstance(schema, tuple):
            schema, text = schema
        else:
            text = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content"}[status]
        out[status] = OpenApiResponse(response=schema, description=text)
    items = errors.items() if isinstance(errors, Mapping) else ((s, None) for s in errors)
    for status, text in sorted(items):
        out[status] = OpenApiResponse(response=ref("Error"), description=text or ERROR_TEXT[status])
    return out


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="A repeat with the same key and body answers as the first did and changes "
    "nothing; the same key with another body is 422 IDEMPOTENCY_KEY_REUSED. At most 200 "
    "characters.",
)


def api_doc(
    *,
    operation_id: str,
    summary: str,
    ok: Mapping[int, Any],
    errors: Mapping[int, str] | Iterable[int] = (),
    request: Any = None,
    parameters: Iterable[OpenApiParameter] = (),
    description: str | None = None,
    tag: str,
    idempotent: bool = False,
    path_ids: bool = True,
):
    """One /api/ operation: 401 and 403 always, 404 where the path has ids, the other error
    statuses as named."""
    error_map = dict(errors) if isinstance(errors, Mapping) else dict.fromkeys(errors)
    error_map.setdefault(401, None)
    error_map.setdefault(403, None)
    if path_ids:
        # An id outside the pattern (or with a character no id has) matches no endpoint.
        text = error_map.get(404)
        error_map[404] = f"{text}; " if text else ""
        error_map[404] += "NOT_FOUND: a path id outside the id pattern"
    params = list(parameters)
    if idempotent:
        params.append(IDEMPOTENCY_KEY)
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        # Never the base view's docstring, which drf-spectacular would inherit otherwise.
        description=description or summary,
        request={"application/json": request} if request is not None else None,
        responses=_responses(ok, error_map),
        parameters=params,
        tags=[tag],
    )


OSCP_HEADERS = [
    OpenApiParameter(
        "X-Request-ID",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=True,
        description="unique per message: a repeat changes nothing and answers 204 again; "
        "at most 128 printable ASCII characters",
        pattern=r"^[!-~]([ -~]{0,126}[!-~])?$",
    ),
    OpenApiParameter(
        "X-Correlation-ID",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=False,
        description="at most 128 printable ASCII characters; names a segmented message",
        pattern=r"^[!-~]([ -~]{0,126}[!-~])?$",
    ),
    OpenApiParameter(
        "X-Segment-Index",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        required=False,
        description="with X-Segment-Count and X-Correlation-ID: this segment's number (from 0 "
        "or 1); update_group_capacity_forecast only",
    ),
    OpenApiParameter(
        "X-Segment-Count",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        required=False,
        description="how many segments the message has (1 to 100); all within 5 minutes",
    ),
]


def oscp_doc(*, operation_id: str, summary: str, request: str | None, not_found: bool = False):
    errors = {
        400: "MALFORMED_REQUEST (not a UTF-8 JSON object), OSCP_MESSAGE_INVALID "
        "(headers, or one FIELD_INVALID per bad field) or OSCP_REQUEST_ID_REUSED (this "
        "X-Request-ID came before with another body)",
        401: "NOT_AUTHENTICATED: no, unknown or inactive peer token",
        413: None,
    }
    if not_found:
        errors[404] = "OSCP_GROUP_NOT_FOUND: the group is not bound for this peer"
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=summary,
        request={"application/json": ref(request)} if request else None,
        responses=_responses(
            {204: (None, "Accepted (also for a repeat with the same X-Request-ID and body)")},
            errors,
        ),
        parameters=OSCP_HEADERS,
        tags=["oscp"],
        auth=[{OSCP_SCHEME: []}],
    )


# Operations whose body is optional (an empty body is the default); every other documented
# body is required.
OPTIONAL_BODIES = {"rebalance", "operating_envelopes_withdraw", "capabilities_release"}

PATH_EXAMPLES = {
    "microgrid_id": "MG.NORTH-1",
    "circuit_id": "CIR-101",
    "policy_id": "LP-1",
    "envelope_id": "OE-1",
    "binding_id": "CB-1",
}


def postprocess(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular hook: components, security schemes, required bodies, OSCP paths."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(SCHEMAS)
    components["securitySchemes"] = {
        **components.get("securitySchemes", {}),
        **SECURITY_SCHEMES,
    }
    _drop_enum_ids(result)
    paths = {}
    for path, item in result.get("paths", {}).items():
        if path.startswith("/oscp/") and path.endswith("/"):
            path = path.rstrip("/")  # the spec's OSCP paths have none (one is tolerated)
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            body = operation.get("requestBody")
            if body is not None:
                body["required"] = operation.get("operationId") not in OPTIONAL_BODIES
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"] in PATH_EXAMPLES:
                    parameter.setdefault("example", PATH_EXAMPLES[parameter["name"]])
        paths[path] = item
    result["paths"] = paths
    return result


def _drop_enum_ids(node: Any) -> None:
    """drf-spectacular's internal enum marks (its enum hook, which would name the enums as
    components, is not used: enums stay inline)."""
    if isinstance(node, dict):
        node.pop("x-spec-enum-id", None)
        for value in node.values():
            _drop_enum_ids(value)
    elif isinstance(node, list):
        for value in node:
            _drop_enum_ids(value)
