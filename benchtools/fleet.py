"""The fleet benchmark behind `manage.py bench fleet`: many microgrids, cycled by real processes.

It builds a synthetic fleet (N microgrids of C chargers each), starts Celery beat and W worker
processes against the real Redis and PostgreSQL, lets them run for a few cycle intervals, stops
them, and then reads back from the database whether every microgrid got a scheduled cycle in
every interval (none skipped), whether two cycles of one microgrid ever overlapped, how many
cycles per second ran, how long cycles took and how long they waited in the queue. Nothing here
asserts a speed: the figures go to docs/performance.md.

Setting up 1,000 microgrids through the services (validator, history rows, revision, ingest)
takes about half a second each, ten minutes for the fleet. So only the first microgrid is built
through the product (`benchmarks.materialise`: topology_replace, telemetry_ingest); the others
are set-based copies of its rows (depot, microgrid, nodes, assets, revision, latest readings:
one INSERT ... SELECT per table) under other ids, without simple-history rows. They are the
validated topology under another name, so the bench bypasses the validator for the speed of
its setup only (5,000 x 50 chargers in 25-60 s under load).

Telemetry: the fleet's readings are stamped when it is built and nobody sends more during the
run, so the bench microgrids get `telemetry_stale_after_s` of an hour; otherwise every cycle
after the first minute would run on fallbacks (FALLBACK_DERIVED). The report counts the source
modes so that this is checked, not assumed.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import CASCADE
from django.utils import timezone

from benchtools.meters import (
    CpuMeter,
    cpu_seconds,
    database_backend_pids,
    group_pids,
    redis_server_pids,
)

PREFIX = "FLEET"
STALE_AFTER_S = 3600
BASE_DIR = Path(settings.BASE_DIR)


def fleet_id(prefix: str, i: int) -> str:
    return f"{prefix}-{i:04d}"


# -- building and removing the fleet ------------------------------------------------------------


def wipe_fleet(prefix: str = PREFIX) -> int:
    """Remove every microgrid named `<prefix>-*` with its rows; returns how many.

    Bulk deletes in foreign-key order (the service deletes one microgrid at a time and writes a
    history row per node and asset, minutes for a fleet). Should anything else point at a fleet
    microgrid (a limit policy, an envelope added by hand), the bulk delete is undone and each
    microgrid goes through `microgrid_delete` instead.
    """
    from balancing.models import Breach, Cycle, CycleSchedule, CycleTrigger
    from microgrid.telemetry.models import LatestReading, TelemetryReading
    from microgrid.topology.models import Asset, Depot, Microgrid, MicrogridNode, TopologyRevision
    from microgrid.topology.services import microgrid_delete

    rows = list(
        Microgrid.objects.filter(microgrid_id__startswith=f"{prefix}-").values_list(
            "pk", "depot_id"
        )
    )
    if not rows:
        return 0
    pks = [pk for pk, _ in rows]
    depots = [d for _, d in rows]
    ordered = (
        Breach.history.model,
        Breach,
        CycleTrigger,
        Cycle,
        CycleSchedule,
        LatestReading,
        TelemetryReading,
        Asset,
        MicrogridNode,
        TopologyRevision,
    )
    # One-row-per-microgrid state kept by apps above this one (the fleet overview's), found
    # without importing them: every one-to-one that cascades from Microgrid.
    ordered += tuple(
        rel.related_model
        for rel in Microgrid._meta.related_objects
        if rel.one_to_one and rel.on_delete is CASCADE and rel.related_model not in ordered
    )
    # Rows that hang off the cycles in apps above balancing (the dispatch outbox) go first.
    from django.apps import apps

    above = tuple(
        m
        for m in apps.get_models()
        if m not in ordered
        and any(f.many_to_one and f.related_model is Cycle for f in m._meta.concrete_fields)
    )
    try:
        with transaction.atomic():
            for model in (*above, *ordered):
                model.objects.filter(microgrid_id__in=pks)._raw_delete(connection.alias)
            Microgrid.objects.filter(pk__in=pks)._raw_delete(connection.alias)
            Depot.objects.filter(pk__in=depots)._raw_delete(connection.alias)
    except IntegrityError:
        for microgrid in Microgrid.objects.filter(pk__in=pks):
            microgrid_delete(microgrid=microgrid)
    else:
        # The deleted rows' space back to the tables (as autovacuum would do, later): else
        # each run's fleet is appended behind the last one's dead rows, and the tables and
        # indexes a run reads grow with every run (a database that had held eleven fleets
        # made the same cycles cost PostgreSQL twice the CPU).
        _vacuum((*above, *ordered, Microgrid, Depot))
    return len(pks)


def _vacuum(models, analyze: bool = False) -> None:
    """VACUUM (and ANALYZE) these models' tables on PostgreSQL; outside a transaction only
    (inside one, as in a test, only ANALYZE, or nothing)."""
    if connection.vendor != "postgresql" or (connection.in_atomic_block and not analyze):
        return
    qn = connection.ops.quote_name
    command = (
        "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)" if analyze else "VACUUM"
    )
    with connection.cursor() as cursor:
        for model in dict.fromkeys(models):
            cursor.execute(f"{command} {qn(model._meta.db_table)}")


def build_fleet(
    *,
    microgrids: int,
    chargers: int,
    interval_s: int,
    prefix: str = PREFIX,
    stale_after_s: int = STALE_AFTER_S,
    now: datetime | None = None,
) -> list[str]:
    """N microgrids of `chargers` fresh chargers each whose node limits bind; returns their ids."""
    from benchtools.benchmarks import materialise
    from benchtools.synthetic import build_engine_input
    from microgrid.telemetry.models import LatestReading

    wipe_fleet(prefix)
    now = now or timezone.now()
    nodes = max(5, chargers // 5)
    inp = build_engine_input(chargers, nodes, depth=4, seed=1)
    ids = [fleet_id(prefix, i) for i in range(microgrids)]
    template = materialise(inp, ids[0])
    template.cycle_interval_s = interval_s
    template.telemetry_stale_after_s = stale_after_s
    template.save(update_fields=["cycle_interval_s", "telemetry_stale_after_s", "updated_at"])
    # The template's readings were ingested a moment ago; the copies get the same instant.
    LatestReading.objects.filter(microgrid=template).update(observed_at=now)
    others = ids[1:]
    if not others:
        return ids

    _copy_set_based(template, others, now)
    return ids


def _copy_set_based(template, others: list[str], now: datetime) -> None:
    """Copies of the template microgrid under the ids `others`: each table in one
    `INSERT ... SELECT` over the template's rows and the new ids (a temporary table), every
    column copied from the template but the keys that make a copy its own. A 5,000-microgrid
    fleet of 50 chargers (about 300,000 rows) takes seconds, not the minutes of building
    model instances for them."""
    from microgrid.telemetry.models import LatestReading
    from microgrid.topology.models import Asset, Depot, Microgrid, MicrogridNode, TopologyRevision

    qn = connection.ops.quote_name
    at = connection.ops.adapt_datetimefield_value(now)
    ids = qn("bench_fleet_ids")
    t_node = qn(MicrogridNode._meta.db_table)
    t_mg = qn(Microgrid._meta.db_table)
    new_mg = f"(SELECT m.id FROM {t_mg} m JOIN {ids} x ON m.microgrid_id = x.mid)"

    def copy(model, overrides: dict[str, str], source: str, params=()) -> None:
        columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
        select = ", ".join(overrides.get(c, f"t.{qn(c)}") for c in columns)
        table = qn(model._meta.db_table)
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) "
            f"SELECT {select} FROM {table} t {source}",
            params,
        )

    revision = TopologyRevision.objects.filter(microgrid=template).order_by("-version").first()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {ids} (mid varchar(64) PRIMARY KEY)")
        try:
            cursor.executemany(f"INSERT INTO {ids} (mid) VALUES (%s)", [(m,) for m in others])
            copy(
                Depot,
                {"depot_id": "'D-' || x.mid", "name": "x.mid", "timezone": "'UTC'"},
                f"CROSS JOIN {ids} x WHERE t.id = %s",
                [template.depot_id],
            )
            copy(
                Microgrid,
                {
                    "microgrid_id": "x.mid",
                    "name": "x.mid",
                    "depot_id": "d.id",
                    "updated_at": "%s",
                    "updated_by_id": "NULL",
                },
                f"CROSS JOIN {ids} x JOIN {qn(Depot._meta.db_table)} d "
                "ON d.depot_id = 'D-' || x.mid WHERE t.id = %s",
                [at, template.pk],
            )
            copy(
                MicrogridNode,
                {"microgrid_id": "m.id", "parent_id": "NULL"},
                f"CROSS JOIN {t_mg} m WHERE t.microgrid_id = %s AND m.id IN {new_mg}",
                [template.pk],
            )
            # Each copy's parents: the copy's node named as the template node's parent.
            cursor.execute(
                f"UPDATE {t_node} AS c SET parent_id = p.id "
                f"FROM {t_node} tc, {t_node} tp, {t_node} p "
                "WHERE tc.microgrid_id = %s AND tp.id = tc.parent_id "
                f"AND c.microgrid_id IN {new_mg} AND c.node_id = tc.node_id "
                "AND p.microgrid_id = c.microgrid_id AND p.node_id = tp.node_id",
                [template.pk],
            )
            copy(
                Asset,
                {"microgrid_id": "n.microgrid_id", "node_id": "n.id"},
                f"JOIN {t_node} tn ON tn.id = t.node_id "
                f"JOIN {t_node} n ON n.node_id = tn.node_id AND n.microgrid_id IN {new_mg} "
                "WHERE t.microgrid_id = %s",
                [template.pk],
            )
            t_asset = qn(Asset._meta.db_table)
            copy(
                LatestReading,
                {
                    "microgrid_id": "a.microgrid_id",
                    "asset_id": "a.id",
                    "observed_at": "%s",
                    "updated_at": "%s",
                },
                f"JOIN {t_asset} ta ON ta.id = t.asset_id "
                f"JOIN {t_asset} a ON a.asset_id = ta.asset_id AND a.microgrid_id IN {new_mg} "
                "WHERE t.microgrid_id = %s",
                [at, at, template.pk],
            )
            if revision is not None:
                fields = {
                    "microgrid_id": "m.microgrid_id",
                    "depot_id": "'D-' || m.microgrid_id",
                    "depot_name": "m.microgrid_id",
                }
                if connection.vendor == "postgresql":
                    pairs = ", ".join(f"'{k}', {v}" for k, v in fields.items())
                    snapshot = f"t.snapshot || jsonb_build_object({pairs})"
                else:
                    pairs = ", ".join(f"'$.{k}', {v}" for k, v in fields.items())
                    snapshot = f"json_set(t.snapshot, {pairs})"
                copy(
                    TopologyRevision,
                    {
                        "microgrid_id": "m.id",
                        "snapshot": snapshot,
                        "created_at": "%s",
                        "created_by_id": "NULL",
                    },
                    f"CROSS JOIN {t_mg} m WHERE t.id = %s AND m.id IN {new_mg}",
                    [at, revision.pk],
                )
        finally:
            cursor.execute(f"DROP TABLE {ids}")
    # Statistics for the planner, as autovacuum gives a fleet that grew over time: right
    # after the copies the tables look empty to it, and it plans the batched reads as scans
    # of whole tables. And VACUUM, as it would have run too: the copies' rows are then read
    # as an established fleet's are (hint bits set, pages all-visible), not each set on
    # its first read during the run.
    _vacuum((Depot, Microgrid, MicrogridNode, Asset, LatestReading, TopologyRevision), analyze=True)


# -- reading the run back -----------------------------------------------------------------------


@dataclass(frozen=True)
class CycleRow:
    microgrid_id: str
    started_at: datetime
    completed_at: datetime
    requested_at: datetime | None  # when the schedule asked for it (the claim)
    source_mode: str
    outcome: str


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def _ms_summary(values: list[float]) -> dict[str, float | None]:
    def r(v):
        return None if v is None else round(v, 1)

    return {
        "p50_ms": r(percentile(values, 0.50)),
        "p95_ms": r(percentile(values, 0.95)),
        "p99_ms": r(percentile(values, 0.99)),
        "max_ms": r(max(values) if values else None),
    }


def analyse(
    rows: Iterable[CycleRow],
    *,
    microgrid_ids: Iterable[str],
    interval_s: float,
    stopped_at: datetime,
    tolerance_s: float = 2.0,
) -> dict[str, Any]:
    """Judge a run from its scheduled cycles (pure).

    No cycle skipped: each microgrid's first cycle starts within one interval (plus
    `tolerance_s`) of the first claim, consecutive cycles start at most an interval plus the
    tolerance apart, and the last one is at most that long before the schedule stopped. The
    tolerance covers beat's one-second tick and the schedule's half second of slack. No
    overlap: a cycle of a microgrid starts after the previous one of the same microgrid
    completed.
    """
    rows = list(rows)
    wanted = list(microgrid_ids)
    by_mg: dict[str, list[CycleRow]] = {mid: [] for mid in wanted}
    for row in rows:
        by_mg.setdefault(row.microgrid_id, []).append(row)
    if not rows:
        return {"ok": False, "cycles": 0, "microgrids": len(wanted), "without_cycle": len(wanted)}
    t0 = min(r.requested_at or r.started_at for r in rows)
    limit = interval_s + tolerance_s
    skipped: list[dict[str, Any]] = []
    overlaps: list[dict[str, Any]] = []
    gaps: list[float] = []
    without = []
    for mid, cycles in by_mg.items():
        if not cycles:
            without.append(mid)
            continue
        cycles.sort(key=lambda r: r.started_at)
        first = (cycles[0].started_at - t0).total_seconds()
        if first > limit:
            skipped.append({"microgrid_id": mid, "after": t0.isoformat(), "gap_s": round(first, 2)})
        for before, after in zip(cycles, cycles[1:], strict=False):
            gap = (after.started_at - before.started_at).total_seconds()
            gaps.append(gap)
            if gap > limit:
                skipped.append(
                    {
                        "microgrid_id": mid,
                        "after": before.started_at.isoformat(),
                        "gap_s": round(gap, 2),
                    }
                )
            if after.started_at < before.completed_at:
                overlaps.append({"microgrid_id": mid, "at": after.started_at.isoformat()})
        tail = (stopped_at - cycles[-1].started_at).total_seconds()
        if tail > limit:
            skipped.append(
                {
                    "microgrid_id": mid,
                    "after": cycles[-1].started_at.isoformat(),
                    "gap_s": round(tail, 2),
                }
            )

    rounds: dict[datetime, list[CycleRow]] = {}
    for row in rows:
        if row.requested_at is not None:
            rounds.setdefault(row.requested_at, []).append(row)
    round_list = []
    for claimed, members in sorted(rounds.items()):
        last_done = max(r.completed_at for r in members)
        round_list.append(
            {
                "claimed_at": claimed.isoformat(),
                "cycles": len(members),
                "makespan_s": round((last_done - claimed).total_seconds(), 3),
            }
        )
    full_rounds = [r for r in round_list if r["cycles"] == len(wanted)]
    # Throughput: cycles started in whole intervals from the first claim, per second.
    whole = max(1, int((stopped_at - t0).total_seconds() // interval_s))
    window_end = t0 + timedelta(seconds=whole * interval_s)
    in_window = [r for r in rows if t0 <= r.started_at < window_end]
    busy = sum(r["makespan_s"] for r in full_rounds)
    cycle_ms = [(r.completed_at - r.started_at).total_seconds() * 1000 for r in rows]
    lag_ms = [
        (r.started_at - r.requested_at).total_seconds() * 1000
        for r in rows
        if r.requested_at is not None
    ]
    return {
        "ok": not skipped and not overlaps and not without,
        "microgrids": len(wanted),
        "cycles": len(rows),
        "first_claim_at": t0.isoformat(),
        "stopped_at": stopped_at.isoformat(),
        "without_cycle": len(without),
        "skipped": len(skipped),
        "skipped_examples": skipped[:10],
        "overlaps": len(overlaps),
        "overlap_examples": overlaps[:10],
        "gap_s": {
            "min": round(min(gaps), 3) if gaps else None,
            "max": round(max(gaps), 3) if gaps else None,
        },
        "offered_cycles_per_s": round(len(wanted) / interval_s, 2),
        "cycles_per_s": round(len(in_window) / (whole * interval_s), 2),
        "steady_window_s": whole * interval_s,
        "busy_cycles_per_s": round(sum(r["cycles"] for r in full_rounds) / busy, 1)
        if busy
        else None,
        "rounds": round_list,
        "max_makespan_s": max((r["makespan_s"] for r in round_list), default=None),
        "cycle_time": _ms_summary(cycle_ms),
        "lag": _ms_summary(lag_ms),
        "source_mode": dict(Counter(r.source_mode for r in rows)),
        "outcome": dict(Counter(r.outcome for r in rows)),
    }


def scheduled_cycles(prefix: str, since: datetime) -> list[CycleRow]:
    """The fleet's scheduled cycles started since `since`, with the claim time of each."""
    from balancing.models import Cycle, CycleTrigger

    cycles = list(
        Cycle.objects.filter(
            microgrid__microgrid_id__startswith=f"{prefix}-",
            trigger_type="SCHEDULED",
            started_at__gte=since,
        ).values(
            "pk", "microgrid__microgrid_id", "started_at", "completed_at", "source_mode", "outcome"
        )
    )
    requested: dict[int, datetime] = {}
    for served_by, at in CycleTrigger.objects.filter(
        served_by__in=[c["pk"] for c in cycles], trigger__type="SCHEDULED"
    ).values_list("served_by_id", "requested_at"):
        requested[served_by] = min(at, requested.get(served_by, at))
    return [
        CycleRow(
            microgrid_id=c["microgrid__microgrid_id"],
            started_at=c["started_at"],
            completed_at=c["completed_at"],
            requested_at=requested.get(c["pk"]),
            source_mode=c["source_mode"],
            outcome=c["outcome"],
        )
        for c in cycles
    ]


# -- the processes ------------------------------------------------------------------------------


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "microgrid", *args]


def _spawn(
    command: list[str], log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    """A process of the product as production runs it: DEBUG off (no SQL logged per query)."""
    path = os.pathsep.join(filter(None, [str(BASE_DIR), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        **(extra_env or {}),
    }
    return subprocess.Popen(
        command,
        cwd=BASE_DIR,
        env=env,
        stdout=open(log_path, "w"),  # noqa: SIM115 (lives as long as the process)
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as one, never by name
    )


def _stop(proc: subprocess.Popen, timeout_s: float = 30) -> int | None:
    if proc.poll() is not None:
        return proc.returncode
    os.killpg(proc.pid, signal.SIGTERM)  # warm shutdown: the task in hand completes
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def _queue_empty(client) -> bool:
    """Nothing waiting in the default queue and nothing delivered but unacknowledged."""
    return client.llen("celery") == 0 and client.hlen("unacked") == 0


def refuse_unless_real_services() -> str | None:
    """Why the fleet bench cannot run here, or None."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        return (
            "bench fleet runs real Celery processes on Redis: set CELERY_BROKER_URL=redis://... "
            "(e.g. redis://127.0.0.1:6379/14)"
        )
    if connection.vendor != "postgresql":
        return (
            "bench fleet needs PostgreSQL shared by the worker processes: set "
            "DATABASE_URL=postgres://... (a database of its own, e.g. mg_fleet)"
        )
    return None


def bench_fleet(
    *,
    microgrids: int,
    chargers: int = 50,
    interval_s: int = 15,
    duration_s: int = 45,
    workers: int = 2,
    pool: str = "prefork",
    prefix: str = PREFIX,
    log_dir: Path | None = None,
    say: Callable[[str], None] = print,
    keep: bool = False,
    batch: int | None = None,
) -> dict[str, Any]:
    """Build the fleet, run beat + `workers` worker processes for `duration_s`, judge the run.

    Each worker is its own `celery worker --concurrency=1` (prefork: a consumer process and
    one child that runs the tasks; `pool="solo"` runs them in the consumer), as two hosts or
    containers of one worker each would be deployed. `batch`: microgrids per scheduled task
    and transaction (BALANCING_SCHEDULE_BATCH of beat and the workers; default: the
    setting's).
    """
    import redis

    from balancing.models import CycleSchedule
    from microgrid.celery import app
    from microgrid.topology.models import Microgrid

    problem = refuse_unless_real_services()
    if problem:
        raise RuntimeError(problem)
    if duration_s < 3 * interval_s:
        raise ValueError("duration must cover at least three intervals")
    log_dir = log_dir or Path(settings.VAR_DIR) / "bench" / f"fleet-{microgrids}"
    log_dir.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    ids = build_fleet(
        microgrids=microgrids, chargers=chargers, interval_s=interval_s, prefix=prefix
    )
    build_s = time.perf_counter() - t
    say(f"  built {len(ids)} microgrids x {chargers} chargers in {build_s:.1f} s")
    others = Microgrid.objects.filter(enabled=True).exclude(microgrid_id__in=ids).count()
    # Every fleet microgrid is due at beat's first tick.
    CycleSchedule.objects.filter(microgrid__microgrid_id__startswith=f"{prefix}-").delete()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    schedule_file = log_dir / "beat-schedule"
    for stale in log_dir.glob("beat-schedule*"):
        stale.unlink()

    batch = batch or settings.BALANCING_SCHEDULE_BATCH
    extra_env = {"BALANCING_SCHEDULE_BATCH": str(batch)}
    procs: list[subprocess.Popen] = []
    beat = None
    try:
        for i in range(1, workers + 1):
            procs.append(
                _spawn(
                    _celery(
                        "worker",
                        f"--pool={pool}",
                        "--concurrency=1",
                        "-n",
                        f"fleet{i}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "--loglevel=WARNING",
                    ),
                    log_dir / f"worker{i}.log",
                    extra_env,
                )
            )
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5) or []) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"workers did not start: see {log_dir}/worker*.log")
        meter = CpuMeter(
            {
                "workers": lambda: [pid for p in procs for pid in group_pids(p.pid)],
                "postgresql_backends": database_backend_pids,
                "redis_server": redis_server_pids,
            }
        )
        load_before = os.getloadavg()
        meter.start()
        started = timezone.now()
        beat = _spawn(
            _celery("beat", "-s", str(schedule_file), "--loglevel=WARNING"),
            log_dir / "beat.log",
            extra_env,
        )
        say(f"  {workers} workers and beat running for {duration_s} s ...")
        time.sleep(duration_s)
        stopped = timezone.now()
        beat_cpu = cpu_seconds(group_pids(beat.pid))  # all of it, start-up included
        _stop(beat)
        # Let the workers finish what the schedule claimed before it stopped.
        drain_deadline = time.monotonic() + interval_s + 30
        while not _queue_empty(broker) and time.monotonic() < drain_deadline:
            time.sleep(0.2)
        cpu = {**meter.stop(), "beat": round(beat_cpu, 2)}
        load_after = os.getloadavg()
    finally:
        if beat is not None:
            _stop(beat)
        for proc in procs:
            _stop(proc)
    rows = scheduled_cycles(prefix, started)
    report = analyse(rows, microgrid_ids=ids, interval_s=interval_s, stopped_at=stopped)
    cycles = report["cycles"] or 1
    report.update(
        {
            "chargers_per_microgrid": chargers,
            "chargers": chargers * microgrids,
            "interval_s": interval_s,
            "duration_s": duration_s,
            "workers": workers,
            "pool": pool,
            "batch": batch,
            "build_s": round(build_s, 1),
            "other_enabled_microgrids": others,
            "telemetry_stale_after_s": STALE_AFTER_S,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "cpu_s": cpu,
            "cpu_ms_per_cycle": {k: round(v * 1000 / cycles, 2) for k, v in cpu.items()},
            "cpu_ms_per_cycle_total": round(sum(cpu.values()) * 1000 / cycles, 2),
            # What the round needs of the cores: CPU per cycle x cycles per interval.
            "cpu_s_per_round": round(sum(cpu.values()) / cycles * microgrids, 2),
            "cores": os.cpu_count(),
            "logs": str(log_dir),
        }
    )
    if not keep:
        wipe_fleet(prefix)
    return report
