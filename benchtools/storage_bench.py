"""`manage.py bench storage`: what a cycle costs on disk on PostgreSQL, and the fleet projection.

For each depot size it builds a synthetic depot (benchtools.synthetic), then runs `cycles`
cycles through `balancing.services.cycle_request`, each after a telemetry batch in which
every charger reports at its own time (millisecond timestamps up to 15 s old, a tenth of the
chargers changing what they ask for), as live chargers do; the cycles run after the readings
the depot was built with, so each batch is the latest telemetry its cycle reads. Measured
after VACUUM (VACUUM FULL before, so that space an earlier run freed does not hide growth):

- the growth of every table a cycle writes, relation by relation (heap, TOAST, each index;
  of a partitioned table, its partitions): balancing_cycle, balancing_cyclerecordpart,
  balancing_cycletrigger (the trigger each cycle served), dispatch_deliverybatch,
  dispatch_delivery and dispatch_deliveryattempt (none on the PULL channel), per cycle
  and per charger-cycle;
- of which the compact records themselves (`octet_length(record)`), and the shared parts;
- the cycle table of a fleet (`measure_fleet_table`): 1,000 microgrids writing copies of the
  50-charger depot's cycles round after round, whose indexes fill as a fleet's do.

The projection is for 1,000 microgrids x 50 chargers cycled every 15 s (5,760 cycles a day
each): full cycles per day from the fleet table's bytes per cycle plus what else the
50-charger depot wrote per cycle, then what is kept with the default
retention (CYCLE_RETENTION_DAYS of full cycles, CYCLE_AGGREGATE_RETENTION_DAYS of 15-minute
aggregates per node, measured the same way after aggregating the run's cycles).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

# Everything a cycle writes per cycle: its row, its record parts, the trigger it served, and
# the outbox (nothing on the PULL channel the bench's depots use).
TABLES = (
    "balancing_cycle",
    "balancing_cycleblock",
    "balancing_cyclerecordpart",
    "balancing_cycletrigger",
    "dispatch_deliverybatch",
    "dispatch_delivery",
    "dispatch_deliveryattempt",
)
AGGREGATE_TABLE = "balancing_cycleaggregate"
AGGREGATE_DAYS = 2

# Every relation of a table and of its partitions (heap, TOAST, each index), by name; a
# partition's relations are counted under its parent's names.
_RELATIONS = """
WITH RECURSIVE tree(root, oid) AS (
    SELECT c.oid, c.oid FROM pg_class c WHERE c.relname = %s AND c.relkind IN ('r', 'p')
  UNION ALL
    SELECT tree.root, i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.oid
)
SELECT 'heap', sum(pg_relation_size(t.oid))
  FROM tree t
UNION ALL
SELECT 'toast', coalesce(sum(pg_total_relation_size(c.reltoastrelid)), 0)
  FROM tree t JOIN pg_class c ON c.oid = t.oid WHERE c.reltoastrelid <> 0
UNION ALL
SELECT coalesce(parent_index.relname, x.relname), sum(pg_relation_size(x.oid))
  FROM tree t JOIN pg_index i ON i.indrelid = t.oid JOIN pg_class x ON x.oid = i.indexrelid
  LEFT JOIN pg_inherits up ON up.inhrelid = x.oid
  LEFT JOIN pg_class parent_index ON parent_index.oid = up.inhparent
 GROUP BY 1
"""


def _relations(table: str) -> dict[str, int]:
    """{'heap': bytes, 'toast': bytes, index name: bytes} of a table (with its partitions)."""
    with connection.cursor() as cursor:
        cursor.execute(_RELATIONS, [table])
        return {name: int(size or 0) for name, size in cursor.fetchall()}


def _vacuum(tables, *, full: bool = False) -> None:
    """VACUUM; FULL rewrites the tables and their indexes without free space, so that the
    growth measured next is not hidden by space an earlier run freed."""
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM {'FULL ' if full else ''}ANALYZE {table}")


def _sizes(tables=TABLES, *, full: bool = False) -> dict[str, dict[str, int]]:
    _vacuum(tables, full=full)
    return {table: _relations(table) for table in tables}


def _total(sizes: dict[str, dict[str, int]]) -> int:
    return sum(sum(parts.values()) for parts in sizes.values())


def _grown(before, after) -> dict[str, dict[str, int]]:
    return {
        table: {
            name: after[table].get(name, 0) - before[table].get(name, 0)
            for name in sorted(set(after[table]) | set(before[table]))
        }
        for table in after
    }


def refuse_unless_postgres() -> str | None:
    if connection.vendor != "postgresql":
        return "bench storage measures PostgreSQL: set DATABASE_URL=postgres://... (e.g. mg_bench)"
    return None


class _Quiet:
    def dispatch(self, **kwargs) -> None:
        pass


FLEET_TABLE_MICROGRIDS = 1000
FLEET_TABLE_ROUNDS = 60


def _disabled_fleet(prefix: str, microgrids: int) -> tuple[list[Any], list[Any]]:
    """`microgrids` disabled microgrids named `prefix`-00000..., each in a depot of its own, for
    a table of copied rows (beat never cycles them)."""
    from microgrid.topology.models import Depot, Microgrid

    ids = [f"{prefix}-{i:05d}" for i in range(microgrids)]
    depots = Depot.objects.bulk_create(
        [Depot(depot_id=f"D-{mid}", name=mid, timezone="UTC") for mid in ids], batch_size=2000
    )
    fleet = Microgrid.objects.bulk_create(
        [
            Microgrid(microgrid_id=mid, depot=d, name=mid, enabled=False)
            for mid, d in zip(ids, depots, strict=True)
        ],
        batch_size=2000,
    )
    return depots, fleet


def measure_fleet_table(
    microgrid, *, microgrids: int = FLEET_TABLE_MICROGRIDS, rounds: int = FLEET_TABLE_ROUNDS
) -> dict[str, Any]:
    """The cycle table of a fleet: `microgrids` microgrids each writing `rounds` cycles, one
    round after another (as beat runs them: time-major, every microgrid's rows interleaved),
    each a copy of one of `microgrid`'s real cycles (record, codes, scope) with its own
    microgrid, sequence, times and id. A depot alone appends to its indexes in order and packs
    them tighter than a fleet does; this is what a fleet's row and indexes cost, per cycle.
    Returns {"rows", "bytes_per_cycle", "bytes_per_cycle_by_relation"} of balancing_cycle."""
    from balancing.models import Cycle
    from microgrid.topology.models import Depot, Microgrid

    depots, fleet = _disabled_fleet("BENCH-STORAGE-FLEET", microgrids)
    samples = list(Cycle.objects.filter(microgrid=microgrid).order_by("seq").values_list("pk"))
    fields = [f for f in Cycle._meta.concrete_fields if f.column != "id"]
    derived = {
        # uuid-like: 32 hex digits in no order, as stable_id's are
        "cycle_id": "md5(m.id::text || ':' || r.n::text)",
        "microgrid_id": "m.id",
        "seq": "r.n",
        "started_at": "c.started_at + r.n * interval '15 seconds'",
        "completed_at": "c.completed_at + r.n * interval '15 seconds'",
    }
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    values = ", ".join(
        derived.get(f.column, f"c.{connection.ops.quote_name(f.column)}") for f in fields
    )
    sample_ids = [pk for (pk,) in samples]
    before = _sizes(("balancing_cycle",), full=True)["balancing_cycle"]
    with connection.cursor() as cursor:
        for n in range(1, rounds + 1):
            cursor.execute(
                f"INSERT INTO balancing_cycle ({columns}) "
                f"SELECT {values} FROM {Microgrid._meta.db_table} m, balancing_cycle c, "
                f"(SELECT %s::int AS n) r WHERE m.id = ANY(%s) AND c.id = %s ORDER BY m.id",
                [n, [m.pk for m in fleet], sample_ids[n % len(sample_ids)]],
            )
    after = _sizes(("balancing_cycle",))["balancing_cycle"]
    rows = microgrids * rounds
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM balancing_cycle WHERE microgrid_id = ANY(%s)", [[m.pk for m in fleet]]
        )
    Microgrid.objects.filter(pk__in=[m.pk for m in fleet]).delete()
    Depot.objects.filter(pk__in=[d.pk for d in depots]).delete()
    return {
        "microgrids": microgrids,
        "rows": rows,
        "bytes_per_cycle": round(sum(grown.values()) / rows),
        "bytes_per_cycle_by_relation": {
            k: round(v / rows, 1) for k, v in sorted(grown.items()) if v
        },
    }


def measure_fleet_blocks(microgrid, *, microgrids: int = FLEET_TABLE_MICROGRIDS) -> dict[str, Any]:
    """The block table of a fleet: `microgrids` microgrids each writing copies of
    `microgrid`'s blocks (compacted cycles), one round per block, every microgrid's rows
    interleaved, each with its own microgrid and seqs. Returns {"rows", "cycles",
    "bytes_per_cycle", "bytes_per_cycle_by_relation"} of balancing_cycleblock."""
    from balancing.models import CycleBlock
    from microgrid.topology.models import Depot, Microgrid

    depots, fleet = _disabled_fleet("BENCH-STORAGE-BLOCKS", microgrids)
    samples = list(
        CycleBlock.objects.filter(microgrid=microgrid)
        .order_by("first_seq")
        .values_list("pk", "cycles")
    )
    fields = [f for f in CycleBlock._meta.concrete_fields if f.column != "id"]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    values = ", ".join(
        "m.id" if f.column == "microgrid_id" else f"b.{connection.ops.quote_name(f.column)}"
        for f in fields
    )
    before = _sizes((BLOCK_TABLE,), full=True)[BLOCK_TABLE]
    with connection.cursor() as cursor:
        for pk, _ in samples:
            cursor.execute(
                f"INSERT INTO {BLOCK_TABLE} ({columns}) SELECT {values} "
                f"FROM {Microgrid._meta.db_table} m, {BLOCK_TABLE} b "
                f"WHERE m.id = ANY(%s) AND b.id = %s ORDER BY m.id",
                [[m.pk for m in fleet], pk],
            )
    after = _sizes((BLOCK_TABLE,))[BLOCK_TABLE]
    cycles = microgrids * sum(n for _, n in samples)
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {BLOCK_TABLE} WHERE microgrid_id = ANY(%s)", [[m.pk for m in fleet]]
        )
    Microgrid.objects.filter(pk__in=[m.pk for m in fleet]).delete()
    Depot.objects.filter(pk__in=[d.pk for d in depots]).delete()
    return {
        "microgrids": microgrids,
        "rows": microgrids * len(samples),
        "cycles": cycles,
        "bytes_per_cycle": round(sum(grown.values()) / cycles, 1) if cycles else None,
        "bytes_per_cycle_by_relation": {
            k: round(v / cycles, 1) for k, v in sorted(grown.items()) if v and cycles
        },
    }


BLOCK_TABLE = "balancing_cycleblock"


def _cpu() -> float:
    """CPU seconds of this process and of its PostgreSQL backend."""
    import time

    from benchtools.meters import cpu_seconds

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return time.process_time() + cpu_seconds([pid])


def measure_fleet_compaction(
    *, microgrids: int = FLEET_TABLE_MICROGRIDS, limit: int | None = None
) -> dict[str, Any]:
    """Compaction at fleet scale: `microgrids` microgrids each holding copies of a 50-charger
    depot's quarter hour of cycles (and its newest), with ids of their own and a served
    trigger each, the aggregation cursor set past them; then
    `cycle_compact` runs as the maintenance task does (CYCLE_COMPACT_BATCH a run) until
    nothing is left. Returns the cycles moved, the runs, and the CPU of this process and its
    PostgreSQL backend per cycle moved."""
    import time

    from balancing.lifecycle import bucket_of, cycle_compact
    from balancing.models import (
        Cycle,
        CycleAggregateCursor,
        CycleBlock,
        cycle_id_of,
    )
    from benchtools.benchmarks import materialise
    from benchtools.synthetic import build_engine_input
    from microgrid.topology.models import Depot, Microgrid
    from microgrid.topology.services import microgrid_delete

    limit = limit or settings.CYCLE_COMPACT_BATCH
    # The source: a 50-charger depot's quarter hour of cycles (60) and the next one (its
    # newest, which stays a row), after every cycle the database holds.
    inp = build_engine_input(50, 10, depth=3, seed=1)
    microgrid = materialise(inp, "BENCH-STORAGE-COMPACT-SOURCE")
    start = timezone.now()
    newest = Cycle.objects.order_by("-started_at").values_list("started_at", flat=True).first()
    if newest is not None and newest > start:
        start = newest
    start = bucket_of(start) + timedelta(minutes=15)
    _run_cycles(microgrid, inp, random.Random(7), start, 61)
    source = list(
        Cycle.objects.filter(microgrid=microgrid).order_by("seq").values_list("pk", "seq")
    )[:-1]
    last = Cycle.objects.filter(microgrid=microgrid).order_by("-seq").first()
    depots, fleet = _disabled_fleet("BENCH-STORAGE-COMPACT", microgrids)
    fields = [f for f in Cycle._meta.concrete_fields if f.column != "id"]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    derived = {"cycle_id": "%s", "microgrid_id": "%s"}
    values = ", ".join(
        derived.get(f.column, f"c.{connection.ops.quote_name(f.column)}") for f in fields
    )
    pks = [m.pk for m in fleet]
    with connection.cursor() as cursor:
        for m in fleet:
            cursor.executemany(
                f"INSERT INTO balancing_cycle ({columns}) SELECT {values} "
                f"FROM balancing_cycle c WHERE c.id = %s",
                [(cycle_id_of(m.microgrid_id, seq), m.pk, pk) for pk, seq in source]
                + [(cycle_id_of(m.microgrid_id, last.seq), m.pk, last.pk)],
            )
        cursor.execute(
            "INSERT INTO balancing_cycletrigger (microgrid_id, trigger, scope, requested_at, "
            'served_by_id) SELECT c.microgrid_id, \'{"type": "SCHEDULED"}\'::jsonb, '
            "c.scope, c.started_at, c.id FROM balancing_cycle c WHERE c.microgrid_id = ANY(%s)",
            [pks],
        )
        # Statistics for both tables just filled, as autovacuum would have them for an
        # established fleet: without the trigger table's, its lookups by cycle were planned
        # as scans (a first run measured 1.2 ms of CPU per cycle moved against 0.15).
        cursor.execute("ANALYZE balancing_cycle")
        cursor.execute("ANALYZE balancing_cycletrigger")
    kept = (
        CycleAggregateCursor.objects.filter(name="cycles")
        .values_list("started_at", "cycle_pk")
        .first()
    )
    # Past the copies' quarter hour(s): compaction may take them all.
    CycleAggregateCursor.objects.update_or_create(
        name="cycles",
        defaults={"started_at": bucket_of(last.started_at) + timedelta(minutes=16), "cycle_pk": 0},
    )
    moved = runs = 0
    cpu = wall = 0.0
    try:
        while True:
            c0, w0 = _cpu(), time.perf_counter()
            n = cycle_compact(now=last.started_at + timedelta(hours=1), limit=limit)
            cpu += _cpu() - c0
            wall += time.perf_counter() - w0
            if not n:
                break
            moved += n
            runs += 1
    finally:
        if kept is None:
            CycleAggregateCursor.objects.filter(name="cycles").delete()
        else:
            CycleAggregateCursor.objects.update_or_create(
                name="cycles", defaults={"started_at": kept[0], "cycle_pk": kept[1]}
            )
        blocks = CycleBlock.objects.filter(microgrid_id__in=pks).count()
        CycleBlock.objects.filter(microgrid_id__in=pks).delete()
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM balancing_cycletrigger WHERE microgrid_id = ANY(%s)", [pks])
            cursor.execute("DELETE FROM balancing_cycle WHERE microgrid_id = ANY(%s)", [pks])
        Microgrid.objects.filter(pk__in=pks).delete()
        Depot.objects.filter(pk__in=[d.pk for d in depots]).delete()
        microgrid_delete(microgrid=microgrid)
    return {
        "microgrids": microgrids,
        "compacted": moved,
        "blocks": blocks,
        "runs": runs,
        "limit": limit,
        "cpu_ms_per_cycle": round(1000 * cpu / moved, 3) if moved else None,
        "wall_s": round(wall, 1),
    }


def _compact(microgrid, start, cycles: int) -> dict[str, Any]:
    """Aggregate and compact the run's cycles as the maintenance task would (all the closed
    quarter hours), with the CPU time it took; then the depot's blocks."""
    from balancing.lifecycle import cycle_aggregate, cycle_compact
    from balancing.models import CycleBlock

    end = start + timedelta(seconds=15 * cycles)
    cycle_aggregate(now=end + timedelta(hours=1), limit=cycles + 10)
    before = _cpu()
    moved = cycle_compact(now=end + timedelta(hours=1), limit=cycles + 10)
    cpu = _cpu() - before
    blocks = list(
        CycleBlock.objects.filter(microgrid=microgrid).values_list("cycles", "summary", "records")
    )
    return {
        "compacted": moved,
        "blocks": len(blocks),
        "compact_cpu_ms_per_cycle": round(1000 * cpu / moved, 3) if moved else None,
        "block_summary_bytes_per_cycle": round(sum(len(b[1]) for b in blocks) / moved, 1)
        if moved
        else None,
        "block_records_bytes_per_cycle": round(sum(len(b[2]) for b in blocks) / moved, 1)
        if moved
        else None,
    }


def _run_cycles(microgrid, inp, rng, start, cycles: int) -> float:
    """`cycles` cycles 15 s apart from `start`, each after a telemetry batch in which every
    charger reports at its own time (a tenth of them changing what they ask for); returns
    the CPU seconds of the cycles' writes (this process and its PostgreSQL backend)."""
    from balancing.services import cycle_request, trigger_of
    from microgrid.telemetry.services import telemetry_ingest

    requested = {c.asset_id: (c.requested_kw or 11.0) for c in inp.chargers}
    write_cpu = 0.0
    for i in range(cycles):
        now = start + timedelta(seconds=15 * i)
        for asset_id in rng.sample(sorted(requested), max(1, len(requested) // 10)):
            requested[asset_id] = round(rng.uniform(3.7, 150.0), 1)
        readings = [
            {
                "asset_id": c.asset_id,
                "power_kw": round(rng.uniform(0, requested[c.asset_id]), 1),
                "observed_at": (now - timedelta(milliseconds=rng.randint(0, 15000))).isoformat(
                    timespec="milliseconds"
                ),
                "connected": True,
                "requested_kw": requested[c.asset_id],
            }
            for c in inp.chargers
        ]
        for b in range(0, len(readings), 2000):
            telemetry_ingest(microgrid=microgrid, readings=readings[b : b + 2000], now=now)
        write_started = _cpu()
        cycle_request(
            microgrid=microgrid,
            trigger=trigger_of("SCHEDULED"),
            now=lambda now=now: now,
            dispatcher=_Quiet(),
        )
        write_cpu += _cpu() - write_started
    return write_cpu


def measure_depot(
    chargers: int, nodes: int, *, cycles: int, seed: int = 7, keep: bool = False
) -> dict[str, Any]:
    """One depot's run; `keep` leaves the depot (its microgrid under "microgrid") for the fleet
    tables, measured after every depot (a large delete just before a depot's measure could
    be counted against it while its space is not yet reusable)."""
    from balancing.lifecycle import cycle_aggregate
    from balancing.models import Cycle, CycleAggregate, CycleAggregateCursor, CycleRecordPart
    from benchtools.benchmarks import materialise
    from benchtools.synthetic import build_engine_input
    from microgrid.topology.services import microgrid_delete

    if connection.in_atomic_block:
        raise RuntimeError("bench storage runs outside a transaction (VACUUM)")
    inp = build_engine_input(chargers, nodes, depth=5 if nodes > 20 else 3, seed=1)
    microgrid = materialise(inp, f"BENCH-STORAGE-{chargers}")
    rng = random.Random(seed)
    before = _sizes(full=True)
    # After the readings `materialise` wrote (now): older readings would never become the
    # latest ones, and every cycle would see the same telemetry. And after the cycles an
    # earlier run aggregated, so that this run's are aggregated too.
    start = timezone.now() + timedelta(seconds=20)
    cursor = CycleAggregateCursor.objects.filter(name="cycles").first()
    if cursor is not None and cursor.started_at + timedelta(seconds=20) > start:
        start = cursor.started_at + timedelta(seconds=20)
    write_cpu = _run_cycles(microgrid, inp, rng, start, cycles)
    after = _sizes()
    rows = Cycle.objects.filter(microgrid=microgrid)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(octet_length(record)), 0) FROM balancing_cycle "
            "WHERE microgrid_id = %s",
            [microgrid.pk],
        )
        count, record_bytes = cursor.fetchone()
    digests = set(rows.values_list("record_part_id", flat=True))
    part_bytes = sum(
        len(bytes(d))
        for d in CycleRecordPart.objects.filter(digest__in=digests).values_list("data", flat=True)
    )
    grown = _total(after) - _total(before)
    relations = _grown(before, after)
    # Then the closed quarter hours move into blocks (balancing/lifecycle.py cycle_compact):
    # what the same cycles take then, rows and blocks (VACUUM FULL: the rows' space freed).
    compaction = _compact(microgrid, start, cycles)
    # The aggregates of the same cycles (all buckets closed by now, aggregated above), copied
    # into 96 buckets a day for AGGREGATE_DAYS days so that the table's growth is measured
    # over many pages.
    cycle_aggregate(now=start + timedelta(seconds=15 * cycles, hours=1), limit=cycles + 10)
    model_rows = list(CycleAggregate.objects.filter(microgrid=microgrid))
    agg_before = _total(_sizes((AGGREGATE_TABLE,), full=True))
    first = min(r.bucket_start for r in model_rows) - timedelta(days=AGGREGATE_DAYS + 1)
    copies = []
    for k in range(96 * AGGREGATE_DAYS):
        for r in model_rows:
            copies.append(
                CycleAggregate(
                    microgrid_id=r.microgrid_id,
                    node_id=r.node_id,
                    bucket_start=first + timedelta(minutes=15 * k),
                    cycles=r.cycles,
                    load_kw_sum=r.load_kw_sum,
                    load_kw_max=r.load_kw_max,
                    limit_kw_sum=r.limit_kw_sum,
                    limit_kw_min=r.limit_kw_min,
                    allocated_kw_sum=r.allocated_kw_sum,
                    requested_kw_sum=r.requested_kw_sum,
                    reason_codes=r.reason_codes,
                    outcomes=r.outcomes,
                )
            )
    copies = [c for c in copies if c.bucket_start < min(r.bucket_start for r in model_rows)]
    CycleAggregate.objects.bulk_create(copies, batch_size=2000, ignore_conflicts=True)
    agg_after = _total(_sizes((AGGREGATE_TABLE,)))
    agg_rows = CycleAggregate.objects.filter(microgrid=microgrid).count() - len(model_rows)
    out = {
        "chargers": chargers,
        "nodes": len(inp.nodes),
        "cycles": count,
        "tables_bytes_grown": grown,
        "tables_grown": {t: sum(relations[t].values()) for t in TABLES},
        # Where a cycle's bytes go: per table, the heap, its TOAST and each index, per cycle.
        "bytes_per_cycle_by_relation": {
            t: {name: round(size / count, 1) for name, size in parts.items() if size}
            for t, parts in relations.items()
            if any(parts.values())
        },
        "bytes_per_cycle": round(grown / count),
        "bytes_per_charger_cycle": round(grown / count / chargers, 2),
        "record_bytes_per_cycle": round(record_bytes / count),
        "record_bytes_per_charger_cycle": round(record_bytes / count / chargers, 2),
        "part_bytes": part_bytes,
        "compaction": compaction,
        # The cycle's own write, process and PostgreSQL backend (the per-microgrid path).
        "write_cpu_ms_per_cycle": round(1000 * write_cpu / cycles, 2),
        "aggregate_rows": agg_rows,
        "aggregate_bytes_per_row": round((agg_after - agg_before) / agg_rows) if agg_rows else None,
    }
    if keep:
        out["microgrid"] = microgrid
    else:
        microgrid_delete(microgrid=microgrid)
    return out


def bench_storage(
    *, cycles: int = 40, say: Callable[[str], None] = print, quick: bool = False
) -> dict[str, Any]:
    # Enough cycles of the small depot that page-sized steps do not show.
    # The large depot runs long enough (20 minutes at 15 s) for one quarter hour to compact.
    sizes = ((50, 10, cycles),) if quick else ((50, 10, cycles * 10), (2000, 421, cycles * 2))
    depots = []
    for i, (chargers, nodes, n) in enumerate(sizes):
        say(f"  {chargers} chargers / {nodes} nodes: {n} cycles...")
        r = measure_depot(chargers, nodes, cycles=n, keep=not i)
        say(
            f"    {r['bytes_per_charger_cycle']} bytes per charger-cycle stored "
            f"({r['bytes_per_cycle']} per cycle, of which record {r['record_bytes_per_cycle']})"
        )
        for table, parts in r["bytes_per_cycle_by_relation"].items():
            say(f"      {table}: " + ", ".join(f"{k} {v:g}" for k, v in parts.items()))
        c = r["compaction"]
        if c["compacted"]:
            per = c["block_summary_bytes_per_cycle"] + c["block_records_bytes_per_cycle"]
            say(
                f"    compacted: {c['compacted']} cycles in {c['blocks']} blocks: summary "
                f"{c['block_summary_bytes_per_cycle']} + records "
                f"{c['block_records_bytes_per_cycle']} bytes per cycle "
                f"({round(per / chargers, 2)} per charger-cycle before the block row and TOAST)"
            )
        say(
            f"    CPU (process and its PostgreSQL backend): write {r['write_cpu_ms_per_cycle']} "
            f"ms per cycle; compaction {c['compact_cpu_ms_per_cycle']} ms per cycle moved"
        )
        depots.append(r)
    small = depots[0]
    kept = small.pop("microgrid")
    say("  fleet tables (1,000 microgrids)...")
    small["fleet_table"] = measure_fleet_table(kept, rounds=20 if quick else 250)
    small["fleet_blocks"] = measure_fleet_blocks(kept)
    compaction = small["fleet_compaction"] = measure_fleet_compaction()
    if compaction["compacted"]:
        say(
            f"  compaction at fleet scale ({compaction['microgrids']} microgrids, "
            f"{compaction['compacted']} cycles in {compaction['blocks']} blocks, "
            f"{compaction['runs']} runs of at most {compaction['limit']}): "
            f"{compaction['cpu_ms_per_cycle']} ms of CPU per cycle moved (process and its "
            f"PostgreSQL backend), {compaction['wall_s']} s in all"
        )
    from microgrid.topology.services import microgrid_delete

    microgrid_delete(microgrid=kept)
    table = small["fleet_table"]
    say(
        f"  a fleet's cycle table ({table['microgrids']} microgrids, {table['rows']} rows): "
        f"{table['bytes_per_cycle']} bytes per cycle: "
        + ", ".join(f"{k} {v:g}" for k, v in table["bytes_per_cycle_by_relation"].items())
    )
    per_day_cycles = 86400 // 15
    fleet = 1000
    # The cycle row and its indexes as a fleet writes them; what else a cycle writes (its
    # served trigger, record parts, deliveries) as the depot run wrote it.
    # Parts are written per topology, not per cycle: their bytes over the run's cycles (the
    # part table's first pages, its indexes' and TOAST's, are a fixed cost, not counted).
    others = sum(
        v
        for t, v in small["tables_grown"].items()
        if t not in ("balancing_cycle", "balancing_cyclerecordpart")
    )
    per_cycle = table["bytes_per_cycle"] + (others + small["part_bytes"]) / small["cycles"]
    blocks = small["fleet_blocks"]
    say(
        f"  a fleet's block table ({blocks['microgrids']} microgrids, {blocks['rows']} blocks, "
        f"{blocks['cycles']} cycles): {blocks['bytes_per_cycle']} bytes per cycle: "
        + ", ".join(f"{k} {v:g}" for k, v in blocks["bytes_per_cycle_by_relation"].items())
    )
    # Compacted, a cycle costs its share of its block and of its part; its row and trigger
    # are deleted. The rows awaiting compaction (about half an hour's: the quarter hour
    # aggregated last is moved at the next) are a constant, not a daily growth.
    compacted_per_cycle = blocks["bytes_per_cycle"] + small["part_bytes"] / small["cycles"]
    waiting_gb = per_cycle * per_day_cycles * fleet * (1800 / 86400) / 1e9
    compacted_per_day = compacted_per_cycle * per_day_cycles * fleet
    full_per_day = per_cycle * per_day_cycles * fleet
    nodes_per_mg = small["nodes"]
    agg_row = small["aggregate_bytes_per_row"] or 0
    agg_per_day = agg_row * nodes_per_mg * 96 * fleet
    projection = {
        "fleet": f"{fleet} microgrids x {small['chargers']} chargers, {small['nodes']} nodes, every 15 s",
        "bytes_per_cycle_as_rows": round(per_cycle),
        "gb_per_day_as_rows": round(full_per_day / 1e9, 2),
        "bytes_per_cycle": round(compacted_per_cycle),
        "full_cycles_gb_per_day": round(compacted_per_day / 1e9, 2),
        "rows_awaiting_compaction_gb": round(waiting_gb, 2),
        "aggregates_gb_per_day": round(agg_per_day / 1e9, 3),
        "retention_days": settings.CYCLE_RETENTION_DAYS,
        "aggregate_retention_days": settings.CYCLE_AGGREGATE_RETENTION_DAYS,
        "steady_state_gb": round(
            (
                waiting_gb * 1e9
                + compacted_per_day * settings.CYCLE_RETENTION_DAYS
                + agg_per_day * settings.CYCLE_AGGREGATE_RETENTION_DAYS
            )
            / 1e9,
            1,
        ),
    }
    say(
        f"  projection {projection['fleet']}: as rows {projection['bytes_per_cycle_as_rows']} "
        f"bytes per cycle, {projection['gb_per_day_as_rows']} GB/day; compacted "
        f"{projection['bytes_per_cycle']} bytes per cycle, "
        f"{projection['full_cycles_gb_per_day']} GB/day of full cycles (plus "
        f"{projection['rows_awaiting_compaction_gb']} GB of rows awaiting compaction), "
        f"{projection['aggregates_gb_per_day']} GB/day of aggregates; kept with "
        f"the default retention: {projection['steady_state_gb']} GB"
    )
    return {"depots": depots, "projection": projection}
