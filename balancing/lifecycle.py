"""Data lifecycle of cycles: 15-minute aggregates, then pruning, each bounded per run.

- `cycle_aggregate(now=, limit=)`: the cycles that started before the last closed
  15-minute bucket (with a minute of slack for cycles still committing) and were not
  aggregated yet, at most `limit` of them in (started_at, pk) order, are added into one
  `CycleAggregate` row per (microgrid, node, bucket): load (uncontrolled + allocated),
  effective limit, allocated, requested (the node's own chargers), the node's reason
  codes and the cycles' outcomes. A cursor row remembers how far it got, so a bucket
  filled over several runs adds up, and nothing is counted twice.
- `cycle_prune(now=, limit=)`: full cycles older than CYCLE_RETENTION_DAYS and already
  aggregated, at most `limit`, are deleted with the triggers they served; their breaches
  are kept (they then name no cycle); the newest cycle of each microgrid is always kept
  (its sequence number goes on from it, and its record part stays referenced). Parts no
  kept cycle uses are deleted after it.
- `cycle_compact(now=, limit=)`: cycles of quarter hours already aggregated whole, that
  nothing but their served triggers names (no breach, delivery or other row) and that are
  not their microgrid's newest, at most `limit` of them, are moved into blocks
  (`CycleBlock`, balancing/blocks.py): one per microgrid, quarter hour and record part,
  holding the cycles' row values, their served triggers and their records compressed
  together; their rows and trigger rows are deleted. Pruning deletes blocks whose last
  cycle is past CYCLE_RETENTION_DAYS.
- `cycle_aggregate_prune(now=, limit=)`: aggregates older than
  CYCLE_AGGREGATE_RETENTION_DAYS.
- `cycle_block_days(now=)`: on PostgreSQL, where blocks are partitioned by day, the days
  ahead are created and the days past CYCLE_RETENTION_DAYS dropped whole.
- Before compaction, `cycles_maintaining` (balancing/signals.py) lets the apps above free
  the cycles they name: dispatch prunes its settled rows (dispatch/lifecycle.py), so a
  push channel's cycles compact too.

Every step is a handful of set-based statements; the beat task `balancing.maintain_cycles`
runs them every minute (`CYCLE_MAINTENANCE_BATCH` rows per step and run).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef
from django.db.models.functions import Substr

from balancing import blocks
from balancing.models import (
    ROW_FIELDS,
    Cycle,
    CycleAggregate,
    CycleAggregateCursor,
    CycleBlock,
    CycleRecordPart,
    CycleTrigger,
    cycle_id_of,
    decode_record,
    part_columns,
    parts_columns,
)
from balancing.signals import cycles_maintaining
from microgrid.common import partitions
from microgrid.common.signals import collect
from microgrid.topology.models import Microgrid

BUCKET = timedelta(minutes=15)
SLACK = timedelta(minutes=1)  # a cycle started before the bucket closed may still be committing
_EPOCH = datetime(2000, 1, 1)


def bucket_of(at: datetime) -> datetime:
    """The start of the 15-minute bucket holding `at` (aligned to the hour, in UTC)."""
    epoch = _EPOCH.replace(tzinfo=at.tzinfo)
    return at - ((at - epoch) % BUCKET)


def _new_sums() -> dict[str, Any]:
    return {
        "cycles": 0,
        "load_kw_sum": 0.0,
        "load_kw_max": None,
        "limit_kw_sum": 0.0,
        "limit_kw_min": None,
        "allocated_kw_sum": 0.0,
        "requested_kw_sum": 0.0,
        "reason_codes": {},
        "outcomes": {},
    }


def _add_cycle(sums: dict[tuple, dict], microgrid_pk: int, bucket, outcome, doc) -> None:
    requested: dict[str, float] = defaultdict(float)
    for charger in doc.get("chargers", []):
        requested[charger.get("node_id")] += charger.get("requested_kw") or 0.0
    for node in doc.get("nodes", []):
        s = sums.setdefault((microgrid_pk, node["node_id"], bucket), _new_sums())
        load = (node.get("uncontrolled_load_kw") or 0.0) + (node.get("allocated_kw") or 0.0)
        limit = node.get("effective_limit_kw")
        s["cycles"] += 1
        s["load_kw_sum"] += load
        s["load_kw_max"] = load if s["load_kw_max"] is None else max(s["load_kw_max"], load)
        if limit is not None:
            s["limit_kw_sum"] += limit
            s["limit_kw_min"] = (
                limit if s["limit_kw_min"] is None else min(s["limit_kw_min"], limit)
            )
        s["allocated_kw_sum"] += node.get("allocated_kw") or 0.0
        s["requested_kw_sum"] += requested.get(node["node_id"], 0.0)
        for code in node.get("reason_codes", []):
            s["reason_codes"][code] = s["reason_codes"].get(code, 0) + 1
        s["outcomes"][outcome] = s["outcomes"].get(outcome, 0) + 1


def _merge(into: CycleAggregate, s: dict[str, Any]) -> None:
    into.cycles += s["cycles"]
    for key in ("load_kw_sum", "limit_kw_sum", "allocated_kw_sum", "requested_kw_sum"):
        setattr(into, key, getattr(into, key) + s[key])
    for key, pick in (("load_kw_max", max), ("limit_kw_min", min)):
        old, new = getattr(into, key), s[key]
        setattr(into, key, new if old is None else old if new is None else pick(old, new))
    for key in ("reason_codes", "outcomes"):
        counts = dict(getattr(into, key))
        for code, n in s[key].items():
            counts[code] = counts.get(code, 0) + n
        setattr(into, key, counts)


def cycle_aggregate(*, now: datetime, limit: int | None = None) -> int:
    """Aggregate up to `limit` cycles of closed buckets; returns how many were added."""
    limit = limit or settings.CYCLE_MAINTENANCE_BATCH
    horizon = bucket_of(now - SLACK)
    with transaction.atomic():
        cursor = CycleAggregateCursor.objects.select_for_update().filter(name="cycles").first()
        qs = Cycle.objects.filter(started_at__lt=horizon)
        if cursor is not None:
            qs = qs.filter(started_at__gte=cursor.started_at).exclude(
                started_at=cursor.started_at, pk__lte=cursor.cycle_pk
            )
        rows = list(
            qs.order_by("started_at", "pk").values_list(
                "pk",
                "microgrid_id",
                "started_at",
                "outcome",
                "record",
                "record_part_id",
                *ROW_FIELDS,
            )[:limit]
        )
        if not rows:
            return 0
        parts = parts_columns(row[5] for row in rows)
        sums: dict[tuple, dict] = {}
        for _, microgrid_pk, started_at, outcome, data, digest, *row in rows:
            doc, _ = decode_record(data, digest, parts, row)
            _add_cycle(sums, microgrid_pk, bucket_of(started_at), outcome, doc)
        existing = {
            (a.microgrid_id, a.node_id, a.bucket_start): a
            for a in CycleAggregate.objects.filter(
                microgrid_id__in={k[0] for k in sums},
                bucket_start__in={k[2] for k in sums},
                node_id__in={k[1] for k in sums},
            )
        }
        out = []
        for key, s in sums.items():
            row = existing.get(key) or CycleAggregate(
                microgrid_id=key[0], node_id=key[1], bucket_start=key[2]
            )
            _merge(row, s)
            out.append(row)
        CycleAggregate.objects.bulk_create(
            out,
            update_conflicts=True,
            unique_fields=["microgrid", "node_id", "bucket_start"],
            update_fields=[
                "cycles",
                "load_kw_sum",
                "load_kw_max",
                "limit_kw_sum",
                "limit_kw_min",
                "allocated_kw_sum",
                "requested_kw_sum",
                "reason_codes",
                "outcomes",
            ],
            batch_size=1000,
        )
        last_pk, _, last_started = rows[-1][0], rows[-1][1], rows[-1][2]
        CycleAggregateCursor.objects.update_or_create(
            name="cycles", defaults={"started_at": last_started, "cycle_pk": last_pk}
        )
    return len(rows)


def _retention_cutoff(now: datetime) -> datetime:
    """Full cycles (rows and blocks) that started before this are past CYCLE_RETENTION_DAYS."""
    return now - timedelta(days=settings.CYCLE_RETENTION_DAYS)


def _delete_oldest(queryset, field: str, limit: int) -> int:
    """Delete the `limit` rows of `queryset` that are oldest by `field` (a bounded run: one
    read of their keys, one DELETE); returns how many went."""
    pks = list(queryset.order_by(field).values_list("pk", flat=True)[:limit])
    if pks:
        queryset.model.objects.filter(pk__in=pks).delete()
    return len(pks)


def cycle_prune(*, now: datetime, limit: int | None = None) -> int:
    """Delete up to `limit` aggregated full cycles past CYCLE_RETENTION_DAYS; returns how many."""
    limit = limit or settings.CYCLE_MAINTENANCE_BATCH
    cutoff = _retention_cutoff(now)
    cursor = CycleAggregateCursor.objects.filter(name="cycles").first()
    if cursor is None:
        return 0  # nothing aggregated yet: nothing may go
    with transaction.atomic():
        candidates = list(
            Cycle.objects.filter(started_at__lt=min(cutoff, cursor.started_at))
            .order_by("started_at", "pk")
            .values_list("pk", "microgrid_id", "seq")[:limit]
        )
        if not candidates:
            return 0
        newest = dict(
            Cycle.objects.filter(microgrid_id__in={c[1] for c in candidates})
            .values("microgrid_id")
            .annotate(top=Max("seq"))
            .values_list("microgrid_id", "top")
        )
        doomed = [pk for pk, microgrid_pk, seq in candidates if newest.get(microgrid_pk) != seq]
        if not doomed:
            return 0
        CycleTrigger.objects.filter(served_by_id__in=doomed).delete()
        Cycle.objects.filter(pk__in=doomed).delete()
        _prune_parts(cutoff, limit)
    return len(doomed)


def _references() -> list[tuple[type, str]]:
    """(model, field name) of every foreign key that names a cycle and keeps it a row: all
    but a trigger's `served_by` (compaction keeps the served triggers in the block) and the
    history tables' copies (no constraint: a historical breach names the cycle it named)."""
    out = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if not (field.many_to_one and field.related_model is Cycle):
                continue
            if model is CycleTrigger or not field.db_constraint:
                continue
            out.append((model, field.name))
    return out


def _compactable(microgrids: list[int], floor: datetime, horizon: datetime):
    """The cycles of these microgrids compaction may move: started in [floor, horizon) (an
    index range of `(microgrid, started_at)` per microgrid), of `cycle_id_of`'s form, not
    their microgrid's newest, named by nothing but their served triggers."""
    qs = (
        Cycle.objects.filter(
            microgrid_id__in=microgrids, started_at__gte=floor, started_at__lt=horizon
        )
        .annotate(id_mark=Substr("cycle_id", 13, 1))
        .filter(id_mark="c")
        .filter(
            Exists(
                Cycle.objects.filter(microgrid_id=OuterRef("microgrid_id"), seq__gt=OuterRef("seq"))
            )
        )
    )
    for model, name in _references():
        qs = qs.exclude(Exists(model.objects.filter(**{name: OuterRef("pk")})))
    return qs


_MICROGRIDS_PER_READ = 1000
_COMPACT_FIELDS = (
    "pk",
    "microgrid_id",
    "microgrid__microgrid_id",
    "cycle_id",
    "record",
    "record_part_id",
)


def cycle_compact(*, now: datetime, limit: int | None = None) -> int:
    """Move up to `limit` cycles of aggregated quarter hours into blocks; returns how many.

    One transaction; a handful of statements whatever `limit` (the candidates with their
    records, one read per 1,000 microgrids; their served triggers, the blocks, two
    deletes)."""
    limit = limit or settings.CYCLE_MAINTENANCE_BATCH
    cursor = CycleAggregateCursor.objects.filter(name="cycles").first()
    if cursor is None:
        return 0  # nothing aggregated yet: nothing may move
    # The quarter hours before the cursor's are aggregated whole. Rows older than the
    # lookback (cycles stored before ids named their seq, referenced ones) are not scanned
    # again and again: they stay rows until pruned.
    horizon = bucket_of(cursor.started_at)
    floor = horizon - timedelta(hours=settings.CYCLE_COMPACT_LOOKBACK_HOURS)
    microgrids = list(Microgrid.objects.order_by("pk").values_list("pk", flat=True))
    with transaction.atomic():
        rows: list[tuple] = []
        cut = False
        for at in range(0, len(microgrids), _MICROGRIDS_PER_READ):
            found = list(
                _compactable(microgrids[at : at + _MICROGRIDS_PER_READ], floor, horizon)
                .select_for_update(of=("self",), skip_locked=True)
                .order_by("microgrid_id", "seq")
                .values_list(*_COMPACT_FIELDS, *blocks.COLUMNS)[: limit - len(rows)]
            )
            rows += found
            if len(rows) >= limit:
                cut = True
                break
        groups: list[tuple[tuple, list[tuple]]] = []
        for row in rows:
            _, microgrid_pk, microgrid_id, cycle_id, _, part, seq, *_rest = row
            if cycle_id != cycle_id_of(microgrid_id, seq):
                continue  # not derivable: it stays a row (none should be)
            key = (microgrid_pk, bucket_of(row[len(_COMPACT_FIELDS) + 3]), part)
            if groups and groups[-1][0] == key:
                groups[-1][1].append(row)
            else:
                groups.append((key, [row]))
        if cut and len(groups) > 1:
            groups.pop()  # maybe cut short: the next run takes the quarter hour whole
        if not groups:
            return 0
        pks = [row[0] for _, members in groups for row in members]
        served: dict[int, list] = defaultdict(list)
        for served_by, trigger in (
            CycleTrigger.objects.filter(served_by_id__in=pks)
            .order_by("requested_at", "pk")
            .values_list("served_by_id", "trigger")
        ):
            served[served_by].append(trigger)
        parts = parts_columns(key[2] for key, _ in groups)
        made = []
        for (microgrid_pk, _, part), members in groups:
            columns = part_columns_of(parts, part)
            values = []
            texts = []
            for row in members:
                named = dict(zip(blocks.COLUMNS, row[len(_COMPACT_FIELDS) :], strict=True))
                named["served"] = served.get(row[0], [])
                values.append(named)
                texts.append(record_text(row[4], columns))
            summary, records = blocks.pack(values, texts, columns)
            made.append(
                CycleBlock(
                    microgrid_id=microgrid_pk,
                    first_seq=values[0]["seq"],
                    last_seq=values[-1]["seq"],
                    started_from=min(v["started_at"] for v in values),
                    started_to=max(v["started_at"] for v in values),
                    cycles=len(values),
                    record_part_id=part,
                    summary=summary,
                    records=records,
                )
            )
        CycleBlock.objects.bulk_create(made)
        CycleTrigger.objects.filter(served_by_id__in=pks).delete()
        Cycle.objects.filter(pk__in=pks)._raw_delete(Cycle.objects.db)
    return len(pks)


def part_columns_of(parts: dict, digest: str | None):
    if digest is None:
        return None
    found = parts.get(digest)
    return found if found is not None else part_columns(digest)


def record_text(data, columns) -> bytes:
    from balancing.record import text_of

    return text_of(bytes(data), columns)


def cycle_block_prune(*, now: datetime, limit: int | None = None) -> int:
    """Delete up to `limit` blocks whose last cycle is past CYCLE_RETENTION_DAYS."""
    limit = limit or settings.CYCLE_MAINTENANCE_BATCH
    cutoff = _retention_cutoff(now)
    deleted = _delete_oldest(CycleBlock.objects.filter(started_to__lt=cutoff), "started_to", limit)
    if deleted:
        _prune_parts(cutoff, limit)
    return deleted


def cycle_block_days(*, now: datetime) -> dict[str, int]:
    """PostgreSQL, where blocks are partitioned by UTC day of `started_from` (migration
    balancing.0014, microgrid/common/partitions.py): create the partitions of today and the
    next CYCLE_PARTITION_DAYS_AHEAD days (blocks of such a day already in the DEFAULT
    partition move into it), drop the days that ended at or before CYCLE_RETENTION_DAYS ago
    (a block's cycles lie in one quarter hour, so every block of such a day ended before the
    cutoff, as `cycle_block_prune` would have it), then the record parts they alone used.
    Nothing has a foreign key to a block. The bounded `cycle_block_prune` takes the rest (the
    first hours of the oldest kept day, the DEFAULT partition). Nothing on SQLite."""
    if not partitions.is_partitioned(connection, CycleBlock._meta.db_table):
        return {"block_days_created": 0, "block_days_dropped": 0}
    table = CycleBlock._meta.db_table
    cutoff = _retention_cutoff(now)
    today = now.astimezone(UTC).date()
    created = partitions.ensure_days(
        connection, table, today, today + timedelta(days=settings.CYCLE_PARTITION_DAYS_AHEAD)
    )
    dropped = partitions.drop_days_before(connection, table, cutoff)
    if dropped:
        _prune_parts(cutoff, settings.CYCLE_MAINTENANCE_BATCH)
    return {"block_days_created": len(created), "block_days_dropped": len(dropped)}


def _prune_parts(cutoff: datetime, limit: int) -> None:
    old = list(
        CycleRecordPart.objects.filter(created_at__lt=cutoff).values_list("digest", flat=True)[
            :limit
        ]
    )
    if not old:
        return
    used = set(
        Cycle.objects.filter(record_part_id__in=old)
        .values_list("record_part_id", flat=True)
        .distinct()
    ) | set(
        CycleBlock.objects.filter(record_part_id__in=old)
        .values_list("record_part_id", flat=True)
        .distinct()
    )
    CycleRecordPart.objects.filter(digest__in=[d for d in old if d not in used]).delete()


def cycle_aggregate_prune(*, now: datetime, limit: int | None = None) -> int:
    limit = limit or settings.CYCLE_MAINTENANCE_BATCH
    cutoff = now - timedelta(days=settings.CYCLE_AGGREGATE_RETENTION_DAYS)
    return _delete_oldest(
        CycleAggregate.objects.filter(bucket_start__lt=cutoff), "bucket_start", limit
    )


def cycle_maintain(*, now: datetime) -> dict[str, int]:
    """One beat's worth: aggregate, let the apps above free old cycles (`cycles_maintaining`:
    dispatch prunes its settled rows), compact, prune cycles and blocks, prune aggregates
    (each bounded)."""
    # Compaction follows aggregation: aggregate in batches up to as many cycles as one
    # compaction takes (a fleet of 5,000 writes 20,000 cycles a minute), each bounded.
    aggregated = 0
    while aggregated < settings.CYCLE_COMPACT_BATCH:
        done = cycle_aggregate(now=now)
        aggregated += done
        if done < settings.CYCLE_MAINTENANCE_BATCH:
            break
    # What the apps above keep naming old cycles with (dispatch's settled deliveries) goes
    # first, so the cycles it freed compact in this run.
    freed: dict[str, int] = {}
    for answer in collect(cycles_maintaining, now=now):
        freed.update(answer or {})
    # Today's partition exists before compaction writes into it; whole days go before the
    # row-by-row pruning, which then finds only what they left.
    days = cycle_block_days(now=now)
    compacted = cycle_compact(now=now, limit=settings.CYCLE_COMPACT_BATCH)
    return {
        **freed,
        **days,
        "aggregated": aggregated,
        "compacted": compacted,
        "pruned": cycle_prune(now=now) + cycle_block_prune(now=now),
        "aggregates_pruned": cycle_aggregate_prune(now=now),
    }
