"""The interim legacy path: a legacy value follows the operating envelope of its scope.

While a legacy alias maps exactly one scope of a microgrid (the whole
microgrid or one Microgrid Node) and an envelope is enforced on that very
scope, the aliased record's `available_capacity_kw` is the smallest enforced
envelope's `capacity_kw`; otherwise it is its configured value. One
idempotent reconcile makes the stored values so; it answers the envelopes app's
`envelopes_settled` signal, which the envelope services send in the transaction of every
change (receipt, supersede, withdraw, a peer switching between online and offline) and the
beat task at every transition. A value is written (with a history row) only when it changes.

The envelopes app owns when an envelope applies (`enforced_envelopes`); this app, above it,
owns its records and how they follow (the envelopes app never imports legacy models).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from legacy_circuit.models import CircuitAlias, LegacyCircuit
from microgrid.envelopes.choices import ScopeType
from microgrid.envelopes.selectors import enforced_envelopes, scope_key
from microgrid.topology.models import MicrogridNode

FOLLOWING_SCOPES = (ScopeType.MICROGRID, ScopeType.NODE)


def _aliases(microgrid) -> dict[int, list[CircuitAlias]]:
    """Every active alias of every record with an active alias in this microgrid (one query)."""
    rows = (
        CircuitAlias.objects.filter(
            active=True, circuit__aliases__microgrid=microgrid, circuit__aliases__active=True
        )
        .distinct()
        .order_by("circuit__circuit_id", "pk")
    )
    out: dict[int, list[CircuitAlias]] = {}
    for alias in rows:
        out.setdefault(alias.circuit_id, []).append(alias)
    return out


def _following_key(microgrid, aliases: list[CircuitAlias]) -> tuple[str, str] | None:
    """The scope a record follows: its only active alias, on this microgrid, not an asset."""
    if len(aliases) != 1:
        return None  # ambiguous: it maps no one scope, so it follows none
    alias = aliases[0]
    if alias.microgrid_id != microgrid.pk or alias.scope_type not in FOLLOWING_SCOPES:
        return None
    return (alias.scope_type, alias.node_id if alias.scope_type == ScopeType.NODE else "")


def legacy_values(microgrid) -> dict[tuple[str, str], dict[str, Any]]:
    """(scope_type, node_id) -> the first following record's current values (two queries)."""
    by_record = _aliases(microgrid)
    if not by_record:
        return {}
    records = {c.pk: c for c in LegacyCircuit.objects.filter(pk__in=by_record)}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for pk, aliases in sorted(by_record.items(), key=lambda item: records[item[0]].circuit_id):
        key = _following_key(microgrid, aliases)
        if key is not None and key not in out:
            record = records[pk]
            out[key] = {
                "circuit_id": record.circuit_id,
                "name": record.name,
                "available_capacity_kw": record.available_capacity_kw,
                "configured_capacity_kw": record.configured_capacity_kw,
            }
    return out


def legacy_capacity_reconcile(*, microgrid, now: datetime) -> list[str]:
    """Make every aliased legacy value of this microgrid what the envelopes say at `now`.

    Returns the ids of the records whose value changed. Running it twice changes nothing.
    """
    with transaction.atomic():
        by_record = _aliases(microgrid)
        if not by_record:
            return []
        nodes = set(
            MicrogridNode.objects.filter(microgrid=microgrid).values_list("node_id", flat=True)
        )
        smallest: dict[tuple[str, str], Any] = {}
        for envelope in enforced_envelopes(microgrid, now):
            # As for the effective limits: an envelope whose node is gone limits nothing.
            target = envelope.node_id if envelope.scope_type == ScopeType.NODE else None
            if (target is not None and target not in nodes) or (target is None and not nodes):
                continue
            key = scope_key(envelope)
            held = smallest.get(key)
            if held is None or envelope.capacity_kw < held.capacity_kw:
                smallest[key] = envelope
        changed = []
        records = LegacyCircuit.objects.select_for_update().filter(pk__in=by_record)
        for record in records.order_by("circuit_id"):
            key = _following_key(microgrid, by_record[record.pk])
            envelope = smallest.get(key) if key is not None else None
            wanted = envelope.capacity_kw if envelope else record.configured_capacity_kw
            if record.available_capacity_kw == wanted:
                continue
            record.available_capacity_kw = wanted
            record._change_reason = (
                f"follows operating envelope {envelope.envelope_id}"
                if envelope
                else "no operating envelope applies: configured value"
            )
            record.save(update_fields=["available_capacity_kw"])
            changed.append(record.circuit_id)
    return changed
