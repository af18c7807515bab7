"""The artifacts of a run (spec 8.3): byte-stable JSON lines, a summary and a chart.

Stable bytes: every JSON object is written with sorted keys, compact
separators and every float rounded to 3 decimals; no wall-clock time and no
database id appears. The normalisation, applied to cycles and to the answers
recorded in requests.jsonl alike:

- a timestamp field `X` (an ISO 8601 string with offset) becomes `X_s`,
  seconds from the scenario's start (`started_at` -> `t_s` for cycles); a
  time field that is null (`*_at`, `valid_until`) becomes `X_s: null`;
- `cycle_id`, `microgrid_id` and `breach_id` are left out of cycles and
  breaches (a cycle is named by `seq`, its number in the run); elsewhere a
  value under `id` or a `*_id` key that is a number or a UUID (a database or
  generated id) becomes `cycle-<seq>` when it names a cycle of the run, else
  `id-<n>`, numbered in order of first appearance. Domain ids (node, asset,
  circuit, policy ids ...) are kept as they are.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from balancing.charts import load_against_limit
from microgrid.common.fields import FieldProblem, check_datetime

_UUID = re.compile(
    r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
DROPPED = ("cycle_id", "microgrid_id", "breach_id")


def _is_time_key(key: str) -> bool:
    """Fields that hold a time (so a null one is renamed like a set one): `*_at`, `valid_until`."""
    return key.endswith("_at") or key in ("valid_until", "start_time", "end_time")


def clean_float(value: float) -> float:
    if not math.isfinite(value):
        return value
    out = round(value, 3)
    return 0.0 if out == 0 else out


def dumps(obj: Any) -> str:
    return json.dumps(_floats(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _floats(obj: Any) -> Any:
    if isinstance(obj, float):
        return clean_float(obj)
    if isinstance(obj, dict):
        return {k: _floats(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_floats(v) for v in obj]
    return obj


class Normaliser:
    def __init__(self, start: datetime, cycle_seq: dict[str, int] | None = None) -> None:
        self.start = start
        self.names: dict[Any, str] = {
            cycle_id: f"cycle-{seq}" for cycle_id, seq in (cycle_seq or {}).items()
        }

    def seconds(self, value: str | datetime | None) -> float | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else check_datetime(value)
        return (moment - self.start).total_seconds()

    def _timestamp(self, value: Any) -> float | None:
        if isinstance(value, str) and _ISO.match(value):
            try:
                return self.seconds(value)
            except FieldProblem:
                return None
        return None

    def _id(self, value: Any) -> Any:
        generated = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and _UUID.match(value)
        )
        if not generated:
            return value
        if value not in self.names:
            self.names[value] = (
                f"id-{sum(1 for n in self.names.values() if n.startswith('id-')) + 1}"
            )
        return self.names[value]

    def __call__(self, obj: Any, *, drop: tuple[str, ...] = ()) -> Any:
        if isinstance(obj, list):
            return [self(v, drop=drop) for v in obj]
        if not isinstance(obj, dict):
            return obj
        out: dict[str, Any] = {}
        for key in sorted(obj):
            value = obj[key]
            if key in drop:
                continue
            stamp = self._timestamp(value)
            if stamp is not None or (value is None and _is_time_key(key)):
                out[f"{key}_s"] = stamp
            elif key == "id" or key.endswith("_id"):
                out[key] = self._id(value)
            else:
                out[key] = self(value, drop=drop)
        return out


def cycle_line(seq: int, document: dict[str, Any], normalise: Normaliser) -> dict[str, Any]:
    """One line of cycles.jsonl: spec 4.1's document without ids and wall-clock times."""
    doc = {k: v for k, v in document.items() if k not in ("started_at", "completed_at")}
    line = normalise(doc, drop=DROPPED)
    line["seq"] = seq
    line["t_s"] = normalise.seconds(document["started_at"])
    line.pop("topology_version", None)
    return line


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(dumps(row))
            fh.write("\n")


def write_json(path: Path, obj: Any) -> None:
    path.write_text(
        json.dumps(_floats(obj), sort_keys=True, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def allocation_excess(line: dict[str, Any]) -> list[tuple[float, str]]:
    """(excess, node_id) per node: allocated power above its budget (limit - uncontrolled, >= 0)."""
    out = []
    for node in line["nodes"]:
        budget = max(node["effective_limit_kw"] - node["uncontrolled_load_kw"], 0.0)
        out.append((clean_float(max(node["allocated_kw"] - budget, 0.0)), node["node_id"]))
    return out


class Summary:
    """Counts accumulated cycle by cycle, so cycles need not all be held in memory."""

    def __init__(self) -> None:
        self.cycles = 0
        self.by_outcome: Counter[str] = Counter()
        self.by_source_mode: Counter[str] = Counter()
        self.by_trigger: Counter[str] = Counter()
        self.reason_codes: Counter[str] = Counter()
        self.charger_reason_codes: Counter[str] = Counter()
        self.max_excess = 0.0
        self.max_excess_at: dict[str, Any] | None = None

    def add(self, line: dict[str, Any]) -> None:
        self.cycles += 1
        self.by_outcome[line["outcome"]] += 1
        self.by_source_mode[line["source_mode"]] += 1
        self.by_trigger[line["trigger"]["type"]] += 1
        self.reason_codes.update(line["reason_codes"])
        for charger in line["chargers"]:
            self.charger_reason_codes.update(charger["reason_codes"])
        for excess, node_id in allocation_excess(line):
            if excess > self.max_excess:
                self.max_excess = excess
                self.max_excess_at = {"seq": line["seq"], "t_s": line["t_s"], "node_id": node_id}

    def cycles_part(self) -> dict[str, Any]:
        return {
            "total": self.cycles,
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "by_source_mode": dict(sorted(self.by_source_mode.items())),
            "by_trigger": dict(sorted(self.by_trigger.items())),
        }


def render_chart(
    path: Path,
    lines: list[dict[str, Any]],
    *,
    title: str,
    nodes: list[str],
    max_nodes: int = 12,
    start: datetime | None = None,
    timezone_name: str | None = None,
) -> None:
    """Load against limit per Microgrid Node over time (matplotlib, Agg backend).

    One panel per node, in the order given (the runner passes the biggest
    first: the root, then each level in tree order), at most `max_nodes`: the
    limit as a step line, the uncontrolled load and the allocated power
    stacked below it. The series are the Manage pages' (`balancing.charts`); this is only
    their matplotlib drawing. With `start` the time axis is the depot's clock
    (`timezone_name`), as an operator reads it; without, hours from the start.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if not lines or not nodes:
        return
    chosen = nodes[:max_nodes]
    chart = load_against_limit((line["t_s"] / 3600.0, line["nodes"]) for line in lines)
    chosen = [n for n in chosen if n in chart.nodes]
    if not chosen:
        return

    def values(series: list[float | None]) -> list[float]:
        return [math.nan if v is None else v for v in series]  # a gap where a node was absent

    cols = 3 if len(chosen) > 4 else min(len(chosen), 2)
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False, sharex=True
    )
    for ax, node_id in zip(axes.flat, chosen, strict=False):
        s = chart.nodes[node_id]
        ax.stackplot(
            chart.x,
            values(s.uncontrolled),
            values(s.allocated),
            labels=("uncontrolled", "allocated"),
            colors=("#b8b8b8", "#4a86c5"),
            step="post",
        )
        ax.step(
            chart.x, values(s.limit), where="post", color="#c0392b", linewidth=1.4, label="limit"
        )
        ax.set_title(node_id, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    if start is not None:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(timezone_name or "UTC")
        local = start.astimezone(zone)
        zone_name = local.tzname() or timezone_name or "UTC"

        def clock(hours: float, _pos=None) -> str:
            return (local + timedelta(hours=hours)).strftime("%H:%M")

        from matplotlib.ticker import FuncFormatter

        for ax in axes.flat:
            ax.xaxis.set_major_formatter(FuncFormatter(clock))
        xlabel = f"depot time ({timezone_name or 'UTC'}, {zone_name}), from {local:%Y-%m-%d %H:%M}"
    else:
        xlabel = "hours from start"
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=8)
    axes[0][0].set_ylabel("kW", fontsize=8)
    axes[0][0].legend(fontsize=6, loc="lower right")
    shown = "" if len(nodes) <= max_nodes else f" (first {max_nodes} of {len(nodes)} nodes)"
    fig.suptitle(f"{title}: load against limit per Microgrid Node{shown}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
