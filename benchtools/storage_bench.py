"""`manage.py bench storage`: what a cycle costs on disk on PostgreSQL, and the fleet projection.

For each depot size it builds a synthetic depot (benchtools.synthetic), then runs `cycles`
cycles through `balancing.services.cycle_request`, each after a telemetry batch in which
every charger reports at its own time (millisecond timestamps up to 15 s old, a tenth of the
chargers changing what they ask for), as live chargers do. Measured, after VACUUM:

- the growth of the cycle tables with their indexes and TOAST (`pg_total_relation_size` of
  balancing_cycle, balancing_cyclerecordpart and balancing_cycletrigger: the trigger each
  cycle served is stored too), per cycle and per charger-cycle;
- of which the compact records themselves (`octet_length(record)`), and the shared parts.

The projection is for 1,000 microgrids x 50 chargers cycled every 15 s (5,760 cycles a day
each): full cycles per day from the 50-charger figure, then what is kept with the default
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

TABLES = ("balancing_cycle", "balancing_cyclerecordpart", "balancing_cycletrigger")
AGGREGATE_TABLE = "balancing_cycleaggregate"
AGGREGATE_DAYS = 2


def _sizes(tables=TABLES) -> dict[str, int]:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")
        out = {}
        for table in tables:
            cursor.execute("SELECT pg_total_relation_size(%s)", [table])
            out[table] = cursor.fetchone()[0]
    return out


def refuse_unless_postgres() -> str | None:
    if connection.vendor != "postgresql":
        return "bench storage measures PostgreSQL: set DATABASE_URL=postgres://... (e.g. mg_bench)"
    return None


class _Quiet:
    def dispatch(self, **kwargs) -> None:
        pass


def measure_depot(chargers: int, nodes: int, *, cycles: int, seed: int = 7) -> dict[str, Any]:
    from balancing.lifecycle import cycle_aggregate
    from balancing.models import Cycle, CycleAggregate, CycleRecordPart
    from balancing.services import cycle_request, trigger_of
    from benchtools.benchmarks import materialise
    from benchtools.synthetic import build_engine_input
    from microgrid.telemetry.services import telemetry_ingest
    from microgrid.topology.services import microgrid_delete

    if connection.in_atomic_block:
        raise RuntimeError("bench storage runs outside a transaction (VACUUM)")
    inp = build_engine_input(chargers, nodes, depth=5 if nodes > 20 else 3, seed=1)
    microgrid = materialise(inp, f"BENCH-STORAGE-{chargers}")
    rng = random.Random(seed)
    requested = {c.asset_id: (c.requested_kw or 11.0) for c in inp.chargers}
    before = _sizes()
    start = timezone.now() - timedelta(seconds=15 * cycles + 60)
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
        cycle_request(
            microgrid=microgrid,
            trigger=trigger_of("SCHEDULED"),
            now=lambda now=now: now,
            dispatcher=_Quiet(),
        )
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
    grown = sum(after.values()) - sum(before.values())
    # The aggregates of the same cycles (all buckets closed by now), copied into 96 buckets a
    # day for AGGREGATE_DAYS days so that the table's growth is measured over many pages.
    cycle_aggregate(now=timezone.now() + timedelta(hours=1), limit=cycles + 10)
    model_rows = list(CycleAggregate.objects.filter(microgrid=microgrid))
    agg_before = _sizes((AGGREGATE_TABLE,))[AGGREGATE_TABLE]
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
    agg_after = _sizes((AGGREGATE_TABLE,))[AGGREGATE_TABLE]
    agg_rows = CycleAggregate.objects.filter(microgrid=microgrid).count() - len(model_rows)
    out = {
        "chargers": chargers,
        "nodes": len(inp.nodes),
        "cycles": count,
        "tables_bytes_grown": grown,
        "tables_grown": {t: after[t] - before[t] for t in TABLES},
        "bytes_per_cycle": round(grown / count),
        "bytes_per_charger_cycle": round(grown / count / chargers, 2),
        "record_bytes_per_cycle": round(record_bytes / count),
        "record_bytes_per_charger_cycle": round(record_bytes / count / chargers, 2),
        "part_bytes": part_bytes,
        "aggregate_rows": agg_rows,
        "aggregate_bytes_per_row": round((agg_after - agg_before) / agg_rows) if agg_rows else None,
    }
    microgrid_delete(microgrid=microgrid)
    return out


def bench_storage(
    *, cycles: int = 40, say: Callable[[str], None] = print, quick: bool = False
) -> dict[str, Any]:
    # Enough cycles of the small depot that page-sized steps do not show.
    sizes = ((50, 10, cycles),) if quick else ((50, 10, cycles * 10), (2000, 421, cycles))
    depots = []
    for chargers, nodes, n in sizes:
        say(f"  {chargers} chargers / {nodes} nodes: {n} cycles...")
        r = measure_depot(chargers, nodes, cycles=n)
        say(
            f"    {r['bytes_per_charger_cycle']} bytes per charger-cycle stored "
            f"({r['bytes_per_cycle']} per cycle, of which record {r['record_bytes_per_cycle']})"
        )
        depots.append(r)
    small = depots[0]
    per_day_cycles = 86400 // 15
    fleet = 1000
    full_per_day = small["bytes_per_cycle"] * per_day_cycles * fleet
    nodes_per_mg = small["nodes"]
    agg_row = small["aggregate_bytes_per_row"] or 0
    agg_per_day = agg_row * nodes_per_mg * 96 * fleet
    projection = {
        "fleet": f"{fleet} microgrids x {small['chargers']} chargers, {small['nodes']} nodes, every 15 s",
        "full_cycles_gb_per_day": round(full_per_day / 1e9, 2),
        "aggregates_gb_per_day": round(agg_per_day / 1e9, 3),
        "retention_days": settings.CYCLE_RETENTION_DAYS,
        "aggregate_retention_days": settings.CYCLE_AGGREGATE_RETENTION_DAYS,
        "steady_state_gb": round(
            (
                full_per_day * settings.CYCLE_RETENTION_DAYS
                + agg_per_day * settings.CYCLE_AGGREGATE_RETENTION_DAYS
            )
            / 1e9,
            1,
        ),
    }
    say(
        f"  projection {projection['fleet']}: {projection['full_cycles_gb_per_day']} GB/day of "
        f"full cycles, {projection['aggregates_gb_per_day']} GB/day of aggregates; kept with "
        f"the default retention: {projection['steady_state_gb']} GB"
    )
    return {"depots": depots, "projection": projection}
