"""`manage.py replay_cycle CYCLE_ID`: recompute a stored cycle from its snapshot and diff."""

import json
import sys

from django.core.management.base import BaseCommand

from balancing.engine import EngineInput, allocate
from balancing.selectors import find_cycle_anywhere

COMPARED = ("outcome", "source_mode", "reason_codes", "nodes", "chargers")


def _engine_view(doc: dict) -> dict:
    """The engine's part of a cycle document (what replay can reproduce)."""
    out = {key: doc[key] for key in COMPARED}
    out["chargers"] = [{k: v for k, v in c.items() if k != "valid_until"} for c in out["chargers"]]
    for c in out["chargers"]:
        if c.get("binding"):
            c["binding"] = {k: c["binding"][k] for k in ("node_id", "limit_source", "limit_kw")}
    return out


class Command(BaseCommand):
    help = (
        "Recompute a stored cycle (a row, or compacted in a block) from its input snapshot; "
        "exit 1 if the result differs."
    )

    def add_arguments(self, parser):
        parser.add_argument("cycle_id")

    def handle(self, *args, cycle_id, **options):
        cycle = find_cycle_anywhere(cycle_id)
        if cycle is None:
            self.stderr.write(f"CYCLE_NOT_FOUND: no cycle {cycle_id!r}")
            sys.exit(2)
        result = allocate(EngineInput.from_dict(cycle.snapshot["engine"])).to_dict()
        stored = _engine_view(cycle.document)
        replayed = _engine_view(result)
        if stored == replayed:
            self.stdout.write(
                f"IDENTICAL: cycle {cycle_id} ({cycle.microgrid.microgrid_id} #{cycle.seq}) recomputes to the "
                f"same outcome {cycle.outcome}, source_mode {cycle.source_mode}, reason codes "
                f"{', '.join(cycle.reason_codes) or '-'} and {len(stored['chargers'])} setpoints"
            )
            return
        self.stdout.write(f"DIFFERENT: cycle {cycle_id} recomputes differently")
        for key in COMPARED:
            if stored[key] != replayed[key]:
                self.stdout.write(f"--- {key} stored\n{json.dumps(stored[key], indent=1)[:4000]}")
                self.stdout.write(
                    f"+++ {key} replayed\n{json.dumps(replayed[key], indent=1)[:4000]}"
                )
        sys.exit(1)
