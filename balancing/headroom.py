"""Headroom (spec 4.3, "Headroom"): how much of a node's budget a cycle keeps back for its
uncontrolled load to rise before the next cycle. Pure: history in, margins out.

A cycle sets the chargers for the load it measured; if the workshop's load rises before the
next cycle, the node is over its limit until then. `static` keeps the same margin all day;
`adaptive` keeps what the node's own uncontrolled load actually rose over one cycle interval
in the trailing hour (a high quantile of those rises), never less than the static margin.
Only nodes with uncontrolled assets in their subtree get a margin: charger setpoints cannot
rise on their own.
"""

from __future__ import annotations

from math import ceil
from typing import Any

OFF = "off"
STATIC = "static"
ADAPTIVE = "adaptive"

WINDOW_S = 3600  # the trailing hour
QUANTILE = 0.95  # of the rises over one cycle interval
MIN_RISES = 10  # fewer rises than this: the static margin alone (warming up)
MAX_SAMPLES = 1000  # kept per node (a 1 s interval still keeps a quarter hour)

Samples = dict[str, list[list[float]]]  # node_id -> [[t (epoch s), uncontrolled kW], ...]


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (no interpolation: the value is one that happened)."""
    ordered = sorted(values)
    return ordered[max(ceil(q * len(ordered)) - 1, 0)]


def rises(samples: list[list[float]], interval_s: float) -> list[float]:
    """The change of the load between consecutive samples at most 2 intervals apart: one rise
    per cycle interval (a gap, such as a pause in cycling, is not a rise)."""
    out = []
    for (t0, v0), (t1, v1) in zip(samples, samples[1:], strict=False):
        if 0 < t1 - t0 <= 2 * interval_s:
            out.append(v1 - v0)
    return out


def margins(
    *,
    mode: str,
    static_kw: float,
    nodes: list[str],
    history: Samples,
    interval_s: float,
) -> dict[str, tuple[float, dict[str, Any]]]:
    """node_id -> (margin kW, why) for each of `nodes` (those with uncontrolled load below)."""
    if mode == OFF:
        return {}
    static_kw = max(static_kw, 0.0)
    out: dict[str, tuple[float, dict[str, Any]]] = {}
    for node_id in nodes:
        if mode == STATIC:
            out[node_id] = (static_kw, {"mode": STATIC, "static_kw": static_kw})
            continue
        found = rises(history.get(node_id, []), interval_s)
        basis: dict[str, Any] = {
            "mode": ADAPTIVE,
            "static_kw": static_kw,
            "quantile": QUANTILE,
            "window_s": WINDOW_S,
            "rises": len(found),
            "rise_kw": None,
        }
        margin = static_kw
        if len(found) < MIN_RISES:
            basis["source"] = "STATIC_WARMING_UP"
        else:
            rise = round(max(quantile(found, QUANTILE), 0.0), 3)
            basis["rise_kw"] = rise
            if rise > static_kw:
                margin = rise
                basis["source"] = "RISE_QUANTILE"
            else:
                basis["source"] = "STATIC_FLOOR"
        out[node_id] = (margin, basis)
    return out


def remember(history: Samples, *, at_s: float, loads: dict[str, float]) -> Samples:
    """The history with this cycle's uncontrolled loads added and samples older than the
    window (or beyond MAX_SAMPLES) dropped; nodes no longer measured are forgotten."""
    out: Samples = {}
    for node_id, value in sorted(loads.items()):
        kept = [s for s in history.get(node_id, []) if at_s - WINDOW_S <= s[0] < at_s]
        kept.append([at_s, round(value, 3)])
        out[node_id] = kept[-MAX_SAMPLES:]
    return out
