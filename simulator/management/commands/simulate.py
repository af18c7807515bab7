"""`manage.py simulate FILE --seed N --out DIR`: run a profile's scenario and write its artifacts."""

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from microgrid.common.errors import DomainError
from simulator.loader import read_profile
from simulator.management.commands.load_profile import print_errors
from simulator.runner import checked_scenario, simulate, simulate_compare


class ProgressBar:
    """A one-line bar on stderr, redrawn only when the shown percentage changes."""

    def __init__(self, stream, label: str, width: int = 30) -> None:
        self.stream = stream  # a management command's OutputWrapper
        self.label = label
        self.width = width
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if percent == self.shown:
            return
        self.shown = percent
        filled = self.width * done // max(total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        end = "\n" if done >= total else ""
        self.stream.write(
            f"\r{self.label} [{bar}] {percent:3d}% {done}/{total} steps{end}", ending=""
        )
        self.stream.flush()


class Command(BaseCommand):
    help = (
        "Run a depot profile's scenario on a simulated clock through the product's services and "
        "write cycles.jsonl, breaches.jsonl, requests.jsonl, summary.json and chart.png; "
        "exit 2 when the profile is invalid. Resets the profile's depot first."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--seed", type=int, default=None, help="overrides scenario.seed")
        parser.add_argument("--out", required=True, help="directory for the artifacts")
        parser.add_argument("--no-chart", action="store_true", help="skip chart.png")
        parser.add_argument(
            "--compare",
            action="store_true",
            help="run the scenario twice, with departures reported and the profile's headroom "
            "(OUT/managed) and with departures ignored and headroom off (OUT/baseline), and "
            "write both runs' figures to OUT/compare.json",
        )
        parser.add_argument(
            "--database",
            choices=("scratch", "current"),
            default="scratch",
            help="scratch (default): a fresh SQLite copy under var/sim/scratch/, so that no "
            "live cycle, worker or other run can touch the run; current: this settings' database",
        )

    def handle(
        self, *args, file, seed, out, no_chart, database="scratch", compare=False, **options
    ):
        try:
            profile = read_profile(file)
            checked_scenario(profile, seed=seed)
        except DomainError as exc:
            print_errors(self.stderr, exc)
            sys.exit(2)
        if database == "scratch":
            argv = ["simulate", file, "--out", out, "--database", "current"]
            if seed is not None:
                argv += ["--seed", str(seed)]
            if no_chart:
                argv.append("--no-chart")
            if compare:
                argv.append("--compare")
            sys.exit(self._in_scratch(argv))
        if compare:
            self._compare(profile, out=out, seed=seed, chart=not no_chart)
            return
        # A DomainError from here on is the product refusing its own simulator: a bug, not a
        # bad profile, so it is not reported as exit status 2.
        bar = ProgressBar(self.stderr, "simulating")
        result = simulate(profile, out_dir=out, seed=seed, progress=bar, chart=not no_chart)
        s = result.summary
        cycles = s["cycles"]
        self.stdout.write(
            f"{s['microgrid_id']} seed {s['seed']}: {cycles['total']} cycles "
            f"{cycles['by_source_mode']}, {s['energy_delivered_kwh']:.1f} kWh delivered, "
            f"{s['sessions']['left_short']} session(s) left short, "
            f"max allocation excess {s['max_allocation_excess_kw']} kW -> {result.out_dir}"
        )

    def _compare(self, profile, *, out, seed, chart) -> None:
        bars: dict[str, ProgressBar] = {}

        def progress(name: str, done: int, total: int) -> None:
            bars.setdefault(name, ProgressBar(self.stderr, f"simulating {name}"))(done, total)

        result = simulate_compare(profile, out_dir=out, seed=seed, progress=progress, chart=chart)
        r = result.summary
        for name in ("managed", "baseline"):
            f = r[name]
            self.stdout.write(
                f"{name}: {f['energy_delivered_kwh']:.1f} kWh delivered, "
                f"{f['sessions.left_short']} of {f['sessions.total']} session(s) left short "
                f"({f['sessions.energy_short_kwh']:.1f} kWh), {f['breaches.total']} breach(es), "
                f"headroom {f['headroom.mode']}, departures "
                f"{'reported' if f['sessions.reported'] else 'ignored'}"
            )
        t = r["targets"]
        self.stdout.write(
            f"energy {t['energy_ratio']:.1%} of baseline; targets: "
            + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in t.items() if isinstance(v, bool))
            + f" -> {result.out_dir / 'compare.json'}"
        )

    def _in_scratch(self, argv: list[str]) -> int:
        """Run `manage.py <argv>` on a private SQLite database and its own broker directory:
        a copy of a migrated template (migrated once, under a lock), removed afterwards."""
        root = Path(settings.VAR_DIR) / "sim" / "scratch"
        root.mkdir(parents=True, exist_ok=True)
        template = root / "template.sqlite3"
        run_dir = root / f"run-{os.getpid()}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir()
        env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")
        }
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        with open(root / "template.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one migrate at a time; copies wait for it
            subprocess.run(
                [*manage, "migrate", "--noinput", "-v", "0"],
                env={**env, "SQLITE_PATH": str(template), "MICROGRID_VAR_DIR": str(run_dir)},
                check=True,
            )
            shutil.copyfile(template, run_dir / "db.sqlite3")
        self.stderr.write(
            f"simulating in a scratch database {run_dir / 'db.sqlite3'} "
            "(removed afterwards; --database current runs on this settings' database)"
        )
        try:
            return subprocess.run(
                [*manage, *argv],
                env={
                    **env,
                    "SQLITE_PATH": str(run_dir / "db.sqlite3"),
                    "MICROGRID_VAR_DIR": str(run_dir),
                },
            ).returncode
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(run_dir)
