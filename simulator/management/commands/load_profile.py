"""`manage.py load_profile FILE`: create or update a depot from a YAML profile."""

import sys

from django.core.management.base import BaseCommand

from microgrid.common.errors import DomainError
from simulator.loader import load_profile, read_profile


def print_errors(stream, exc: DomainError) -> None:
    stream.write(f"{exc.code}: {exc.message}\n")
    for e in exc.errors:
        where = " ".join(
            f"{k}={v}"
            for k, v in (("node_id", e.node_id), ("asset_id", e.asset_id), ("field", e.field))
            if v
        )
        stream.write(f"  {e.code} {where}: {e.message}\n")


class Command(BaseCommand):
    help = "Load a depot profile (YAML) through the product's services; exit 2 when it is invalid."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            result = load_profile(read_profile(file))
        except DomainError as exc:
            print_errors(sys.stderr, exc)
            sys.exit(2)
        m = result.microgrid
        verb = (
            "created" if result.created else ("updated" if result.topology_changed else "unchanged")
        )
        self.stdout.write(f"{m.microgrid_id} {verb}: topology version {m.topology_version}")
