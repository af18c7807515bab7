"""The import energy of a bound group's scope, for OSCP update_group_measurements.

A scope's energy is its meter's where its node has one (the root's for a MICROGRID scope),
else the sum of the chargers under it. Readings are power (kW); each holds from its
observation until the next reading of that asset, at most the microgrid's
telemetry_stale_after_s (a silent asset adds nothing after that). Two queries: the
microgrid's tree with its assets, then the readings of the chosen assets.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from microgrid.envelopes.choices import ScopeType
from microgrid.envelopes.models import OscpGroupBinding
from microgrid.telemetry.models import TelemetryReading
from microgrid.topology.models import Asset, MicrogridNode


def scope_assets(binding: OscpGroupBinding) -> tuple[str, list[int]]:
    """("METER", [its pk]) or ("CHARGERS", [their pks]) for the binding's scope."""
    nodes = dict(
        MicrogridNode.objects.filter(microgrid_id=binding.microgrid_id).values_list(
            "pk", "parent_id"
        )
    )
    if binding.scope_type == ScopeType.NODE:
        top = binding.node_id
    else:
        top = next((pk for pk, parent in sorted(nodes.items()) if parent is None), None)
    if top is None:
        return "CHARGERS", []

    def under(node_pk: int | None) -> bool:
        for _ in range(len(nodes) + 1):  # a tree is acyclic; the bound is only a guard
            if node_pk is None:
                return False
            if node_pk == top:
                return True
            node_pk = nodes.get(node_pk)
        return False

    assets = list(
        Asset.objects.filter(node__microgrid_id=binding.microgrid_id, kind__in=("METER", "CHARGER"))
        .order_by("pk")
        .values_list("pk", "kind", "node_id")
    )
    meters = [pk for pk, kind, node in assets if kind == "METER" and node == top]
    if meters:
        return "METER", meters[:1]
    return "CHARGERS", [pk for pk, kind, node in assets if kind == "CHARGER" and under(node)]


def energy_wh(asset_pks: list[int], start: datetime, end: datetime, hold: timedelta) -> float:
    """Import energy in Wh of the assets over [start, end): each reading's power holds until
    the asset's next reading, at most `hold`; negative power (export) counts as 0."""
    if not asset_pks or end <= start:
        return 0.0
    rows = (
        TelemetryReading.objects.filter(
            asset_id__in=asset_pks, observed_at__gte=start - hold, observed_at__lt=end
        )
        .order_by("asset_id", "observed_at")
        .values_list("asset_id", "observed_at", "power_kw")
    )
    series: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    for asset_pk, at, kw in rows:
        series[asset_pk].append((at, kw))
    total_kwh = 0.0
    for points in series.values():
        for i, (at, kw) in enumerate(points):
            until = min(at + hold, end)
            if i + 1 < len(points):
                until = min(until, points[i + 1][0])
            frm = max(at, start)
            if until > frm and kw > 0:
                total_kwh += kw * (until - frm).total_seconds() / 3600
    return round(total_kwh * 1000, 1)
