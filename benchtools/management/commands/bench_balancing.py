"""`manage.py bench_balancing`: the balancing figures (engine and full cycle) of `manage.py bench`."""

from benchtools.management.commands.bench import Command as BenchCommand


class Command(BenchCommand):
    help = "Engine and full-cycle benchmarks (same as `manage.py bench engine cycle`)."

    def handle(self, *args, what, **options):
        return super().handle(
            *args, what=["engine", "cycle"] if what == ["all"] else what, **options
        )
