"""`manage.py demo_feed`: live telemetry for the demo depot, so `make run` shows real cycles.

It plays the demo profile's scenario (EV sessions, site load and PV curves)
in wall-clock time, in a loop: every few seconds it advances the simulated
depot, sends its readings through the telemetry service, and makes the
simulated chargers follow the setpoints of the latest cycle that the Celery
worker stored. It is the simulator's world, driven by the real clock.
"""

from __future__ import annotations

import contextlib
import random
import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from balancing.models import Cycle
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.models import Microgrid
from microgrid.topology.selectors import asset_rows, node_rows
from simulator.loader import read_profile
from simulator.scenario import parse_scenario
from simulator.world import World

DEFAULT_PROFILE = "simulator/profiles/demo_depot.yaml"


class Command(BaseCommand):
    help = "Feed the demo depot live telemetry from its profile's scenario (Ctrl-C stops)."

    def add_arguments(self, parser):
        parser.add_argument("--profile", default=DEFAULT_PROFILE)
        parser.add_argument("--every", type=float, default=5.0, help="seconds between readings")
        parser.add_argument(
            "--speed", type=float, default=10.0, help="scenario seconds per real second"
        )
        parser.add_argument(
            "--ticks", type=int, default=0, help="stop after N ticks (0: run forever)"
        )
        parser.add_argument("--quiet", action="store_true", help="no start-up line")

    def handle(self, *args, quiet=False, **options):
        # Ctrl-C (or run_demo's SIGINT) between two ticks: a clean stop, no traceback.
        with contextlib.suppress(KeyboardInterrupt):
            self._feed(quiet=quiet, **options)

    def _feed(self, *, profile, every, speed, ticks, quiet, **options):
        raw = read_profile(profile)
        scenario, errors = parse_scenario(raw.get("scenario"), raw)
        if scenario is None or errors:
            raise CommandError(f"{profile} has no valid scenario to play")
        microgrid = (
            Microgrid.objects.select_related("depot")
            .filter(microgrid_id=raw["microgrid"]["microgrid_id"])
            .first()
        )
        if microgrid is None:
            raise CommandError("load the profile first: manage.py load_profile " + profile)
        world, t0, started = None, 0.0, time.monotonic()
        done = 0
        if not quiet:
            self.stdout.write(
                f"feeding {microgrid.microgrid_id} every {every:g} s at {speed:g}x scenario time"
            )
        while not ticks or done < ticks:
            t = ((time.monotonic() - started) * speed) % scenario.duration_s
            if world is None or t < t0:  # first tick, or the scenario wrapped around: start over
                world = World(
                    scenario,
                    nodes=node_rows(microgrid),
                    assets=asset_rows(microgrid),
                    timezone_name=microgrid.depot.timezone,
                    rng=random.Random(scenario.seed),
                )
            t0 = t
            world.advance(t)
            self._follow_latest_cycle(world, microgrid, t, speed)
            world.update_loads(t)
            now = timezone.now()
            telemetry_ingest(
                microgrid=microgrid, readings=world.readings(t, set(), now.isoformat()), now=now
            )
            done += 1
            if not ticks or done < ticks:
                time.sleep(every)

    @staticmethod
    def _follow_latest_cycle(world: World, microgrid: Microgrid, t: float, speed: float) -> None:
        cycle = (
            Cycle.objects.filter(microgrid=microgrid)
            .order_by("-started_at", "-seq")
            .only("record", "record_part")
            .first()
        )
        if cycle is None:
            return
        doc = cycle.document
        now = timezone.now()
        for charger in doc.get("chargers", []):
            if charger.get("allocated_kw") is None or not charger.get("valid_until"):
                continue
            left = (datetime.fromisoformat(charger["valid_until"]) - now).total_seconds()
            world.apply_setpoint(
                charger["asset_id"], charger["allocated_kw"], t + max(0.0, left) * speed
            )
