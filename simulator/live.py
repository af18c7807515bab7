"""The demo depot on the wall clock: what `manage.py demo_feed` (and so `make run`) plays.

A `LiveFeed` is the simulator's world driven by the real clock instead of `SimClock`:
at each tick (scenario second `t`, real time `now`) the simulated EVs draw until `t`
following the setpoints and scope budgets of the latest cycle the Celery worker stored,
their readings go through `telemetry_ingest`, and the scenario's requests due by `t`
are made as the simulator makes them (`simulator.calls`: real HTTP calls in-process, as
the peer, the integration or the support user). Timestamps in request bodies are on the
wall clock (`loop start + s / speed`), so an OSCP forecast's blocks, a heartbeat's
offline time and a capability event's observation time are true for the running product.

The scenario plays in a loop. Each pass is a new world (the same seed) and sends its
requests again, named apart: X-Request-ID `demo-<run>-<n>` (a repeated id would be an
OSCP replay, a no-op) and capability `event_ref` `<ref>-<run>-<pass>` (a repeated one
is stored once). So the demo's envelope, capability status, legacy alias usage and
breach come back every pass, each from the product's own services.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from balancing.models import Cycle
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.models import Microgrid
from microgrid.topology.selectors import asset_rows, node_rows
from simulator.calls import Caller, prepare
from simulator.scenario import Request, Scenario
from simulator.world import World


class LiveFeed:
    def __init__(
        self,
        *,
        scenario: Scenario,
        profile: dict[str, Any],
        microgrid: Microgrid,
        speed: float,
        run: str,
        warn: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.scenario = scenario
        self.microgrid = microgrid
        self.speed = speed
        self.run = run
        self.warn = warn
        peers = {
            p["name"]: p["token"]
            for p in profile.get("oscp_peers") or []
            if isinstance(p, dict) and "name" in p and "token" in p
        }
        self.caller = Caller(peers, microgrid.microgrid_id, request_prefix=f"demo-{run}")
        self.requests: list[Request] = sorted(scenario.requests, key=lambda r: (r.at_s, r.index))
        self.nodes = node_rows(microgrid)
        self.assets = asset_rows(microgrid)
        self.world: World | None = None
        self.t = 0.0
        self.loop = 0
        self.loop_start: datetime | None = None
        self.next_request = 0
        self.answers: list[tuple[Request, int, Any]] = []  # this process's calls, for tests
        self._warned: set[tuple[str, int]] = set()

    def tick(self, t: float, now: datetime) -> None:
        """One reading of every asset at scenario second `t` (real time `now`), then the
        requests due by `t`."""
        if self.world is None or t < self.t:  # the first tick, or the scenario wrapped
            self.world = World(
                self.scenario,
                nodes=self.nodes,
                assets=self.assets,
                timezone_name=self.microgrid.depot.timezone,
                rng=random.Random(self.scenario.seed),
            )
            self.loop += 1
            self.loop_start = now - timedelta(seconds=t / self.speed)
            self.next_request = 0
        self.t = t
        world = self.world
        world.advance(t)
        self._follow_latest_cycle(t, now)
        world.update_loads(t)
        telemetry_ingest(
            microgrid=self.microgrid, readings=world.readings(t, set(), now.isoformat()), now=now
        )
        while self.next_request < len(self.requests) and self.requests[self.next_request].at_s <= t:
            self._call(self.requests[self.next_request])
            self.next_request += 1

    def close(self) -> None:
        """Revoke the API tokens the feed's users called with."""
        self.caller.close()

    # ---- inside a tick ----------------------------------------------------------------------

    def _call(self, request: Request) -> None:
        assert self.loop_start is not None
        prepared = prepare(
            request,
            microgrid_id=self.microgrid.microgrid_id,
            start=self.loop_start,
            speed=self.speed,
        )
        if request.kind == "CAPABILITY_EVENT" and isinstance(prepared.body, dict):
            ref = prepared.body.get("event_ref")
            if isinstance(ref, str):
                prepared.body["event_ref"] = f"{ref}-{self.run}-{self.loop}"
        status, answer = self.caller.call(prepared)
        self.answers.append((request, status, answer))
        if status >= 400 and (request.kind, status) not in self._warned:
            self._warned.add((request.kind, status))
            code = answer.get("code") if isinstance(answer, dict) else None
            self.warn(
                f"demo feed: {request.kind} at t={request.at_s} s answered {status}"
                f"{f' {code}' if code else ''} (said once; `make demo-reset` reloads the "
                "demo profile with its peers, circuits and bindings)"
            )

    def _follow_latest_cycle(self, t: float, now: datetime) -> None:
        """The simulated chargers follow the latest stored cycle: its charger setpoints, and
        the budgets of scopes under external control, shared as the controller would."""
        cycle = (
            Cycle.objects.filter(microgrid=self.microgrid)
            .order_by("-started_at", "-seq")
            .only("record", "record_part")
            .first()
        )
        if cycle is None:
            return
        world = self.world
        assert world is not None
        doc = cycle.document

        def until(stamp: str) -> float:
            left = (datetime.fromisoformat(stamp) - now).total_seconds()
            return t + max(0.0, left) * self.speed

        for charger in doc.get("chargers", []):
            if charger.get("allocated_kw") is None or not charger.get("valid_until"):
                continue
            world.apply_setpoint(
                charger["asset_id"], charger["allocated_kw"], until(charger["valid_until"])
            )
        root = self.nodes[0]["node_id"] if self.nodes else None
        for budget in doc.get("scope_budgets", []):
            scope = budget.get("scope") or {}
            node_id = scope.get("node_id") if scope.get("type") == "NODE" else root
            if node_id not in world.below or not budget.get("valid_until"):
                continue
            chargers = [a for a in world.below[node_id] if world.kind[a] == "CHARGER"]
            world.apply_budget(chargers, budget["budget_kw"], until(budget["valid_until"]))
