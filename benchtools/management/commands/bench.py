"""`manage.py bench [engine|cycle|reads|ingest|oscp|fleet|ocpp|all] [--out FILE]`: measure, print
a table, write JSON.

`all` is everything that runs in one process on any database; `fleet` starts Celery beat and
worker processes and needs Redis and PostgreSQL, and `ocpp` starts an OCPP gateway process on
PostgreSQL, so they run only when asked for by name.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test.utils import override_settings

from benchtools import benchmarks, http_bench, storage_bench
from benchtools import fleet as fleet_bench
from benchtools.meters import machine

WHAT = ("engine", "cycle", "reads", "ingest", "oscp", "dispatch")
ALONE = ("fleet", "http", "storage", "ocpp")


class Command(BaseCommand):
    help = (
        "Benchmarks of the performance goals on synthetic depots (engine, cycle, reads, ingest, "
        "oscp; fleet runs Celery beat and workers on Redis and PostgreSQL)."
    )

    def add_arguments(self, parser):
        # A string default: argparse checks a list default against the choices as one value.
        parser.add_argument("what", nargs="*", choices=[*WHAT, *ALONE, "all"], default="all")
        parser.add_argument("--out", default=str(Path(settings.VAR_DIR) / "bench" / "bench.json"))
        parser.add_argument("--repeat", type=int, default=30)
        parser.add_argument(
            "--quick", action="store_true", help="small sizes only (for CI smoke runs)"
        )
        fleet = parser.add_argument_group("fleet")
        fleet.add_argument(
            "--microgrids",
            type=int,
            nargs="+",
            default=[1000],
            help="fleet sizes; several give a scaling table (e.g. 10 100 1000)",
        )
        fleet.add_argument("--chargers", type=int, default=50, help="chargers per microgrid")
        fleet.add_argument("--interval", type=int, default=15, help="cycle interval, seconds")
        fleet.add_argument(
            "--duration", type=int, default=45, help="seconds beat runs (at least 3 intervals)"
        )
        fleet.add_argument("--workers", type=int, default=2, help="Celery worker processes")
        fleet.add_argument(
            "--batch",
            type=int,
            default=None,
            help="microgrids per scheduled task and transaction (default: "
            "BALANCING_SCHEDULE_BATCH)",
        )
        fleet.add_argument(
            "--rounds",
            action="store_true",
            help="also print every round: when it was claimed, its cycles, when it was done",
        )
        fleet.add_argument(
            "--pool",
            choices=("prefork", "solo"),
            default="prefork",
            help="each worker's pool (concurrency 1)",
        )

        dispatch = parser.add_argument_group("dispatch")
        dispatch.add_argument(
            "--fill",
            type=int,
            default=0,
            help="dispatch on PostgreSQL: first fill the database with this many earlier "
            "batches of the bench microgrid and 10x as many of 20 others",
        )

        ocpp = parser.add_argument_group("ocpp")
        ocpp.add_argument("--stations", type=int, default=2000, help="stations (one EVSE each)")
        ocpp.add_argument("--cycles", type=int, default=5, help="cycles sent to the stations")
        ocpp.add_argument("--ocpp-port", type=int, default=9630, help="the gateway's port")

    def handle(self, *args, what, out, repeat, quick, **options):
        what = [what] if isinstance(what, str) else what
        chosen = WHAT if "all" in what else tuple(what)
        if "storage" in chosen:
            problem = storage_bench.refuse_unless_postgres()
            if problem:
                raise CommandError(problem)
        if "http" in chosen:
            problem = http_bench.refuse_unless_postgres()
            if problem:
                raise CommandError(problem)
        if "ocpp" in chosen:
            from benchtools.ocpp_bench import refuse_unless_postgres

            problem = refuse_unless_postgres()
            if problem:
                raise CommandError(problem)
        if "fleet" in chosen:
            problem = fleet_bench.refuse_unless_real_services()
            if problem:
                raise CommandError(problem)
            if options["duration"] < 3 * options["interval"]:
                raise CommandError("--duration must cover at least three --interval")
        # Measured as production runs: DEBUG off, so no SQL is kept per query (query counts
        # come from CaptureQueriesContext, which turns the log on for its own block).
        with override_settings(DEBUG=False):
            self.measure(chosen, out=out, repeat=repeat, quick=quick, options=options)

    def measure(self, chosen, *, out, repeat, quick, options) -> None:
        report: dict = {"machine": machine(), "load_average_at_start": http_bench.load_average()}
        w = self.stdout.write
        if "engine" in chosen:
            sizes = ((10, 5), (100, 20)) if quick else benchmarks.ENGINE_SIZES
            rows = report["engine"] = benchmarks.bench_engine(sizes, repeat=repeat)
            w("\nEngine (pure allocate) against one HiGHS LP solve of the same allocation")
            w(
                f"{'chargers':>9} {'nodes':>6} {'engine p50':>11} {'p95':>8} {'HiGHS p50':>10} "
                f"{'speedup':>8} {'engine kW*':>11} {'LP kW':>10}"
            )
            for r in rows:
                w(
                    f"{r['chargers']:>9} {r['nodes']:>6} {r['engine']['median_ms']:>9.2f}ms "
                    f"{r['engine']['p95_ms']:>6.2f}ms {r['highs_solve']['median_ms']:>8.2f}ms "
                    f"{r['speedup_vs_highs_solve']:>7.1f}x {r['engine_total_kw_no_minimums']:>11.1f} "
                    f"{r['lp_total_kw']:>10.1f}"
                )
            w(
                "  * engine total with minimums set to 0, the LP's problem; rounding down to 0.1 kW per charger"
            )
            w(
                "\nThe same fair allocation by LP: progressive filling, one HiGHS solve per fill level"
            )
            w(
                f"{'chargers':>9} {'solves':>7} {'fair LP p50':>12} {'engine p50':>11} "
                f"{'speedup':>8} {'max |diff| kW':>14}"
            )
            for r in rows:
                fair = r["fair_lp"]
                if fair:
                    w(
                        f"{r['chargers']:>9} {fair['solves']:>7} "
                        f"{fair['timing']['median_ms']:>10.1f}ms {r['engine']['median_ms']:>9.2f}ms "
                        f"{r['speedup_vs_fair_lp']:>7.0f}x {fair['max_abs_diff_kw']:>14.4f}"
                    )
            w(
                "\nWith departures (a session on every charger; runs alternated with the "
                "plain input, so both see the same machine)"
            )
            w(
                f"{'chargers':>9} {'plain p50':>10} {'departures p50':>15} {'ratio':>6} "
                f"{'served first':>13} {'at risk':>8}"
            )
            for r in rows:
                pair = r["departures_pair"]
                w(
                    f"{r['chargers']:>9} {pair['plain_median_ms']:>8.2f}ms "
                    f"{pair['departures_median_ms']:>13.2f}ms {pair['ratio']:>5.2f}x "
                    f"{r['departures_served_first']:>13} {r['departures_at_risk']:>8}"
                )
        if "engine" in chosen:
            sizes = ((100, 20),) if quick else benchmarks.PHASE_SIZES
            rows = report["engine_phases"] = benchmarks.bench_engine_phases(sizes, repeat=repeat)
            w("\nEngine with per-phase data against one HiGHS solve of the per-phase LP")
            w(
                f"{'chargers':>9} {'nodes':>6} {'phases p50':>11} {'p95':>8} {'kW-only p50':>12} "
                f"{'HiGHS p50':>10} {'speedup':>8} {'engine kW*':>11} {'LP kW':>10} {'excess':>8}"
            )
            for r in rows:
                w(
                    f"{r['chargers']:>9} {r['nodes']:>6} "
                    f"{r['engine_per_phase']['median_ms']:>9.2f}ms "
                    f"{r['engine_per_phase']['p95_ms']:>6.2f}ms "
                    f"{r['engine_kw_only']['median_ms']:>10.2f}ms "
                    f"{r['highs_solve']['median_ms']:>8.2f}ms {r['speedup_vs_highs_solve']:>7.2f}x "
                    f"{r['engine_total_kw_no_minimums']:>11.1f} {r['lp_total_kw']:>10.1f} "
                    f"{r['max_row_excess']:>8.4f}"
                )
            w(
                "  * minimums 0; the LP maximises the total, the engine shares max-min fairly per"
                " phase (not the same optimum: see docs/performance.md)"
            )
        if "cycle" in chosen:
            sizes = ((10, 5), (100, 20)) if quick else benchmarks.CYCLE_SIZES
            rows = report["cycle"] = benchmarks.bench_cycle(sizes, repeat=max(5, repeat // 2))
            w(f"\nFull cycle on {connection.vendor} (inputs, engine, store, breaches, dispatch)")
            w(f"{'chargers':>9} {'nodes':>6} {'p50':>10} {'p95':>10} {'queries':>8}")
            for r in rows:
                w(
                    f"{r['chargers']:>9} {r['nodes']:>6} {r['cycle']['median_ms']:>8.2f}ms "
                    f"{r['cycle']['p95_ms']:>8.2f}ms {r['queries']:>8}"
                )
        if "reads" in chosen and not quick:
            r = report["reads"] = benchmarks.bench_reads(repeat=max(5, repeat // 2))
            w(f"\nReads ({r['nodes']} nodes, {r['assets']} assets)")
            for name in ("topology", "card", "cycle_list", "cycle_detail"):
                s = r[name]
                w(
                    f"  {name:<13} p50 {s['median_ms']:>8.2f}ms  p95 {s['p95_ms']:>8.2f}ms  "
                    f"queries {s['queries']:>3}  {s['bytes']:>9} bytes"
                )
        if "ingest" in chosen:
            r = report["ingest"] = benchmarks.bench_ingest(batches=5 if quick else 20)
            w(
                f"\nTelemetry ingest: {r['readings_per_s']} readings/s in batches of {r['batch_size']} "
                f"(median batch {r['batch_median_ms']} ms)"
            )
        if "oscp" in chosen:
            r = report["oscp"] = benchmarks.bench_oscp(repeat=max(5, repeat // 2))
            w(f"\nOSCP UpdateGroupCapacityForecast of {r['blocks']} blocks (day ahead)")
            for label, key, queries in (
                ("new day, over HTTP", "http", r["queries"]),
                ("new day, service", "service", None),
                ("same day again, over HTTP", "http_revision", r["queries_revision"]),
            ):
                s = r[key]
                w(
                    f"  {label:<27} p50 {s['median_ms']:>8.2f}ms  p95 {s['p95_ms']:>8.2f}ms"
                    + (f"  queries {queries:>3}" if queries is not None else "")
                )
        if "http" in chosen:
            report["http"] = http_bench.bench_http(
                workers=options["workers"],
                repeat=repeat,
                ingest_rounds=2 if quick else 10,
                say=w,
            )
        if "storage" in chosen:
            w("\nStorage on PostgreSQL (cycle tables with indexes and TOAST)")
            report["storage"] = storage_bench.bench_storage(
                cycles=10 if quick else 40, say=w, quick=quick
            )
        if "dispatch" in chosen:
            from benchtools.dispatch_bench import bench_dispatch

            r = report["dispatch"] = bench_dispatch(
                chargers=200 if quick else 2000, repeat=max(5, repeat // 2), fill=options["fill"]
            )
            wr, wh = r["write"], r["webhook"]
            w(f"\nDispatch outbox, {r['chargers']} chargers on {connection.vendor}")
            if r.get("filled"):
                w(f"  filled first: {r['filled']}")
            if not wr["db_cpu_measured"]:
                w("  (no database CPU of its own here: SQLite runs in this process's CPU)")
            w(
                f"  the cycle with / without the outbox, alternated ({wr['repeat']} pairs), p50: "
                f"wall {wr['wall']['with_median_ms']:.2f} / {wr['wall']['without_median_ms']:.2f}"
                f"ms, CPU {wr['cpu']['with_median_ms']:.2f} / {wr['cpu']['without_median_ms']:.2f}"
                f"ms, database CPU {wr['db_cpu']['with_median_ms']:.2f} / "
                f"{wr['db_cpu']['without_median_ms']:.2f}ms"
            )
            w(
                f"  added by the outbox (median of the pairs): wall {wr['wall']['added_median_ms']:.2f}"
                f"ms (mean {wr['wall']['added_mean_ms']:.2f}); CPU here "
                f"{wr['cpu']['added_median_ms']:.2f}ms + database {wr['db_cpu']['added_median_ms']:.2f}"
                f"ms = {wr['cpu_total_added_median_ms']:.2f}ms"
            )
            w(
                f"  of which deliveries_write p50 {wr['deliveries_write']['wall']['median_ms']:.2f}ms"
                f" (CPU here {wr['deliveries_write']['cpu_median_ms']:.2f}, database "
                f"{wr['deliveries_write']['db_cpu_median_ms']:.2f}); the send asked for on commit "
                f"p50 {wr['enqueue_send']['wall']['median_ms']:.2f}ms (CPU "
                f"{wr['enqueue_send']['cpu_median_ms']:.2f})"
            )
            w(
                f"  webhook delivery of {wh['setpoints']} setpoints ({wh['body_bytes']} bytes): "
                f"p50 {wh['send']['median_ms']:.2f}ms  p95 {wh['send']['p95_ms']:.2f}ms, of which "
                f"the receiver p50 {wh['receiver']['median_ms']:.2f}ms"
            )
            for st in r["steady"]:
                w(
                    f"  steady state, interval {st['interval_s']} s (valid {st['valid_for_s']} s), "
                    f"refresh {st['refresh_s']} s: {100 * st['sent_fraction_mean']:.1f}% of "
                    f"setpoints sent per cycle, {statistics.mean(st['renewed_per_cycle']):.0f} "
                    f"renewed, {statistics.mean(st['messages_per_cycle']):.0f} message(s) per "
                    f"cycle ({', '.join(st['batch_statuses'])})"
                )
        if "ocpp" in chosen:
            from benchtools.ocpp_bench import bench_ocpp

            n = 100 if quick else options["stations"]
            w(
                f"\nOCPP gateway, one process, {n} stations (ocpp package ChargePoints, 1.6J + 2.0.1)"
            )
            report["ocpp"] = bench_ocpp(
                stations=n,
                cycles=2 if quick else options["cycles"],
                port=options["ocpp_port"],
                say=w,
            )
        if "fleet" in chosen:
            report["fleet"] = self.fleet(options)
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        w(f"\nwrote {path}")

    def fleet(self, options) -> list[dict]:
        w = self.stdout.write
        runs = []
        for size in options["microgrids"]:
            w(
                f"\nFleet: {size} microgrids x {options['chargers']} chargers, interval "
                f"{options['interval']} s, {options['workers']} workers ({options['pool']})"
            )
            r = fleet_bench.bench_fleet(
                microgrids=size,
                chargers=options["chargers"],
                interval_s=options["interval"],
                duration_s=options["duration"],
                workers=options["workers"],
                pool=options["pool"],
                say=w,
                batch=options["batch"],
            )
            runs.append(r)
            ct, lag = r["cycle_time"], r["lag"]
            w(
                f"  {'PASS' if r['ok'] else 'FAIL'}: {r['cycles']} scheduled cycles, "
                f"{r['skipped']} skipped, {r['overlaps']} overlapping, "
                f"{r['without_cycle']} microgrids without a cycle"
            )
            w(
                f"  {r['cycles_per_s']} cycles/s over {r['steady_window_s']} s "
                f"(offered {r['offered_cycles_per_s']}/s; {r['busy_cycles_per_s']}/s while busy); "
                f"fleet done {r['max_makespan_s']} s after it was due (interval {r['interval_s']} s)"
            )
            w(
                f"  cycle time p50 {ct['p50_ms']} ms  p95 {ct['p95_ms']} ms  p99 {ct['p99_ms']} ms;"
                f"  queue lag p50 {lag['p50_ms']} ms  p95 {lag['p95_ms']} ms  p99 {lag['p99_ms']} ms"
            )
            w(
                f"  source modes {r['source_mode']}; CPU ms per cycle {r['cpu_ms_per_cycle']}; "
                f"load {r['load_average_before'][0]} -> {r['load_average_after'][0]}"
            )
            w(
                f"  CPU per cycle, all included: {r['cpu_ms_per_cycle_total']} ms; a round of "
                f"{r['microgrids']} needs {r['cpu_s_per_round']} CPU-s of the "
                f"{r['cores'] * r['interval_s']} the {r['cores']} cores have per interval "
                f"(batches of {r['batch']})"
            )
            if options["rounds"]:
                w(f"  {'round claimed at':>34} {'cycles':>7} {'done after':>11}")
                for n in r["rounds"]:
                    w(f"  {n['claimed_at']:>34} {n['cycles']:>7} {n['makespan_s']:>10}s")
        if len(runs) > 1:
            w("\nFleet scaling")
            w(
                f"{'microgrids':>10} {'chargers':>9} {'cycles/s':>9} {'busy/s':>7} {'done in':>8} "
                f"{'p50':>8} {'p95':>8} {'p99':>8} {'lag p99':>9} {'skipped':>8} {'overlaps':>8}"
            )
            for r in runs:
                ct = r["cycle_time"]
                w(
                    f"{r['microgrids']:>10} {r['chargers']:>9} {r['cycles_per_s']:>9} "
                    f"{r['busy_cycles_per_s'] or 0:>7} {r['max_makespan_s'] or 0:>7}s "
                    f"{ct['p50_ms']:>6}ms {ct['p95_ms']:>6}ms {ct['p99_ms']:>6}ms "
                    f"{r['lag']['p99_ms']:>7}ms {r['skipped']:>8} {r['overlaps']:>8}"
                )
        return runs
