"""What the OpenAPI document cannot derive from the apps' serializers and views.

drf-spectacular generates the document: each operation's request and answer are the
serializers of its app (`<app>/api/serializers.py`), named by the views' `api_doc(...)`.
This module holds the rest: the error body (spec 6: one shape for every refusal), the
security schemes, the error responses every operation shares, the Idempotency-Key header,
and `postprocess` (a drf-spectacular postprocessing hook, see SPECTACULAR_SETTINGS), which
settles what the decorators cannot say (required request bodies, path examples, OSCP paths
without a trailing slash).

A test runs schemathesis against the document (tests/reliability/test_schemathesis.py), so
a response that drifts from its schema fails there. Fix the schema when the schema is
wrong, never the response to fit a schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from microgrid.common.serializers import ref

TOKEN_SCHEME = "tokenAuth"
SESSION_SCHEME = "cookieAuth"
OSCP_SCHEME = "oscpPeerToken"

STR = {"type": "string"}
DETAILS = {"type": "object", "additionalProperties": True}

# The error body (spec 6): every refusal of every endpoint, /api/ and /oscp/ alike.
SCHEMAS: dict[str, dict[str, Any]] = {
    "ErrorItem": {
        "type": "object",
        "properties": {
            "code": STR,
            "node_id": STR,
            "asset_id": STR,
            "field": STR,
            "message": STR,
            "details": DETAILS,
        },
        "required": ["code", "message"],
        "description": "One validation finding; lists are sorted by code, then id.",
    },
    "Error": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "example": "FIELD_INVALID"},
            "message": STR,
            "details": DETAILS,
            "errors": {"type": "array", "items": ref("ErrorItem")},
        },
        "required": ["code", "message", "details"],
        "description": "Every refusal: `code` says what, `errors` itemises validation problems.",
    },
}

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


def responses(
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
        responses=responses(ok, error_map),
        parameters=params,
        tags=[tag],
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
