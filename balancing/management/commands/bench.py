"""`manage.py bench [engine|cycle|reads|ingest|all] [--out FILE]`: measure, print a table, write JSON."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from balancing import benchmarks

WHAT = ("engine", "cycle", "reads", "ingest")


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "database": connection.vendor,
    }


class Command(BaseCommand):
    help = "Benchmarks of the performance goals on synthetic depots (engine, cycle, reads, ingest)."

    def add_arguments(self, parser):
        parser.add_argument("what", nargs="*", choices=[*WHAT, "all"], default=["all"])
        parser.add_argument("--out", default=str(Path(settings.VAR_DIR) / "bench" / "bench.json"))
        parser.add_argument("--repeat", type=int, default=30)
        parser.add_argument(
            "--quick", action="store_true", help="small sizes only (for CI smoke runs)"
        )

    def handle(self, *args, what, out, repeat, quick, **options):
        chosen = WHAT if "all" in what else tuple(what)
        report: dict = {"machine": machine()}
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
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        w(f"\nwrote {path}")
