"""What still points at a Microgrid Node or asset, collected from every app.

Apps that reference nodes (limits, envelope group bindings, capability
bindings, circuit aliases) register a provider in their AppConfig.ready();
the topology validator refuses to remove anything a provider names
(NODE_IN_USE). Each provider runs one query for the whole microgrid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Provider = Callable[[Any], list[tuple[str, str, dict[str, Any]]]]
_providers: list[Provider] = []


def register(provider: Provider) -> None:
    """provider(microgrid) -> [(\"node\" | \"asset\", id, {\"type\": ..., \"id\": ...}), ...]"""
    if provider not in _providers:
        _providers.append(provider)


def references_for(microgrid) -> dict[tuple[str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for provider in _providers:
        for kind, ident, ref in provider(microgrid):
            found.setdefault((kind, ident), []).append(ref)
    return found
