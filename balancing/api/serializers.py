"""The rebalance body: an optional scope (the one scope reader, capabilities.scopes)."""

from __future__ import annotations

from microgrid.capabilities.api.serializers import ScopeField
from microgrid.common.serializers import RequestSerializer


class Rebalance(RequestSerializer):
    """Run one cycle now for a scope (default: the whole microgrid)."""

    unknown_text = "is not a field of a rebalance request"

    scope = ScopeField(required=False, allow_null=True, help_text="default: the whole microgrid")
