"""Reads of cycles and breaches: constant query counts, filters validated."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from balancing import blocks
from balancing.charts import load_against_limit
from balancing.choices import BreachStatus
from balancing.dispatch import ChargingLimit, ScopeBudget
from balancing.filters import BreachFilter, CycleFilter
from balancing.models import (
    ROW_FIELDS,
    Breach,
    Cycle,
    cycle_id_prefix,
    cycle_seq_of,
    decode_record,
    parts_columns,
)
from balancing.signals import cycle_document_read
from microgrid.common.errors import DomainError
from microgrid.topology.diagram import headroom

# A cycle's summary: its id and the row values a block keeps of it (the same for a row and a
# compacted cycle).
SUMMARY_FIELDS = ("cycle_id", *blocks.COLUMNS)


def cycle_summary(row: dict[str, Any] | Cycle) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k))
    return {
        "cycle_id": get("cycle_id"),
        "seq": get("seq"),
        "trigger": {"type": get("trigger_type")},
        "scope": get("scope"),
        "started_at": get("started_at").isoformat(),
        "completed_at": get("completed_at").isoformat(),
        "topology_version": get("topology_version"),
        "outcome": get("outcome"),
        "source_mode": get("source_mode"),
        "reason_codes": get("reason_codes"),
    }


# The filters of the cycle list as tests of a cycle read from a block (the rows' are SQL).
_CHOICE_FILTERS = (
    ("trigger", "trigger_type"),
    ("outcome", "outcome"),
    ("source_mode", "source_mode"),
)


def cycle_list(
    microgrid, *, params, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    """The newest cycles matching the `CycleFilter` parameters, or FIELD_INVALID; `offset`
    skips that many (the Manage page's paging). Rows and compacted cycles alike: the rows'
    page and the blocks' newest that can reach it, merged (balancing/blocks.py)."""
    filters = CycleFilter(params, queryset=Cycle.objects.filter(microgrid=microgrid))
    if limit is not None:
        filters.default_limit = limit
    ordered = filters.filtered().order_by("-started_at", "-seq").values(*SUMMARY_FIELDS)
    need = offset + filters.limit()
    rows = list(ordered[:need])
    wanted = {field: filters.value(name) for name, field in _CHOICE_FILTERS}
    wanted = {field: value for field, value in wanted.items() if value is not None}
    compacted = blocks.newest_first(
        microgrid,
        need=need,
        keep=lambda c: all(getattr(c, f) == v for f, v in wanted.items()),
        since=filters.value("since"),
        until=filters.value("until"),
        floor=rows[-1]["started_at"] if len(rows) >= need else None,
    )
    if compacted:
        rows += [{f: getattr(c, f) for f in SUMMARY_FIELDS} for c in compacted]
        rows.sort(key=lambda r: (r["started_at"], r["seq"]), reverse=True)
    return [cycle_summary(row) for row in rows[offset:need]]


def find_cycle(microgrid, cycle_id: str) -> Cycle | None:
    """The cycle of the microgrid with this id, from its row or its block, or None: the one
    way to read a cycle by id (a compacted cycle has no row)."""
    cycle = Cycle.objects.filter(microgrid=microgrid, cycle_id=cycle_id).first()
    return cycle if cycle is not None else blocks.find_in_block(microgrid, cycle_id)


def find_cycle_anywhere(cycle_id: str) -> Cycle | None:
    """The cycle with this id in any microgrid (replay names no microgrid), or None."""
    from microgrid.topology.models import Microgrid

    cycle = Cycle.objects.filter(cycle_id=cycle_id).select_related("microgrid").first()
    if cycle is not None:
        return cycle
    parsed = cycle_seq_of(cycle_id)
    if parsed is None:
        return None
    # The microgrid whose prefix the id starts with (one read of the microgrid ids).
    for pk, microgrid_id in Microgrid.objects.values_list("pk", "microgrid_id").iterator():
        if cycle_id_prefix(microgrid_id) == parsed[0]:
            return blocks.block_cycle(Microgrid.objects.get(pk=pk), parsed[1])
    return None


def cycles_by_seq(microgrid):
    """Every kept cycle of the microgrid by seq, rows and compacted alike (the simulator's
    artifacts): an iterator of `Cycle`s."""
    rows = Cycle.objects.filter(microgrid=microgrid).order_by("seq").iterator(chunk_size=200)
    return blocks.in_seq_order(microgrid, rows)


def cycle_seqs(microgrid) -> dict[str, int]:
    """cycle_id -> seq of every kept cycle of the microgrid (rows and blocks' summaries)."""
    out = dict(Cycle.objects.filter(microgrid=microgrid).values_list("cycle_id", "seq"))
    for cycle in blocks.newest_first(microgrid, need=0):
        out[cycle.cycle_id] = cycle.seq
    return out


def cycle_get(microgrid, cycle_id: str) -> Cycle:
    cycle = find_cycle(microgrid, cycle_id)
    if cycle is None:
        raise DomainError(
            "CYCLE_NOT_FOUND",
            f"cycle {cycle_id!r} not found in microgrid {microgrid.microgrid_id!r}",
            {"cycle_id": cycle_id, "microgrid_id": microgrid.microgrid_id},
            status=404,
        )
    return cycle


def cycle_setpoints(cycle: Cycle) -> tuple[list[ChargingLimit], list[ScopeBudget]]:
    """What a cycle hands out: a limit for every charger it set (not one an external
    controller sets), and every scope budget, each with the cycle's `valid_until`."""
    return cycle_setpoints_of(cycle.document)


def cycle_setpoints_of(doc: dict[str, Any]) -> tuple[list[ChargingLimit], list[ScopeBudget]]:
    limits = [
        ChargingLimit(c["asset_id"], c["allocated_kw"], doc["cycle_id"], c["valid_until"])
        for c in doc["chargers"]
        if c.get("allocated_kw") is not None and "valid_until" in c
    ]
    budgets = [
        ScopeBudget(b["scope"], b["budget_kw"], b["valid_until"], doc["cycle_id"])
        for b in doc["scope_budgets"]
    ]
    return limits, budgets


def latest_cycle_document(microgrid) -> dict[str, Any] | None:
    """The latest cycle's stored document with its seq (one query; None before the first)."""
    cycle = Cycle.objects.filter(microgrid=microgrid).order_by("-started_at", "-seq").first()
    return None if cycle is None else {**cycle.document, "seq": cycle.seq}


def cycle_document(cycle: Cycle) -> dict[str, Any]:
    """The stored document with the breaches' current status (they may have resolved since)."""
    doc = dict(cycle.document)
    ids = [b["breach_id"] for b in doc.get("breaches", [])]
    if ids:
        current = {
            b.breach_id: b for b in Breach.objects.filter(breach_id__in=ids).select_related("cycle")
        }
        doc["breaches"] = [
            {
                **b,
                "status": current[b["breach_id"]].status,
                "resolved_at": current[b["breach_id"]].resolved_at.isoformat()
                if current[b["breach_id"]].resolved_at
                else None,
            }
            if b["breach_id"] in current
            else b
            for b in doc["breaches"]
        ]
    doc["served_triggers"] = (
        list(cycle.served_trigger_list)
        if cycle.in_block
        else list(cycle.triggers.order_by("requested_at", "pk").values_list("trigger", flat=True))
    )
    # Apps above balancing add what they own (the dispatch app: delivery statuses).
    cycle_document_read.send(sender=Cycle, cycle=cycle, document=doc)
    return doc


def breach_list(microgrid, *, params) -> QuerySet[Breach]:
    """The newest breaches matching the `BreachFilter` parameters, or FIELD_INVALID."""
    filters = BreachFilter(
        params, queryset=Breach.objects.filter(microgrid=microgrid).select_related("cycle")
    )
    return filters.page(filters.filtered().order_by("-detected_at", "node_id"))


def breach_get(microgrid, breach_id: str) -> Breach:
    breach = (
        Breach.objects.filter(microgrid=microgrid, breach_id=breach_id)
        .select_related("cycle")
        .first()
    )
    if breach is None:
        raise DomainError(
            "BREACH_NOT_FOUND",
            f"breach {breach_id!r} not found",
            {"breach_id": breach_id},
            status=404,
        )
    return breach


def latest_cycle_row(microgrid) -> dict[str, Any] | None:
    return (
        Cycle.objects.filter(microgrid=microgrid)
        .order_by("-started_at", "-seq")
        .values(*SUMMARY_FIELDS)
        .first()
    )


def latest_cycle_summary(microgrid) -> dict[str, Any] | None:
    row = latest_cycle_row(microgrid)
    return cycle_summary(row) if row else None


def card_cycle_section(microgrid) -> dict[str, Any]:
    """The card's latest cycle and how many vehicles it found at risk of leaving short (one
    query; null before the first cycle)."""
    row = latest_cycle_row(microgrid)
    return {
        "latest_cycle": cycle_summary(row) if row else None,
        "vehicles_at_risk": row["vehicles_at_risk"] if row else None,
    }


def node_load(node: dict[str, Any]) -> tuple[float, float, float | None]:
    """(load kW, effective limit kW, load as % of the limit) of one node of a cycle document.

    The load is what the cycle planned for the node: its uncontrolled load plus what it
    allocated to the chargers below it.
    """
    load = round((node.get("uncontrolled_load_kw") or 0.0) + (node.get("allocated_kw") or 0.0), 3)
    limit = node.get("effective_limit_kw")
    pct = round(100.0 * load / limit, 1) if limit else None
    return load, limit, pct


def latest_node_loads(microgrid) -> dict[str, dict[str, Any]]:
    """node_id -> {load_kw, limit_kw, load_pct, cycle_id, seq, completed_at} from the latest
    cycle (one query), in tree order; empty before the first cycle."""
    cycle = Cycle.objects.filter(microgrid=microgrid).order_by("-started_at", "-seq").first()
    if cycle is None:
        return {}
    cycle_id, seq, completed_at, document = (
        cycle.cycle_id,
        cycle.seq,
        cycle.completed_at,
        cycle.document,
    )
    out = {}
    for node in (document or {}).get("nodes", []):
        load, limit, pct = node_load(node)
        out[node["node_id"]] = {
            "load_kw": load,
            "limit_kw": limit,
            "load_pct": pct,
            "cycle_id": cycle_id,
            "seq": seq,
            "completed_at": completed_at,
        }
    return out


def _headroom(pct: float | None) -> str:
    return headroom(pct) or "unknown"


def open_breach_count(microgrid) -> int:
    return Breach.objects.filter(microgrid=microgrid, status=BreachStatus.OPEN).count()


def card_page_context(microgrid) -> dict[str, Any]:
    loads = latest_node_loads(microgrid)
    root_id = next(iter(loads), None)
    return {
        "microgrid": microgrid,
        "root_load": {"node_id": root_id, **loads[root_id]} if root_id else None,
        "root_headroom": _headroom(loads[root_id]["load_pct"]) if root_id else None,
        **card_cycle_section(microgrid),
        "open_breaches": list(
            Breach.objects.filter(microgrid=microgrid, status=BreachStatus.OPEN).order_by(
                "node_id"
            )[:10]
        ),
        "open_breach_count": open_breach_count(microgrid),
    }


def recent_series(
    microgrid,
    *,
    count: int = 40,
    since: datetime | None = None,
    until: datetime | None = None,
    tz=None,
) -> dict[str, Any]:
    """Load against limit per node, and allocated vs requested per charger group, over recent cycles.

    One query for the records of the last `count` cycles, oldest first (and one for their
    shared columns when this process has not read them yet).
    """
    rows = list(
        Cycle.objects.filter(microgrid=microgrid)
        .order_by("-started_at", "-seq")
        .values_list("seq", "started_at", "record", "record_part_id", *ROW_FIELDS)[:count]
    )
    parts = parts_columns(digest for _, _, _, digest, *_ in rows)
    docs = [
        (seq, started, decode_record(data, digest, parts, row)[0])
        for seq, started, data, digest, *row in rows
    ]
    # Compacted cycles newer than the oldest of these rows, or the rest when the rows are
    # fewer than asked (no block read when none can change the answer).
    compacted = blocks.newest_first(
        microgrid,
        need=count,
        floor=docs[-1][1] if len(docs) >= count else None,
        with_records=True,
    )
    if compacted:
        # Decoded only when among the `count` newest (a cycle of a block decodes on use).
        merged: list[tuple] = docs + [(c.seq, c.started_at, c) for c in compacted]
        merged.sort(key=lambda d: (d[1], d[0]), reverse=True)
        docs = [
            (seq, started, doc.document if isinstance(doc, Cycle) else doc)
            for seq, started, doc in merged[:count]
        ]
    docs.reverse()
    labels = [started.strftime("%H:%M:%S") for _, started, _ in docs]
    per_group: dict[str, dict[str, list]] = defaultdict(lambda: {"allocated": [], "requested": []})
    for index, (_, _, doc) in enumerate(docs):
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for charger in doc.get("chargers", []):
            sums[charger["node_id"]][0] += charger.get("allocated_kw") or 0.0
            sums[charger["node_id"]][1] += charger.get("requested_kw") or 0.0
        for node_id, (allocated, requested) in sums.items():
            series = per_group[node_id]
            _pad(series, index)
            series["allocated"].append(round(allocated, 3))
            series["requested"].append(round(requested, 3))
    for series in per_group.values():
        _pad(series, len(docs))
    return {
        "labels": labels,
        # Load against limit per node: the chart the simulator draws too (balancing/charts.py).
        "nodes": {
            node_id: {"load": s.load, "limit": s.limit}
            for node_id, s in load_against_limit(
                (label, doc.get("nodes", []))
                for label, (_, _, doc) in zip(labels, docs, strict=True)
            ).nodes.items()
        },
        "groups": dict(sorted(per_group.items())),
    }


CHART_RANGES = {"1d": 1, "7d": 7, "30d": 30, "400d": 400}


def aggregate_series(microgrid, *, days: int, now: datetime) -> dict[str, Any]:
    """The shape of `recent_series` over a long range, from the 15-minute aggregates (averages
    per bucket; one query whatever the range: at most 96 buckets a day per node)."""
    from datetime import timedelta

    from balancing.models import CycleAggregate

    rows = CycleAggregate.objects.filter(
        microgrid=microgrid, bucket_start__gte=now - timedelta(days=days)
    ).values_list(
        "bucket_start",
        "node_id",
        "cycles",
        "load_kw_sum",
        "limit_kw_sum",
        "allocated_kw_sum",
        "requested_kw_sum",
    )
    buckets = sorted({r[0] for r in rows})
    at = {b: i for i, b in enumerate(buckets)}
    fmt = "%H:%M" if days <= 1 else "%d %b %H:%M"
    per_node: dict[str, dict[str, list]] = {}
    per_group: dict[str, dict[str, list]] = {}
    for bucket, node_id, cycles, load, limit, allocated, requested in sorted(
        rows, key=lambda r: (r[1], r[0])
    ):
        n = per_node.setdefault(
            node_id, {"load": [None] * len(buckets), "limit": [None] * len(buckets)}
        )
        n["load"][at[bucket]] = round(load / cycles, 3)
        n["limit"][at[bucket]] = round(limit / cycles, 3)
        if requested or allocated:
            g = per_group.setdefault(
                node_id, {"allocated": [None] * len(buckets), "requested": [None] * len(buckets)}
            )
            g["allocated"][at[bucket]] = round(allocated / cycles, 3)
            g["requested"][at[bucket]] = round(requested / cycles, 3)
    return {
        "labels": [b.strftime(fmt) for b in buckets],
        "nodes": per_node,
        "groups": dict(sorted(per_group.items())),
    }


def _pad(series: dict[str, list], length: int) -> None:
    for values in series.values():
        while len(values) < length:
            values.append(None)
