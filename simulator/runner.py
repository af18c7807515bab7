"""Running a scenario (spec 8.2, 8.3) on the simulated clock, through the product's own code.

`simulate(profile, out_dir=...)`:
1. checks the whole profile, scenario included, and refuses it with every
   problem before anything is written (DomainError, PROFILE_INVALID and the
   API's codes);
2. resets the profile's depot (its microgrid with everything that cascades
   from it, the depot, the profile's legacy circuits and OSCP peers) and loads
   the profile afresh through `load_profile`, at the scenario's start time;
3. walks the steps `t = 0, step_s, ...` (< duration_s). At each step: the
   simulated EVs draw until t; MISSING windows remove their targets' latest
   readings; every asset that is not degraded reports through
   `telemetry_ingest`; the per-step work of the apps runs (TOU transitions,
   which trigger TOU_TRANSITION cycles through the real Celery task, run
   eagerly); the scenario's requests at t are made over HTTP; then the step's
   scheduled cycle runs through `cycle_request` (trigger SIMULATOR, setpoints
   valid for 3 steps). Requests between steps run at their own time.
4. writes the artifacts from what the product stored.

Every cycle's setpoints, whoever triggered it, reach the simulated chargers
through the dispatch outbox and the SIMULATOR channel (`simulator.dispatch`).
Nothing here wraps the run in a transaction:
each service commits its own, and setpoints are dispatched after each commit
as in production (so a caller already inside a transaction is refused).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import ProtectedError, Q, RestrictedError
from django.test.utils import override_settings

from balancing.dispatch import ChargingLimit, ScopeBudget
from balancing.models import Breach
from balancing.selectors import cycle_seqs, cycles_by_seq
from balancing.services import cycle_request
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import check_datetime
from microgrid.common.roles import INTEGRATION
from microgrid.limits.services import schedule_transitions_record
from microgrid.telemetry.models import LatestReading
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.models import Depot, Microgrid
from microgrid.topology.selectors import asset_rows, node_rows
from microgrid.topology.tree import depths
from simulator import artifacts, dispatch
from simulator.calls import Caller, Prepared, prepare
from simulator.clock import SimClock, simulated_time
from simulator.loader import check_profile, load_profile
from simulator.scenario import SECTION, Scenario, parse_scenario
from simulator.world import World


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]


def checked_scenario(profile: dict[str, Any], *, seed: int | None = None) -> Scenario:
    """The profile's scenario, or DomainError listing every problem of the profile."""
    errors = check_profile(profile)
    if SECTION not in profile:
        errors.append(
            ErrorItem(
                "PROFILE_INVALID", "section 'scenario' is required to simulate", field=SECTION
            )
        )
    if errors:
        raise DomainError.from_errors(errors, f"the profile is invalid: {len(errors)} problem(s)")
    scenario, problems = parse_scenario(profile[SECTION], profile)
    if problems or scenario is None:  # check_profile has reported them already
        raise DomainError.from_errors(problems or [ErrorItem("PROFILE_INVALID", "no scenario")])
    if seed is not None:
        scenario = dataclasses.replace(scenario, seed=seed)
    return scenario


def simulate(
    profile: dict[str, Any],
    *,
    out_dir: str | Path,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    chart: bool = True,
) -> RunResult:
    scenario = checked_scenario(profile, seed=seed)
    if connection.in_atomic_block:
        raise RuntimeError(
            "simulate runs outside any transaction: setpoints are dispatched after each commit"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = SimClock(scenario.start)
    with (
        simulated_time(clock),
        override_settings(
            ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"],
        ),
        _eager_celery(),
        _quiet("celery.app.trace", "kombu.connection"),
    ):
        reset_depot(profile)
        microgrid = load_profile(profile).microgrid
        run = _Run(scenario, profile, microgrid, clock, progress)
        dispatch.activate(microgrid.microgrid_id, run.receive)
        try:
            run.go()
        finally:
            dispatch.activate(None)
            run.caller.close()
        summary = _write(out, scenario, profile, microgrid, run, chart=chart)
    return RunResult(out, summary)


# ---- compare mode (issue 20) -------------------------------------------------------------------

COMPARE_FIGURES = (
    ("energy_delivered_kwh",),
    ("sessions", "total"),
    ("sessions", "left_short"),
    ("sessions", "energy_short_kwh"),
    ("breaches", "total"),
    ("breaches", "max_excess_kw"),
    ("headroom", "mode"),
    ("sessions", "reported"),
)


def compare_variants(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The two runs of `simulate --compare`: `managed` is the profile with its EVs' departures
    reported through the API and its headroom as configured; `baseline` the same scenario
    with departures ignored (not reported) and headroom off: today's max-min fairness."""
    managed = copy.deepcopy(profile)
    managed[SECTION]["report_sessions"] = True
    baseline = copy.deepcopy(profile)
    baseline[SECTION]["report_sessions"] = False
    baseline["microgrid"]["headroom_mode"] = "off"
    baseline["microgrid"].pop("headroom_static_kw", None)
    return {"managed": managed, "baseline": baseline}


def simulate_compare(
    profile: dict[str, Any],
    *,
    out_dir: str | Path,
    seed: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    chart: bool = True,
) -> RunResult:
    """Run both variants (artifacts in out_dir/managed and out_dir/baseline) and write
    out_dir/compare.json: each run's figures and the targets of issue 20 checked."""
    checked_scenario(profile, seed=seed)
    out = Path(out_dir)
    runs = {}
    for name, variant in compare_variants(profile).items():
        step = (lambda done, total, name=name: progress(name, done, total)) if progress else None
        runs[name] = simulate(variant, out_dir=out / name, seed=seed, progress=step, chart=chart)
    figures = {name: _figures(run.summary) for name, run in runs.items()}
    m, b = figures["managed"], figures["baseline"]
    energy_ratio = (
        m["energy_delivered_kwh"] / b["energy_delivered_kwh"] if b["energy_delivered_kwh"] else 1.0
    )
    report = {
        "microgrid_id": runs["managed"].summary["microgrid_id"],
        "seed": runs["managed"].summary["seed"],
        "managed": m,
        "baseline": b,
        "targets": {
            "energy_ratio": energy_ratio,
            "energy_at_least_98_percent": energy_ratio >= 0.98,
            "no_breach_in_managed": m["breaches.total"] == 0,
            "left_short_at_most_half": m["sessions.left_short"] <= b["sessions.left_short"] / 2,
            "energy_short_not_grown": m["sessions.energy_short_kwh"]
            <= b["sessions.energy_short_kwh"] + 1e-6,
        },
    }
    artifacts.write_json(out / "compare.json", report)
    return RunResult(out, report)


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for path in COMPARE_FIGURES:
        value: Any = summary
        for key in path:
            value = value[key]
        out[".".join(path)] = value
    return out


@contextmanager
def _eager_celery():
    """Tasks enqueued during the run (TOU, envelope cycles) run at once, in this process."""
    from microgrid.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = before


@contextmanager
def _quiet(*names: str):
    """Eager tasks log a line each; a run of hundreds of cycles would drown its progress bar."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)


# ---- reset ------------------------------------------------------------------------------------


def reset_depot(profile: dict[str, Any]) -> None:
    """Remove what an earlier run (or load) of this profile left, so a run starts from nothing."""
    microgrid_id = profile["microgrid"]["microgrid_id"]
    depot_id = profile["depot"]["depot_id"]
    with transaction.atomic():
        _delete_all(
            Microgrid.objects.filter(Q(microgrid_id=microgrid_id) | Q(depot__depot_id=depot_id))
        )
        _delete_all(Depot.objects.filter(depot_id=depot_id))
        circuits = [c.get("circuit_id") for c in profile.get("legacy_circuits") or []]
        peers = [p.get("name") for p in profile.get("oscp_peers") or []]
        for model_name, field, values in (
            ("LegacyCircuit", "circuit_id", circuits),
            ("OscpPeer", "name", peers),
        ):
            model = _model_named(model_name)
            if model is not None and values:
                _delete_all(model.objects.filter(**{f"{field}__in": values}))


def _model_named(name: str):
    """The model of that class name, if its app is installed (apps are merged independently)."""
    for model in apps.get_models():
        if model.__name__ == name:
            return model
    return None


def _delete_all(queryset, depth: int = 0) -> None:
    """Delete with everything that refers to it, also through PROTECT/RESTRICT (audit rows of a
    simulated depot, such as an OSCP peer's messages)."""
    for _ in range(20):
        try:
            queryset.delete()
            return
        except (ProtectedError, RestrictedError) as exc:
            if depth > 5:
                raise
            blocking = (
                exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
            )
            by_model: dict[type, list[Any]] = {}
            for obj in blocking:
                by_model.setdefault(type(obj), []).append(obj.pk)
            for model, pks in by_model.items():
                _delete_all(model.objects.filter(pk__in=pks), depth + 1)
    queryset.delete()


# ---- the run ----------------------------------------------------------------------------------


class _Run:
    def __init__(
        self, scenario: Scenario, profile, microgrid: Microgrid, clock: SimClock, progress
    ):
        self.scenario = scenario
        self.microgrid = microgrid
        self.clock = clock
        self.progress = progress
        self.nodes = node_rows(microgrid)
        self.assets = asset_rows(microgrid)
        self.world = World(
            scenario,
            nodes=self.nodes,
            assets=self.assets,
            timezone_name=microgrid.depot.timezone,
            rng=random.Random(scenario.seed),
        )
        self.chargers_below = {
            n: [a for a in assets if a in self.world.chargers]
            for n, assets in self.world.below.items()
        }
        peers = {
            p["name"]: p.get("token", "")
            for p in profile.get("oscp_peers") or []
            if isinstance(p, dict) and isinstance(p.get("name"), str)
        }
        self.caller = Caller(peers, microgrid.microgrid_id)
        self.requests: list[dict[str, Any]] = []
        self.reported: set[tuple[str, int]] = set()  # (charger, arrive_s) already reported
        self.session_reports: Counter[int] = Counter()  # answers by status

    def go(self) -> None:
        s = self.scenario
        pending = list(s.requests)
        steps = s.step_times()
        for done, t in enumerate(steps):
            while pending and pending[0].at_s < t:
                self._request(pending.pop(0))
            self._at(t)
            self._telemetry(t)
            if s.report_sessions:
                self._report_sessions(t)
            # The beat tasks that matter to a cycle's inputs, scoped to this microgrid: TOU
            # starts and ends (their TOU_TRANSITION cycles run at once, see below).
            schedule_transitions_record(now=self.clock.now(), microgrid=self.microgrid)
            while pending and pending[0].at_s == t:
                self._request(pending.pop(0))
            cycle_request(
                microgrid=self.microgrid,
                trigger={"type": "SIMULATOR"},
                now=self.clock.now,
                valid_for_s=s.step_s,
            )
            if self.progress:
                self.progress(done + 1, len(steps))
        while pending:
            self._request(pending.pop(0))
        self._at(s.duration_s)

    def _at(self, t: float) -> None:
        self.world.advance(t)
        self.clock.set(t)

    def _telemetry(self, t: int) -> None:
        silent: set[str] = set()
        missing: set[str] = set()
        for d in self.scenario.degradations:
            if d.covers(t):
                silent.update(d.asset_ids)
                if d.kind == "MISSING":
                    missing.update(d.asset_ids)
        if missing:
            # As if the asset had never reported: the product has no latest reading for it.
            LatestReading.objects.filter(
                microgrid=self.microgrid, asset__asset_id__in=sorted(missing)
            ).delete()
        self.world.update_loads(t)
        readings = self.world.readings(t, silent, self.clock.now().isoformat())
        limit = settings.TELEMETRY_MAX_BATCH
        for i in range(0, len(readings), limit):
            telemetry_ingest(
                microgrid=self.microgrid, readings=readings[i : i + limit], now=self.clock.now()
            )

    def _report_sessions(self, t: int) -> None:
        """The depot's fleet system tells the product, through the integration API, when each
        EV that plugged in since the previous step leaves and the energy it needs."""
        for asset_id in sorted(self.world.chargers):
            ev = self.world.chargers[asset_id].session_at(t)
            if ev is None or (asset_id, ev.session.arrive_s) in self.reported:
                continue
            self.reported.add((asset_id, ev.session.arrive_s))
            body = {
                "departure_at": (
                    self.clock.start + timedelta(seconds=ev.session.depart_s)
                ).isoformat(),
                "energy_needed_kwh": ev.session.energy_kwh,
            }
            path = f"/api/microgrids/{self.microgrid.microgrid_id}/chargers/{asset_id}/session/"
            status, _ = self.caller.call(Prepared("PUT", path, body, INTEGRATION))
            self.session_reports[status] += 1

    def _request(self, request) -> None:
        self._at(request.at_s)
        prepared = prepare(
            request, microgrid_id=self.microgrid.microgrid_id, start=self.clock.start
        )
        status, answer = self.caller.call(prepared)
        self.requests.append(
            {
                "t_s": request.at_s,
                "index": request.index,
                "kind": request.kind,
                "method": prepared.method,
                "path": prepared.path,
                "sent": prepared.body,
                "status": status,
                "answer": answer,
            }
        )

    def receive(
        self,
        microgrid_id: str,
        limits: list[ChargingLimit],
        budgets: list[ScopeBudget],
        valid_until: str,
        full: bool,
    ):
        """A dispatch message, honoured as a webhook receiver must (spec 4.7, Renewal)."""
        if microgrid_id != self.microgrid.microgrid_id:
            return
        if full:
            self.world.drop_setpoints()
        for limit in limits:
            until = _seconds(self.clock, limit.valid_until)
            self.world.apply_setpoint(limit.asset_id, limit.limit_kw, until)
        for budget in budgets:
            scope = budget.scope or {}
            node_id = (
                scope.get("node_id") if scope.get("type") == "NODE" else self.nodes[0]["node_id"]
            )
            self.world.apply_budget(
                self.chargers_below.get(node_id, []),
                budget.budget_kw,
                _seconds(self.clock, budget.valid_until),
            )
        self.world.renew_setpoints(
            self.clock.seconds(self.clock.now()), _seconds(self.clock, valid_until)
        )


def _seconds(clock: SimClock, stamp: str) -> float:
    return clock.seconds(check_datetime(stamp))


# ---- artifacts --------------------------------------------------------------------------------


def _breadth_first(nodes: list[dict[str, Any]]) -> list[str]:
    depth = depths((n["node_id"], n["parent_id"]) for n in nodes)
    return [n["node_id"] for n in sorted(nodes, key=lambda n: depth[n["node_id"]])]


def _write(out: Path, scenario: Scenario, profile, microgrid, run: _Run, *, chart: bool):
    # Every kept cycle, rows and compacted alike (balancing.selectors.cycles_by_seq).
    seq_of = cycle_seqs(microgrid)
    normalise = artifacts.Normaliser(run.clock.start, seq_of)
    summary = artifacts.Summary()
    lines = []
    for cycle in cycles_by_seq(microgrid):
        line = artifacts.cycle_line(cycle.seq, cycle.document, normalise)
        summary.add(line)
        lines.append(line)
    artifacts.write_jsonl(out / "cycles.jsonl", lines)

    breaches = []
    for b in (
        Breach.objects.filter(microgrid=microgrid)
        .select_related("cycle", "resolved_by")
        .order_by("detected_at", "node_id")
    ):
        breaches.append(
            {
                "node_id": b.node_id,
                "detected_at_s": normalise.seconds(b.detected_at),
                "detected_by_seq": b.cycle.seq,
                "measured_kw": b.measured_kw,
                "limit_kw": b.limit_kw,
                "excess_kw": b.excess_kw,
                "exceeded": b.exceeded,
                "primary_reason_code": b.primary_reason_code,
                "status": b.status,
                "resolved_at_s": normalise.seconds(b.resolved_at),
                "resolved_by_seq": b.resolved_by.seq if b.resolved_by else None,
            }
        )
    artifacts.write_jsonl(out / "breaches.jsonl", breaches)

    requests = [
        {**r, "sent": normalise(r["sent"]), "answer": normalise(r["answer"])} for r in run.requests
    ]
    artifacts.write_jsonl(out / "requests.jsonl", requests)

    sessions = run.world.sessions()
    departed = [s for s in sessions if s.departed]
    short = [
        {
            "asset_id": s.asset_id,
            "origin": s.origin,
            "arrive_s": s.arrive_s,
            "depart_s": s.depart_s,
            "energy_kwh": s.energy_kwh,
            "delivered_kwh": s.delivered_kwh,
            "short_kwh": s.energy_kwh - s.delivered_kwh,
        }
        for s in departed
        if s.energy_kwh - s.delivered_kwh >= 0.0005
    ]
    request_outcomes = Counter(f"{r['kind']} {r['status']}" for r in run.requests)
    doc = {
        "microgrid_id": microgrid.microgrid_id,
        "depot_id": microgrid.depot.depot_id,
        "seed": scenario.seed,
        "start": scenario.start.isoformat(),
        "duration_s": scenario.duration_s,
        "step_s": scenario.step_s,
        "cycles": summary.cycles_part(),
        "reason_codes": dict(sorted(summary.reason_codes.items())),
        "charger_reason_codes": dict(sorted(summary.charger_reason_codes.items())),
        "energy_delivered_kwh": sum(s.delivered_kwh for s in sessions),
        "sessions": {
            "total": len(sessions),
            "turned_away": run.world.turned_away,
            "departed": len(departed),
            "still_connected": len(sessions) - len(departed),
            "left_short": len(short),
            "energy_short_kwh": sum(s["short_kwh"] for s in short),
            "left_short_sessions": short,
            "reported": scenario.report_sessions,
            "report_answers": {str(k): v for k, v in sorted(run.session_reports.items())},
        },
        "headroom": {
            "mode": microgrid.headroom_mode,
            "static_kw": microgrid.headroom_static_kw,
        },
        "max_allocation_excess_kw": summary.max_excess,
        "max_allocation_excess_at": summary.max_excess_at,
        "breaches": {
            "total": len(breaches),
            "by_primary_reason_code": dict(
                sorted(Counter(b["primary_reason_code"] for b in breaches).items())
            ),
            "max_excess_kw": max((b["excess_kw"] for b in breaches), default=0.0),
        },
        "requests": {
            "total": len(run.requests),
            "by_kind_and_status": dict(sorted(request_outcomes.items())),
        },
    }
    artifacts.write_json(out / "summary.json", doc)
    if chart:
        artifacts.render_chart(
            out / "chart.png",
            lines,
            title=microgrid.microgrid_id,
            nodes=_breadth_first(run.nodes),
            start=run.clock.start,
            timezone_name=microgrid.depot.timezone,
        )
    return doc
