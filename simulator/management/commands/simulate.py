"""`manage.py simulate FILE --seed N --out DIR`: run a profile's scenario and write its artifacts."""

import sys

from django.core.management.base import BaseCommand

from microgrid.common.errors import DomainError
from simulator.loader import read_profile
from simulator.management.commands.load_profile import print_errors
from simulator.runner import checked_scenario, simulate


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

    def handle(self, *args, file, seed, out, no_chart, **options):
        try:
            profile = read_profile(file)
            checked_scenario(profile, seed=seed)
        except DomainError as exc:
            print_errors(self.stderr, exc)
            sys.exit(2)
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
