"""The withdrawal body (OSCP messages are read by `envelopes.oscp`, the protocol's parser)."""

from __future__ import annotations

from typing import Any

from microgrid.common.fields import check_text
from microgrid.common.serializers import CheckedField, RequestSerializer, validated

MAX_REASON_CHARS = 500


def _reason(value: Any) -> str:
    return check_text(
        value if value is not None else "", max_length=MAX_REASON_CHARS, allow_empty=True
    )


class EnvelopeWithdraw(RequestSerializer):
    """Why support withdraws the envelope (optional)."""

    unknown_text = "is not a field of a withdrawal"

    reason = CheckedField(
        _reason,
        {"type": "string", "maxLength": MAX_REASON_CHARS, "nullable": True},
        required=False,
        allow_null=True,
        default="",
    )


def withdraw_input(raw: Any) -> dict[str, Any]:
    """`envelope_withdraw`'s keyword arguments for a client's body, or FIELD_INVALID."""
    values = validated(EnvelopeWithdraw, raw)
    return {"reason": values.get("reason") or ""}
