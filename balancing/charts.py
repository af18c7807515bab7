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


@dataclass
class PhaseBar:
    """One phase of a node in a cycle: the current planned on it against its current limit."""

    phase: str
    current_a: float
    limit_a: float | None
    share: float  # current / limit, 0..1 for drawing (1 when there is no limit)


@dataclass
class NodePhases:
    node_id: str
    source: str | None  # the current limit's source (PHYSICAL_RATING: the node's rating_a)
    bars: list[PhaseBar]


def phase_load(engine_input: Mapping[str, Any] | None, doc: Mapping[str, Any]) -> list[NodePhases]:
    """Per node with a current limit in a cycle with per-phase data (issue 19): each phase's
    current as the cycle planned it against the node's current limit. The chargers' setpoints
    on the node phases they draw on (the engine's own model, `phase_alloc.build_model`, from
    the cycle's input snapshot), plus the uncontrolled load spread evenly over each node's
    phases, summed up the tree as the engine's rooms are; a stale charger counts on its own
    phases at the power the cycle assumed of it. [] without per-phase data."""
    import numpy as np

    from balancing.phase_alloc import PHASE_NAMES, PhaseInput, build_model

    if not engine_input or not engine_input.get("phase"):
        return []
    # nodes in preorder (parents first), as the model expects them
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for n in engine_input["nodes"]:
        children.setdefault(n["parent_id"], []).append(n)
    order: list[Mapping[str, Any]] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(reversed(children.get(n["node_id"], [])))
    index = {n["node_id"]: i for i, n in enumerate(order)}
    parent = [index.get(n["parent_id"], -1) for n in order]
    rows = {r["node_id"]: r for r in doc.get("nodes", [])}
    chargers = [c for c in doc.get("chargers", []) if c["node_id"] in index]
    ch_node = np.array([index[c["node_id"]] for c in chargers], dtype=np.intp)
    model = build_model(
        PhaseInput.from_dict(engine_input["phase"]),
        [n["node_id"] for n in order],
        parent,
        [c["asset_id"] for c in chargers],
        ch_node,
    )
    n = len(order)
    kw = np.array([c.get("allocated_kw") or 0.0 for c in chargers], dtype=float)
    stale = np.array(["TELEMETRY_FALLBACK" in c.get("reason_codes", ()) for c in chargers])
    amps = kw * model.amps_per_kw
    total = np.zeros((n, 3))
    for p in range(3):
        total[:, p] = np.bincount(ch_node, weights=amps * model.on[:, p], minlength=n)
    # each node's own uncontrolled load (its subtree's less its children's), less the stale
    # chargers counted in it, spread evenly over its phases
    unc = np.array([rows.get(nd["node_id"], {}).get("uncontrolled_load_kw") or 0.0 for nd in order])
    own = unc.copy()
    for i in range(1, n):
        own[parent[i]] -= unc[i]
    own -= np.bincount(ch_node[stale], weights=kw[stale], minlength=n)
    share = own * 1000.0 / (model.node_v * model.node_phases)
    for p in range(3):
        total[:, p] += np.where(model.node_phases > p, share, 0.0)
    for i in range(n - 1, 0, -1):
        total[parent[i]] += total[i]
    out = []
    for i, nd in enumerate(order):
        if not np.isfinite(model.limit_a[i]):
            continue
        bars = []
        for p in range(int(model.node_phases[i])):
            limit = float(model.phase_limit[i, p])
            current = round(max(float(total[i, p]), 0.0), 1)
            finite = np.isfinite(limit)
            bars.append(
                PhaseBar(
                    PHASE_NAMES[p],
                    current,
                    round(limit, 1) if finite else None,
                    min(current / limit, 1.0) if finite and limit > 0 else 1.0,
                )
            )
        out.append(NodePhases(nd["node_id"], model.phase_source[i][0], bars))
    return out
