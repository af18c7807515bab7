"""`manage.py demo_feed`: live telemetry and requests for the demo depot, so `make run`
shows real cycles, an envelope, a capability status, legacy alias usage and a breach.

It plays the demo profile's scenario (EV sessions, site load and PV curves, and its
requests: OSCP heartbeats and a forecast, capability events, a legacy rebalance, an
operator's rebalance) in wall-clock time, in a loop: every few seconds it advances the
simulated depot, sends its readings through the telemetry service, makes the scenario's
due requests over HTTP in-process, and makes the simulated chargers follow the setpoints
of the latest cycle that the Celery worker stored (`simulator.live`).
"""

from __future__ import annotations

import contextlib
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from microgrid.topology.models import Microgrid
from simulator.live import LiveFeed
from simulator.loader import read_profile
from simulator.scenario import parse_scenario

DEFAULT_PROFILE = "simulator/profiles/demo_depot.yaml"


class Command(BaseCommand):
    help = "Feed the demo depot live telemetry and requests from its profile's scenario (Ctrl-C stops)."

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
        if speed <= 0:
            raise CommandError("--speed must be above 0")
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
        feed = LiveFeed(
            scenario=scenario,
            profile=raw,
            microgrid=microgrid,
            speed=speed,
            run=f"{int(time.time()):x}",
            warn=lambda line: self.stderr.write(line),
        )
        started = time.monotonic()
        done = 0
        if not quiet:
            self.stdout.write(
                f"feeding {microgrid.microgrid_id} every {every:g} s at {speed:g}x scenario time"
            )
        try:
            while not ticks or done < ticks:
                t = ((time.monotonic() - started) * speed) % scenario.duration_s
                feed.tick(t, timezone.now())
                done += 1
                if not ticks or done < ticks:
                    time.sleep(every)
        finally:
            feed.close()
