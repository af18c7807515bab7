"""Measurements behind `manage.py bench`: engine, full cycle, reads, ingest, OSCP forecast.

Each measurement builds its own synthetic data (microgrids named BENCH-*,
removed afterwards), warms up, repeats, and reports the median and p95 in
milliseconds plus query counts where the database is involved. Nothing here
asserts a speed: the figures go to docs/performance.md. The fleet benchmark, which runs
Celery processes, is benchtools/fleet.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from balancing.engine import EngineInput, allocate
from benchtools.synthetic import (
    build_engine_input,
    fair_lp_allocation,
    lp_problem,
    phase_lp_problem,
    solve_lp_problem,
    with_departures,
    with_phases,
)
from microgrid.topology.tree import depths


def timed(fn: Callable[[], Any], *, repeat: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 3),
        "min_ms": round(samples[0], 3),
        "repeat": repeat,
    }


def timed_pair(plain: Callable[[], Any], other: Callable[[], Any], *, repeat: int) -> dict:
    """Two functions timed in alternation (plain, other, plain, ...), so that a busy machine
    slows both alike: medians and their ratio, in wall-clock time and in the CPU time of this
    thread (`cpu_*`: what other processes on a shared machine take does not count)."""
    for _ in range(2):
        plain()
        other()
    a, b, ca, cb = [], [], [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.thread_time()
        plain()
        a.append((time.perf_counter() - start) * 1000.0)
        ca.append((time.thread_time() - cpu) * 1000.0)
        start, cpu = time.perf_counter(), time.thread_time()
        other()
        b.append((time.perf_counter() - start) * 1000.0)
        cb.append((time.thread_time() - cpu) * 1000.0)
    pa, pb = statistics.median(a), statistics.median(b)
    qa, qb = statistics.median(ca), statistics.median(cb)
    return {
        "plain_median_ms": round(pa, 3),
        "departures_median_ms": round(pb, 3),
        "ratio": round(pb / pa, 2),
        "plain_min_ms": round(min(a), 3),
        "departures_min_ms": round(min(b), 3),
        "cpu_plain_median_ms": round(qa, 3),
        "cpu_departures_median_ms": round(qb, 3),
        "cpu_ratio": round(qb / qa, 2),
        "repeat": repeat,
    }


ENGINE_SIZES = ((10, 5), (100, 20), (1000, 200), (2000, 400), (10000, 2000))
# One LP solve per fill level: a 2,000-charger depot takes about 200 solves (over a second).
FAIR_LP_MAX_CHARGERS = 2000


def bench_engine(sizes=ENGINE_SIZES, *, repeat: int = 30) -> list[dict[str, Any]]:
    """The pure engine against one HiGHS LP solve of the same allocation (minimums as 0)."""
    rows = []
    for chargers, nodes in sizes:
        inp = build_engine_input(chargers, nodes, depth=5, seed=1)
        engine = timed(
            lambda inp=inp: allocate(inp),
            repeat=max(5, repeat if chargers <= 2000 else repeat // 3),
        )
        departures = with_departures(inp)
        pair = timed_pair(
            lambda inp=inp: allocate(inp),
            lambda inp=departures: allocate(inp),
            repeat=max(5, repeat if chargers <= 2000 else repeat // 3),
        )
        dep_result = allocate(departures)
        result = allocate(inp)
        problem = lp_problem(inp)
        lp = timed(lambda p=problem: solve_lp_problem(p), repeat=max(3, repeat // 3), warmup=1)
        lp_build = timed(lambda inp=inp: lp_problem(inp), repeat=3, warmup=0)
        no_min = _without_minimums(inp)
        no_min_result = allocate(no_min)
        fair = _fair_lp(no_min, no_min_result) if chargers <= FAIR_LP_MAX_CHARGERS else None
        rows.append(
            {
                "chargers": chargers,
                "nodes": nodes,
                "engine": engine,
                "departures_pair": pair,
                "departures_at_risk": sum(
                    1 for c in dep_result.chargers if c.departure and c.departure.at_risk
                ),
                "departures_served_first": sum(
                    1 for c in dep_result.chargers if "DEPARTURE_PRIORITY" in c.reason_codes
                ),
                "highs_solve": lp,
                "highs_build": lp_build,
                "speedup_vs_highs_solve": round(lp["median_ms"] / engine["median_ms"], 1),
                "engine_total_kw": round(sum(c.allocated_kw or 0.0 for c in result.chargers), 1),
                "engine_total_kw_no_minimums": round(
                    sum(c.allocated_kw or 0.0 for c in no_min_result.chargers), 1
                ),
                "lp_total_kw": round(solve_lp_problem(problem), 1),
                "outcome": result.outcome,
                "fair_lp": fair,
                "speedup_vs_fair_lp": round(fair["timing"]["median_ms"] / engine["median_ms"], 1)
                if fair
                else None,
            }
        )
    return rows


PHASE_SIZES = ((100, 20), (1000, 200), (2000, 400))


def bench_engine_phases(sizes=PHASE_SIZES, *, repeat: int = 30) -> list[dict[str, Any]]:
    """The engine with per-phase data (issue 19) against one HiGHS solve of the per-phase LP
    of the same depot, and the same depot without per-phase data (the kW engine)."""
    from dataclasses import replace

    import numpy as np

    rows = []
    for chargers, nodes in sizes:
        base = build_engine_input(chargers, nodes, depth=5, seed=1)
        inp = with_phases(base, seed=1)
        engine = timed(lambda inp=inp: allocate(inp), repeat=repeat)
        kw_only = timed(lambda inp=base: allocate(inp), repeat=repeat)
        problem = phase_lp_problem(inp)
        lp = timed(lambda p=problem: solve_lp_problem(p), repeat=max(3, repeat // 3), warmup=1)
        lp_build = timed(lambda inp=inp: phase_lp_problem(inp), repeat=3, warmup=0)
        no_min = replace(
            inp,
            chargers=tuple(replace(c, min_power_kw=0.0) for c in inp.chargers),
            phase=replace(
                inp.phase,
                chargers=tuple(replace(pc, min_current_a=None) for pc in inp.phase.chargers),
            ),
        )
        result = allocate(no_min)
        c, a_ub, b_ub, _ = phase_lp_problem(no_min)
        x = np.array([ch.allocated_kw for ch in result.chargers if ch.requested_kw > 0.0])
        full = allocate(inp)
        rows.append(
            {
                "chargers": chargers,
                "nodes": nodes,
                "engine_per_phase": engine,
                "engine_kw_only": kw_only,
                "highs_solve": lp,
                "highs_build": lp_build,
                "speedup_vs_highs_solve": round(lp["median_ms"] / engine["median_ms"], 2),
                "engine_total_kw_no_minimums": round(float(x.sum()), 1),
                "lp_total_kw": round(solve_lp_problem(phase_lp_problem(no_min)), 1),
                "max_row_excess": round(float((a_ub @ x - b_ub).max()), 6),
                "bound_by_phase": sum(
                    1 for ch in full.chargers if "PHASE_CURRENT_LIMIT" in ch.reason_codes
                ),
                "bound_by_unbalance": sum(
                    1 for ch in full.chargers if "PHASE_UNBALANCE_LIMIT" in ch.reason_codes
                ),
            }
        )
    return rows


def _fair_lp(inp: EngineInput, result) -> dict[str, Any]:
    """The engine's own allocation (minimums 0) by LP progressive filling: its time, the
    number of HiGHS solves, and how far the engine's setpoints (`result` of `inp`) are from
    it per charger."""
    allocation, solves = fair_lp_allocation(inp)
    timing = timed(lambda: fair_lp_allocation(inp), repeat=3, warmup=0)
    gaps = [(c.allocated_kw or 0.0) - allocation.get(c.asset_id, 0.0) for c in result.chargers]
    return {
        "timing": timing,
        "solves": solves,
        "max_abs_diff_kw": round(max((abs(g) for g in gaps), default=0.0), 4),
        "max_engine_above_lp_kw": round(max(gaps, default=0.0), 6),
    }


def _without_minimums(inp: EngineInput) -> EngineInput:
    from dataclasses import replace

    return replace(inp, chargers=tuple(replace(c, min_power_kw=0.0) for c in inp.chargers))


def materialise(inp: EngineInput, microgrid_id: str):
    """A synthetic engine input as a real microgrid: ratings = limits, telemetry fresh now."""
    from microgrid.telemetry.services import telemetry_ingest
    from microgrid.topology.models import Depot, Microgrid
    from microgrid.topology.services import microgrid_create, topology_replace

    old = Microgrid.objects.filter(microgrid_id=microgrid_id).first()
    if old:
        _drop(old)
    Depot.objects.filter(depot_id=f"D-{microgrid_id}").delete()
    microgrid = microgrid_create(
        microgrid_id=microgrid_id,
        name=microgrid_id,
        depot={"depot_id": f"D-{microgrid_id}", "name": microgrid_id, "timezone": "UTC"},
    )
    kinds = {0: "GRID_CONNECTION", 1: "SWITCHBOARD", 2: "FEEDER"}
    depth = depths((n.node_id, n.parent_id) for n in inp.nodes)
    nodes = []
    for n in inp.nodes:
        nodes.append(
            {
                "node_id": n.node_id,
                "parent_id": n.parent_id,
                "kind": kinds.get(depth[n.node_id], "CHARGER_GROUP"),
                "name": n.node_id,
                "physical_rating_kw": max(n.limit_kw, 0.001),
            }
        )
    assets = []
    for c in inp.chargers:
        assets.append(
            {
                "asset_id": c.asset_id,
                "node_id": c.node_id,
                "kind": "CHARGER",
                "name": c.asset_id,
                "max_power_kw": c.max_power_kw,
                "min_power_kw": c.min_power_kw,
                "priority": c.priority,
                "failsafe_power_kw": c.failsafe_power_kw,
            }
        )
    for ld in inp.loads:
        entry = {
            "asset_id": ld.asset_id,
            "node_id": ld.node_id,
            "kind": ld.kind,
            "name": ld.asset_id,
        }
        if ld.kind != "PV":
            entry["fallback_kw"] = ld.fallback_kw
        assets.append(entry)
    topology_replace(microgrid=microgrid, base_version=0, nodes=nodes, assets=assets)
    microgrid.refresh_from_db()
    now = timezone.now()
    readings = [
        {
            "asset_id": c.asset_id,
            "power_kw": 0.0,
            "observed_at": now.isoformat(),
            "connected": c.connected,
            "requested_kw": c.requested_kw,
        }
        for c in inp.chargers
    ]
    readings += [
        {"asset_id": ld.asset_id, "power_kw": ld.power_kw or 0.0, "observed_at": now.isoformat()}
        for ld in inp.loads
    ]
    for start in range(0, len(readings), 2000):
        telemetry_ingest(microgrid=microgrid, readings=readings[start : start + 2000], now=now)
    return microgrid


class _NullDispatcher:
    def dispatch(self, **kwargs) -> None:
        pass


CYCLE_SIZES = ((10, 5), (100, 20), (1000, 200), (2000, 400), (10000, 2000))


def bench_cycle(sizes=CYCLE_SIZES, *, repeat: int = 15) -> list[dict[str, Any]]:
    """A full cycle: load inputs, compute, store cycle and breaches, hand to a dispatcher."""
    from balancing.services import cycle_request, trigger_of

    rows = []
    for chargers, nodes in sizes:
        inp = build_engine_input(chargers, nodes, depth=5, seed=1)
        microgrid = materialise(inp, f"BENCH-CYCLE-{chargers}")
        # Telemetry must stay fresh for the whole measurement: pin the clock.
        now = timezone.now()

        def run(microgrid=microgrid, now=now):
            cycle_request(
                microgrid=microgrid,
                trigger=trigger_of("API"),
                now=lambda: now,
                dispatcher=_NullDispatcher(),
            )

        # A 10,000-charger cycle takes seconds: fewer repeats, as bench_engine does.
        stats = timed(run, repeat=max(3, repeat if chargers <= 2000 else repeat // 3))
        with CaptureQueriesContext(connection) as ctx:
            run()
        rows.append(
            {
                "chargers": chargers,
                "nodes": nodes,
                "cycle": stats,
                "queries": len(ctx.captured_queries),
                "database": connection.vendor,
            }
        )
        _drop(microgrid)
    return rows


def _drop(microgrid) -> None:
    from microgrid.topology.services import microgrid_delete

    microgrid_delete(microgrid=microgrid)


def bench_reads(*, repeat: int = 15) -> dict[str, Any]:
    """The topology endpoint for a 500-node, 2,000-asset microgrid, and query counts of the reads."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from balancing.services import cycle_request, trigger_of
    from microgrid.topology.services import microgrid_memberships_grant

    inp = build_engine_input(1990, 500, depth=5, seed=2)
    microgrid = materialise(inp, "BENCH-READS")
    user, _ = get_user_model().objects.get_or_create(username="bench-reader")
    user.groups.add(Group.objects.get(name="operator"))
    microgrid_memberships_grant(user=user, microgrid_ids=[microgrid.microgrid_id])
    client = Client()
    client.force_login(user)
    cycle = cycle_request(
        microgrid=microgrid, trigger=trigger_of("API"), dispatcher=_NullDispatcher()
    ).cycle
    base = f"/api/microgrids/{microgrid.microgrid_id}/"
    out: dict[str, Any] = {"nodes": len(inp.nodes), "assets": len(inp.chargers) + len(inp.loads)}
    for name, url in (
        ("topology", base + "topology/"),
        ("card", base),
        ("cycle_list", base + "cycles/"),
        ("cycle_detail", base + f"cycles/{cycle.cycle_id}/"),
    ):
        stats = timed(lambda url=url: client.get(url), repeat=repeat)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        out[name] = {**stats, "queries": len(ctx.captured_queries), "bytes": len(response.content)}
    _drop(microgrid)
    return out


def bench_ingest(*, batches: int = 20, batch_size: int = 500) -> dict[str, Any]:
    """Telemetry through the API in batches of 500: readings per second."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from microgrid.topology.services import microgrid_memberships_grant

    inp = build_engine_input(batch_size, 50, depth=4, seed=3)
    microgrid = materialise(inp, "BENCH-INGEST")
    user, _ = get_user_model().objects.get_or_create(username="bench-ingest")
    user.groups.add(Group.objects.get(name="integration"))
    microgrid_memberships_grant(user=user, microgrid_ids=[microgrid.microgrid_id])
    client = Client()
    client.force_login(user)
    url = f"/api/microgrids/{microgrid.microgrid_id}/telemetry/"
    start = timezone.now() - timedelta(seconds=batches + 5)
    bodies = []
    for b in range(batches):
        at = (start + timedelta(seconds=b)).isoformat()
        bodies.append(
            {
                "readings": [
                    {
                        "asset_id": c.asset_id,
                        "power_kw": 1.0,
                        "observed_at": at,
                        "connected": True,
                        "requested_kw": 10.0,
                    }
                    for c in inp.chargers
                ]
            }
        )
    client.post(url, bodies[0], content_type="application/json")  # warm-up
    samples = []
    for body in bodies[1:]:
        t = time.perf_counter()
        response = client.post(url, body, content_type="application/json")
        samples.append(time.perf_counter() - t)
        assert response.status_code == 202, response.content
    total = sum(samples)
    _drop(microgrid)
    return {
        "batch_size": batch_size,
        "batches": len(samples),
        "readings_per_s": round(batch_size * len(samples) / total),
        "batch_median_ms": round(statistics.median(samples) * 1000, 2),
    }


OSCP_TOKEN = "bench-oscp-peer-token-0123456789"
OSCP_PATH = "/oscp/fp/2.0/update_group_capacity_forecast"


def forecast_blocks(day_start, blocks: int = 96, *, step_min: int = 15) -> list[dict[str, Any]]:
    """`blocks` consecutive quarter-hour blocks from `day_start`, capacities in kW varying over
    the day as a DSO's would."""
    out = []
    for i in range(blocks):
        start = day_start + timedelta(minutes=step_min * i)
        out.append(
            {
                "capacity": 400 + 10 * (i % 24),
                "phase": "ALL",
                "unit": "KW",
                "start_time": start.isoformat(),
                "end_time": (start + timedelta(minutes=step_min)).isoformat(),
            }
        )
    return out


def bench_oscp(*, repeat: int = 15, blocks: int = 96) -> dict[str, Any]:
    """A day-ahead UpdateGroupCapacityForecast of 96 quarter-hour blocks from a peer.

    Through the in-process HTTP client with the peer's token (authentication, parsing,
    validation, storing 96 envelopes with their history, legacy reconciliation, the 204), and
    through `oscp_message_receive` alone; every message has a fresh X-Request-ID. Two cases:
    `new_day`, each message the forecast of a day not forecast before (the daily message), and
    `revision`, the same day sent again, which supersedes the 96 envelopes before it. The
    blocks start tomorrow, so no envelope is in force yet and no cycle is asked for.
    """
    import itertools
    import json

    from django.test import Client

    from microgrid.envelopes.services import (
        oscp_group_binding_save,
        oscp_message_receive,
        oscp_peer_save,
    )

    _drop_oscp()
    inp = build_engine_input(50, 10, depth=4, seed=4)
    microgrid = materialise(inp, "BENCH-OSCP")
    peer, _ = oscp_peer_save(name="bench-oscp", token=OSCP_TOKEN, heartbeat_interval_s=86400)
    oscp_group_binding_save(
        peer=peer, group_id="BENCH-GRP", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    tomorrow = (timezone.now() + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    request_ids = itertools.count(1)
    days = itertools.count(0)
    client = Client()

    def body(day: int) -> str:
        start = tomorrow + timedelta(days=day)
        return json.dumps(
            {
                "group_id": "BENCH-GRP",
                "type": "CONSUMPTION",
                "forecasted_blocks": forecast_blocks(start, blocks),
            }
        )

    def post(day: int) -> None:
        response = client.generic(
            "POST",
            OSCP_PATH,
            body(day),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {OSCP_TOKEN}",
            HTTP_X_REQUEST_ID=f"bench-{next(request_ids)}",
        )
        assert response.status_code == 204, (response.status_code, response.content)

    def service(day: int) -> None:
        oscp_message_receive(
            peer=peer,
            message_type="UPDATE_GROUP_CAPACITY_FORECAST",
            request_id=f"bench-{next(request_ids)}",
            body=body(day),
        )

    out: dict[str, Any] = {"blocks": blocks}
    out["http"] = timed(lambda: post(next(days)), repeat=repeat)
    out["service"] = timed(lambda: service(next(days)), repeat=repeat)
    with CaptureQueriesContext(connection) as ctx:
        post(next(days))
    out["queries"] = len(ctx.captured_queries)
    revision_day = next(days)
    post(revision_day)
    out["http_revision"] = timed(lambda: post(revision_day), repeat=repeat)
    with CaptureQueriesContext(connection) as ctx:
        post(revision_day)
    out["queries_revision"] = len(ctx.captured_queries)
    _drop_oscp()
    return out


def _drop_oscp() -> None:
    """Remove the OSCP bench's microgrid and peer. Envelopes and messages are records that
    protect each other and their microgrid (microgrid_delete refuses them), so they go first."""
    from microgrid.envelopes.models import OperatingEnvelope, OscpMessage, OscpPeer
    from microgrid.topology.models import Microgrid

    peers = OscpPeer.objects.filter(name="bench-oscp")
    envelopes = OperatingEnvelope.objects.filter(peer__in=peers)
    envelopes.update(superseded_by=None)
    envelopes.delete()
    OscpMessage.objects.filter(peer__in=peers).delete()
    old = Microgrid.objects.filter(microgrid_id="BENCH-OSCP").first()
    if old is not None:
        _drop(old)
    peers.delete()
