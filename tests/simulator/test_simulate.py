"""`manage.py simulate`: determinism, order independence, requests, feedback, refusals."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from balancing.models import Cycle
from simulator.runner import simulate as run_simulation
from tests.simulator.conftest import PROFILES, load, simulate

ROOT = Path(__file__).resolve().parents[2]


def small_profile(**scenario) -> dict:
    """One bay of two chargers under a 60 kW group; the scenario's fields are given."""
    return {
        "depot": {"depot_id": "DEPOT-SMALL", "name": "Small depot", "timezone": "Europe/Amsterdam"},
        "microgrid": {
            "microgrid_id": "MG.SMALL-1",
            "name": "Small microgrid",
            "telemetry_stale_after_s": 60,
            "cycle_interval_s": 15,
        },
        "nodes": [
            {
                "node_id": "grid",
                "parent_id": None,
                "kind": "GRID_CONNECTION",
                "name": "Grid",
                "physical_rating_kw": 200,
            },
            {
                "node_id": "grp-a",
                "parent_id": "grid",
                "kind": "CHARGER_GROUP",
                "name": "Bay A",
                "physical_rating_kw": 60,
            },
        ],
        "assets": [
            {
                "asset_id": "CH-01",
                "node_id": "grp-a",
                "kind": "CHARGER",
                "name": "Charger 1",
                "max_power_kw": 50,
                "min_power_kw": 4.1,
                "failsafe_power_kw": 4.1,
            },
            {
                "asset_id": "CH-02",
                "node_id": "grp-a",
                "kind": "CHARGER",
                "name": "Charger 2",
                "max_power_kw": 50,
                "min_power_kw": 4.1,
                "failsafe_power_kw": 4.1,
            },
        ],
        "scenario": {"seed": 1, "start": "2026-03-02T10:00:00+01:00", **scenario},
    }


# ---- determinism ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_same_profile_and_seed_give_byte_identical_artifacts_on_the_same_database(tmp_path):
    profile = load("degraded_telemetry.yaml")
    first = simulate(profile, tmp_path / "first")
    second = simulate(profile, tmp_path / "second")
    assert first.bytes() == second.bytes()
    # The database held the first run when the second started: it was reset, not added to.
    assert Cycle.objects.count() == len(second.cycles)
    # No timestamps in what the cycles, breaches and requests say: seconds from the start.
    text = b"".join(v for k, v in first.bytes().items() if k.endswith(".jsonl")).decode()
    assert "2026-" not in text


@pytest.mark.django_db(transaction=True)
def test_shuffled_nodes_and_assets_give_the_same_reason_codes(tmp_path, profile_run):
    original = profile_run("degraded_telemetry.yaml")
    shuffled = load("degraded_telemetry.yaml")
    rng = random.Random(2024)
    rng.shuffle(shuffled["nodes"])
    rng.shuffle(shuffled["assets"])
    assert [n["node_id"] for n in shuffled["nodes"]] != [
        n["node_id"] for n in original.profile["nodes"]
    ]
    run = simulate(shuffled, tmp_path / "shuffled")

    def codes(r):
        return [
            (
                c["t_s"],
                c["reason_codes"],
                [(n["node_id"], n["reason_codes"]) for n in c["nodes"]],
                [(ch["asset_id"], ch["reason_codes"]) for ch in c["chargers"]],
            )
            for c in r.cycles
        ]

    assert codes(run) == codes(original)
    # Nothing else depends on the order either.
    assert run.bytes() == original.bytes()


@pytest.mark.django_db(transaction=True)
def test_another_seed_gives_another_run_and_says_so(tmp_path, profile_run):
    original = profile_run("degraded_telemetry.yaml")
    other = simulate(load("degraded_telemetry.yaml"), tmp_path / "seed4", "--seed", "4")
    assert other.summary["seed"] == 4 and original.summary["seed"] == 3
    assert other.bytes()["cycles.jsonl"] != original.bytes()["cycles.jsonl"]


# ---- requests and the simulated chargers ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rebalance_request_runs_between_steps_and_is_answered_with_its_cycle(tmp_path):
    profile = small_profile(
        duration_s=600,
        step_s=120,
        sessions=[{"asset_id": "CH-01", "arrive_s": 0, "depart_s": 1000, "energy_kwh": 80}],
        requests=[
            {"at_s": 150, "kind": "REBALANCE", "scope": {"type": "NODE", "node_id": "grp-a"}},
            {"at_s": 240, "kind": "REBALANCE"},
        ],
    )
    run = simulate(profile, tmp_path / "run")
    first, second = run.requests
    assert (first["t_s"], first["status"], first["method"]) == (150, 200, "POST")
    assert first["path"] == "/api/microgrids/MG.SMALL-1/rebalance/"
    assert first["sent"] == {"scope": {"type": "NODE", "node_id": "grp-a"}}
    assert second["sent"] == {} and second["answer"]["scope"] == {"type": "MICROGRID"}
    answer = first["answer"]
    assert (answer["trigger"], answer["started_at_s"]) == ({"type": "API"}, 150.0)
    # An API cycle's setpoints last 3 x the microgrid's cycle interval, the scheduled ones 3 steps.
    assert answer["chargers"][0]["valid_until_s"] == 150 + 3 * 15
    api = [c for c in run.cycles if c["trigger"]["type"] == "API"]
    assert [(c["t_s"], c["scope"]["type"]) for c in api] == [(150.0, "NODE"), (240.0, "MICROGRID")]
    scheduled = [c for c in run.cycles if c["trigger"]["type"] == "SIMULATOR"]
    assert [c["t_s"] for c in scheduled] == [0, 120, 240, 360, 480]
    assert all(c["chargers"][0]["valid_until_s"] == c["t_s"] + 360 for c in scheduled)
    # Ordered by time, the request at a step's time before that step's cycle.
    assert [c["seq"] for c in run.cycles] == list(range(1, 8))
    assert [c["trigger"]["type"] for c in run.cycles[2:5]] == ["API", "API", "SIMULATOR"]
    assert run.summary["requests"]["by_kind_and_status"] == {"REBALANCE 200": 2}


@pytest.mark.django_db(transaction=True)
def test_the_simulated_chargers_draw_what_the_cycles_allocate(tmp_path):
    profile = small_profile(
        duration_s=900,
        step_s=60,
        sessions=[
            {"asset_id": "CH-01", "arrive_s": 0, "depart_s": 5000, "energy_kwh": 200},
            {
                "asset_id": "CH-02",
                "arrive_s": 300,
                "depart_s": 600,
                "energy_kwh": 100,
                "max_power_kw": 22,
            },
        ],
    )
    run = simulate(profile, tmp_path / "run")
    allocated = {
        a: [
            next(c["allocated_kw"] for c in cycle["chargers"] if c["asset_id"] == a)
            for cycle in run.cycles
        ]
        for a in ("CH-01", "CH-02")
    }
    # CH-01 alone takes its 50 kW; from 300 s the 60 kW bay is shared (CH-02's EV asks for 22).
    assert allocated["CH-01"][:5] == [50.0] * 5
    assert allocated["CH-01"][5:10] == [38.0] * 5 and allocated["CH-02"][5:10] == [22.0] * 5
    assert allocated["CH-02"][10:] == [0.0] * 5  # gone at 600 s
    # Every kWh delivered is an allocation held for one step: the EVs drew their setpoints.
    steps = sum(allocated["CH-01"]) * 60 / 3600 + sum(allocated["CH-02"]) * 60 / 3600
    assert run.summary["energy_delivered_kwh"] == pytest.approx(steps, abs=1e-3)
    short = run.summary["sessions"]["left_short_sessions"]
    assert [(s["asset_id"], s["delivered_kwh"], s["short_kwh"]) for s in short] == [
        ("CH-02", pytest.approx(1.833, abs=1e-3), pytest.approx(98.167, abs=1e-3))
    ]
    assert run.summary["sessions"]["still_connected"] == 1


# ---- refusals ---------------------------------------------------------------------------------


def test_an_invalid_scenario_exits_2_listing_every_problem_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (PROFILES / "degraded_telemetry.yaml").read_text()
    text = text.replace("duration_s: 3600", "duration_s: 3600\n  surprise: 1")
    text = text.replace("{asset_id: CH-03, arrive_s: 300", "{asset_id: CH-99, arrive_s: 300")
    text = text.replace('peak_at: "10:00"', "peak_at: 10:00")
    text = text.replace("{target: grp-b, kind: STALE", "{target: grp-z, kind: STALE")
    text = text.replace(
        "{target: SHOP, kind: STALE, from_s: 3300", "{target: SHOP, kind: LATE, from_s: 3300"
    )
    text += (
        "  requests:\n"
        "    - {at_s: 100, kind: LEGACY_REBALANCE, circuit_id: CIR-9}\n"
        "    - {at_s: 200, kind: REBALANCE, scope: {type: NODE, node_id: nowhere}}\n"
        "    - {at_s: 99999, kind: TELEPORT}\n"
    )
    bad.write_text(text)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "manage.py", "simulate", str(bad), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
            "PATH": "/usr/bin:/bin",
            "MICROGRID_VAR_DIR": str(tmp_path),
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
        },
    )
    assert result.returncode == 2, result.stderr
    for expected in (
        "PROFILE_INVALID field=scenario.surprise",
        "ASSET_NOT_FOUND asset_id=CH-99 field=scenario.sessions[2].asset_id",
        "FIELD_INVALID field=scenario.loads[1].peak_at",
        "ASSET_NOT_FOUND asset_id=grp-z field=scenario.degradations[2].target",
        "FIELD_INVALID field=scenario.degradations[4].kind",
        "CIRCUIT_NOT_FOUND field=scenario.requests[0].circuit_id",
        "NODE_NOT_FOUND node_id=nowhere field=scenario.requests[1].scope.node_id",
        "FIELD_INVALID field=scenario.requests[2].kind",
        "FIELD_INVALID field=scenario.requests[2].at_s",
    ):
        assert expected in result.stderr, expected
    assert not out.exists()


@pytest.mark.django_db
def test_a_profile_without_a_scenario_cannot_be_simulated(tmp_path, capsys):
    profile = small_profile(duration_s=60, step_s=60)
    del profile["scenario"]
    with pytest.raises(SystemExit) as exit_info:
        simulate(profile, tmp_path / "run")
    assert exit_info.value.code == 2
    assert "PROFILE_INVALID field=scenario" in capsys.readouterr().err
    assert not Cycle.objects.exists()


@pytest.mark.django_db
def test_the_simulator_refuses_to_run_inside_a_transaction(tmp_path):
    # Setpoints are dispatched after each commit; inside a test transaction none would be.
    with pytest.raises(RuntimeError, match="outside any transaction"):
        run_simulation(small_profile(duration_s=60, step_s=60), out_dir=tmp_path)


@pytest.mark.django_db
def test_load_profile_accepts_a_scenario_and_runs_nothing(capsys):
    call_command("load_profile", str(PROFILES / "demo_depot.yaml"))
    assert "MG.DEMO-1 created" in capsys.readouterr().out
    assert not Cycle.objects.exists()


def test_the_cli_runs_in_its_own_scratch_database_by_default(tmp_path):
    """`simulate` never touches the configured database (the live demo's): a scheduled cycle
    or a worker there cannot slip into a run, and the run leaves nothing behind there."""
    live = tmp_path / "live.sqlite3"
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "simulate",
            "simulator/profiles/degraded_telemetry.yaml",
            "--out",
            str(out),
            "--no-chart",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            "SQLITE_PATH": str(live),
            "PATH": "/usr/bin:/bin",
            "MICROGRID_VAR_DIR": str(tmp_path / "var"),
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
        },
    )
    assert result.returncode == 0, result.stderr
    assert "scratch database" in result.stderr and str(tmp_path / "var") in result.stderr
    assert (out / "summary.json").exists()
    assert not live.exists() or live.stat().st_size == 0  # the configured database: untouched
    scratch = tmp_path / "var" / "sim" / "scratch"
    assert [p.name for p in scratch.iterdir() if p.name.startswith("run-")] == []


@pytest.mark.django_db(transaction=True)
def test_artifacts_are_byte_identical_when_cycles_were_compacted_before_they_are_written(
    tmp_path, monkeypatch
):
    """Cycles moved into blocks (issue 18) are written as their rows were. A simulated
    microgrid's cycles each have a delivery batch (the simulator's channel), which keeps them
    rows; the test drops the batches before compacting (the artifacts do not read them), so
    that the writer reads its cycles from blocks."""
    from datetime import timedelta

    from balancing.lifecycle import cycle_aggregate, cycle_compact
    from balancing.models import CycleBlock
    from dispatch.models import Delivery, DeliveryAttempt, DeliveryBatch
    from simulator import runner

    profile = small_profile(
        duration_s=2400,
        step_s=60,
        sessions=[{"asset_id": "CH-01", "arrive_s": 0, "depart_s": 3000, "energy_kwh": 200}],
    )
    plain = simulate(profile, tmp_path / "rows")
    write = runner._write

    def compact_then_write(out, scenario, prof, microgrid, run, *, chart):
        for model in (DeliveryAttempt, Delivery, DeliveryBatch):
            model.objects.filter(microgrid=microgrid).delete()
        last = Cycle.objects.filter(microgrid=microgrid).order_by("-seq").first()
        now = last.started_at + timedelta(hours=1)
        cycle_aggregate(now=now, limit=100_000)
        assert cycle_compact(now=now, limit=100_000) >= 15
        return write(out, scenario, prof, microgrid, run, chart=chart)

    monkeypatch.setattr(runner, "_write", compact_then_write)
    compacted = simulate(profile, tmp_path / "blocks")
    assert CycleBlock.objects.exists()
    assert compacted.bytes() == plain.bytes()
