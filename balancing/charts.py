"""Load against limit per Microgrid Node over cycles: the one computation behind both charts.

`load_against_limit` reads the node rows of a run of cycle documents (the stored documents
for the Manage pages, the simulator's cycle lines for its artifacts) and gives, per node in
the order the nodes first appear, its effective limit, uncontrolled load and allocated power
per cycle (None where a cycle did not have the node). Two thin adapters draw it: the Manage
pages' inline SVG (`svg_series` for `topology.diagram.render_load_chart_svg`) and the
simulator's PNG (`simulator.artifacts.render_chart`, matplotlib). Drawing differs by medium;
what is drawn (which figures, which node, which gaps) is decided here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

X = TypeVar("X")


@dataclass
class NodeSeries:
    limit: list[float | None] = field(default_factory=list)
    uncontrolled: list[float | None] = field(default_factory=list)
    allocated: list[float | None] = field(default_factory=list)

    @property
    def load(self) -> list[float | None]:
        """What the node carried: its uncontrolled load plus what the cycle allocated."""
        return [
            None if u is None or a is None else round(u + a, 3)
            for u, a in zip(self.uncontrolled, self.allocated, strict=True)
        ]

    def _pad(self, length: int) -> None:
        for values in (self.limit, self.uncontrolled, self.allocated):
            values.extend([None] * (length - len(values)))


@dataclass
class LoadChart(Generic[X]):
    x: list[X]
    nodes: dict[str, NodeSeries]


def load_against_limit(cycles: Iterable[tuple[X, Iterable[Mapping[str, Any]]]]) -> LoadChart[X]:
    """`cycles`: (x, the cycle's node rows) oldest first; x is a label or a time."""
    xs: list[X] = []
    nodes: dict[str, NodeSeries] = {}
    for index, (x, rows) in enumerate(cycles):
        xs.append(x)
        for row in rows:
            series = nodes.setdefault(row["node_id"], NodeSeries())
            series._pad(index)
            series.limit.append(row["effective_limit_kw"])
            series.uncontrolled.append(row["uncontrolled_load_kw"])
            series.allocated.append(row["allocated_kw"])
    for series in nodes.values():
        series._pad(len(xs))
    return LoadChart(xs, nodes)


def svg_series(
    labels: list[str], load: list[float | None], limit: list[float | None]
) -> list[dict[str, Any]]:
    """One node's load and limit as `render_load_chart_svg` series: load as an area, the limit
    dashed (per cycle from `load_against_limit`, or per bucket from the aggregates)."""
    return [
        {
            "label": "load (uncontrolled + allocated) kW",
            "style": "area",
            "points": list(zip(labels, load, strict=True)),
        },
        {
            "label": "effective limit kW",
            "style": "dashed",
            "points": list(zip(labels, limit, strict=True)),
        },
    ]


@dataclass
class SessionEnergy:
    """Energy needed against delivered per session of one cycle (issue 20), by asset_id."""

    asset_ids: list[str] = field(default_factory=list)
    departures: list[str | None] = field(default_factory=list)
    needed: list[float] = field(default_factory=list)
    delivered: list[float] = field(default_factory=list)
    at_risk: list[bool] = field(default_factory=list)


def session_energy(chargers: Iterable[Mapping[str, Any]]) -> SessionEnergy:
    """The chargers of a cycle document whose session has a known energy need."""
    out = SessionEnergy()
    for c in sorted(chargers, key=lambda c: c["asset_id"]):
        if c.get("energy_needed_kwh") is None:
            continue
        out.asset_ids.append(c["asset_id"])
        out.departures.append(c.get("departure_at"))
        out.needed.append(c["energy_needed_kwh"])
        out.delivered.append(c.get("energy_delivered_kwh") or 0.0)
        out.at_risk.append(bool(c.get("at_risk")))
    return out


def session_svg_series(labels: list[str], energy: SessionEnergy) -> list[dict[str, Any]]:
    """`session_energy` as `render_load_chart_svg` series: delivered as an area, the need as a
    dashed line over it (one point per session, labelled by charger and departure)."""
    return [
        {
            "label": "delivered kWh",
            "style": "area",
            "points": list(zip(labels, energy.delivered, strict=True)),
        },
        {
            "label": "energy needed kWh",
            "style": "dashed",
            "points": list(zip(labels, energy.needed, strict=True)),
        },
    ]
