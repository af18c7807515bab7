"""The one module of error codes.

Services raise `DomainError`; the API exception handler (`common.api`) and the
Manage pages turn it into the spec's error body
`{"code", "message", "details", "errors"}` and status. Tests assert codes, not
message wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

# code -> HTTP status
STATUS: dict[str, int] = {
    # generic
    "MALFORMED_REQUEST": 400,
    "NOT_AUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "NOT_ACCEPTABLE": 406,
    "REQUEST_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "THROTTLED": 429,
    "BROKER_UNAVAILABLE": 503,
    "IDEMPOTENCY_KEY_REUSED": 422,
    "FIELD_INVALID": 422,
    # topology
    "MICROGRID_NOT_FOUND": 404,
    "MICROGRID_EXISTS": 409,
    "MICROGRID_HAS_NO_TOPOLOGY": 409,
    "REVISION_NOT_FOUND": 404,
    "TOPOLOGY_INVALID": 422,
    "TOPOLOGY_ROOT_INVALID": 422,
    "TOPOLOGY_ORPHAN_NODE": 422,
    "TOPOLOGY_CYCLE": 422,
    "TOPOLOGY_DUPLICATE_ID": 422,
    "ASSET_NODE_NOT_FOUND": 422,
    "NODE_IN_USE": 422,
    "TOPOLOGY_VERSION_CONFLICT": 409,
    "NODE_NOT_FOUND": 422,
    "ASSET_NOT_FOUND": 422,
    "STATION_NOT_FOUND": 422,
    # limits
    "LIMIT_NOT_FOUND": 404,
    "LIMIT_EXCEEDS_PHYSICAL_RATING": 422,
    "LIMIT_SCHEDULE_OVERLAP": 422,
    "LIMIT_ALREADY_EXISTS": 409,
    # telemetry
    "TELEMETRY_INVALID": 422,
    "CHARGER_NOT_FOUND": 404,
    "CHARGER_NOT_CONNECTED": 409,
    # balancing
    "CYCLE_NOT_FOUND": 404,
    "BREACH_NOT_FOUND": 404,
    # envelopes
    "ENVELOPE_NOT_FOUND": 404,
    "ENVELOPE_NOT_WITHDRAWABLE": 409,
    "OSCP_GROUP_NOT_FOUND": 404,
    "OSCP_MESSAGE_INVALID": 400,
    "OSCP_GROUP_ALREADY_BOUND": 409,
    "OSCP_REQUEST_ID_REUSED": 400,
    "OSCP_PEER_NOT_CONNECTED": 409,
    # capabilities
    "BINDING_NOT_FOUND": 404,
    "BINDING_NOT_ACTIVE": 409,
    "CAPABILITY_SOURCE_CONFLICT": 409,
    "CAPABILITY_SOURCE_NOT_ACTIVE": 409,
    "CAPABILITY_TRANSFER_CONFLICT": 409,
    # legacy
    "CIRCUIT_NOT_FOUND": 404,
    "CIRCUIT_ALIAS_NOT_RESOLVABLE": 409,
    "TOU_SCOPE_UNSUPPORTED": 422,
    "TOU_MAPPING_AMBIGUOUS": 422,
    # simulator
    "PROFILE_INVALID": 422,
}


@dataclass
class ErrorItem:
    """One validation finding: `{code, node_id?, asset_id?, field?, message}` (+ details)."""

    code: str
    message: str
    node_id: str | None = None
    asset_id: str | None = None
    field: str | None = None
    details: dict[str, Any] = dc_field(default_factory=dict)

    def sort_key(self) -> tuple:
        return (self.code, self.node_id or self.asset_id or "", self.field or "", self.message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code}
        if self.node_id is not None:
            out["node_id"] = self.node_id
        if self.asset_id is not None:
            out["asset_id"] = self.asset_id
        if self.field is not None:
            out["field"] = self.field
        out["message"] = self.message
        if self.details:
            out["details"] = self.details
        return out


def sort_errors(errors: list[ErrorItem]) -> list[ErrorItem]:
    """The spec's order: by code (plain ASCII), then node_id or asset_id."""
    return sorted(errors, key=ErrorItem.sort_key)


class DomainError(Exception):
    """A refusal a client can act on; carries the spec's error body."""

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        errors: list[ErrorItem] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.errors = sort_errors(errors) if errors else []
        self.status = status or STATUS.get(code, 422)

    @classmethod
    def from_errors(cls, errors: list[ErrorItem], message: str | None = None) -> DomainError:
        """A validation failure: the top-level code is the first error's code."""
        ordered = sort_errors(errors)
        first = ordered[0]
        return cls(
            first.code,
            message or f"{len(ordered)} validation error(s); first: {first.message}",
            errors=ordered,
            status=422,
        )

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "details": self.details}
        if self.errors:
            out["errors"] = [e.to_dict() for e in self.errors]
        return out


def not_found(code: str, what: str, ident: Any) -> DomainError:
    return DomainError(code, f"{what} {ident!r} not found", {"id": ident}, status=404)
