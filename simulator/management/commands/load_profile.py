"""`manage.py load_profile FILE`: create or update a depot from a YAML profile."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from microgrid.common.errors import DomainError
from microgrid.common.history import change_source
from microgrid.topology.models import Microgrid
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
        parser.add_argument(
            "--keep-existing",
            action="store_true",
            help="leave a microgrid that already exists as it is (say so) instead of updating it",
        )

    def handle(self, *args, file, keep_existing=False, **options):
        profile = read_profile(file)
        if keep_existing:
            microgrid_id = (profile.get("microgrid") or {}).get("microgrid_id")
            existing = (
                Microgrid.objects.select_related("updated_by")
                .filter(microgrid_id=microgrid_id)
                .first()
                if isinstance(microgrid_id, str)
                else None
            )
            if existing is not None:
                by = existing.updated_by.get_username() if existing.updated_by else "a profile load"
                self.stdout.write(
                    self.style.WARNING(
                        f"{existing.microgrid_id} already exists (topology version "
                        f"{existing.topology_version}, last changed by {by} at "
                        f"{existing.updated_at:%Y-%m-%d %H:%M} UTC): kept as it is, NOT "
                        f"reloaded from {file}. `make demo-reset` reloads the profile."
                    )
                )
                return
        try:
            with change_source(f"profile load: {Path(file).name}"):
                result = load_profile(profile)
        except DomainError as exc:
            print_errors(sys.stderr, exc)
            sys.exit(2)
        m = result.microgrid
        verb = (
            "created" if result.created else ("updated" if result.topology_changed else "unchanged")
        )
        self.stdout.write(f"{m.microgrid_id} {verb}: topology version {m.topology_version}")
