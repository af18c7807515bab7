"""The scenario section is checked whole, against the profile, without touching the database."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml

from simulator.calls import prepare
from simulator.scenario import parse_scenario
from tests.simulator.conftest import load


def problems(profile: dict) -> list[tuple[str, str | None]]:
    scenario, errors = parse_scenario(profile["scenario"], profile)
    assert (scenario is None) == bool(errors)
    return [(e.code, e.field) for e in errors]


def test_the_shipped_degraded_scenario_parses_with_node_targets_expanded():
    profile = load("degraded_telemetry.yaml")
    scenario, errors = parse_scenario(profile["scenario"], profile)
    assert errors == []
    assert scenario.seed == 3 and list(scenario.step_times())[:3] == [0, 60, 120]
    by_target = {d.target: d for d in scenario.degradations}
    assert by_target["grp-b"].asset_ids == ("CH-04", "CH-05", "CH-06")
    assert by_target["sb-2"].asset_ids == ("CH-07", "CH-08", "SHOP")
    assert by_target["SITE"].covers(600) and not by_target["SITE"].covers(1200)


def test_every_problem_is_reported_at_once():
    profile = load("degraded_telemetry.yaml")
    s = profile["scenario"]
    # CH-01 already has an EV from 0 to 7200
    s["sessions"].append({"asset_id": "CH-01", "arrive_s": 10, "depart_s": 20, "energy_kwh": 5})
    s["sessions"].append({"asset_id": "SITE", "arrive_s": 0, "depart_s": 20, "energy_kwh": 5})
    s["loads"].append({"asset_id": "CH-01", "peak_kw": 5, "peak_at": "10:00"})
    s["loads"][0]["peak_at"] = 600  # what YAML makes of an unquoted 10:00
    s["degradations"][0]["until_s"] = 100  # before from_s
    s["step_s"] = 0
    s["colour"] = "blue"
    assert sorted(problems(profile)) == [
        ("FIELD_INVALID", "scenario.degradations[0].until_s"),
        ("FIELD_INVALID", "scenario.loads[0].peak_at"),
        ("FIELD_INVALID", "scenario.loads[3].asset_id"),
        ("FIELD_INVALID", "scenario.sessions[8].arrive_s"),
        ("FIELD_INVALID", "scenario.sessions[9].asset_id"),
        ("FIELD_INVALID", "scenario.step_s"),
        ("PROFILE_INVALID", "scenario.colour"),
    ]


def test_requests_must_name_what_the_profile_has():
    profile = load("degraded_telemetry.yaml")
    profile["scenario"]["requests"] = [
        {"at_s": 10, "kind": "LEGACY_REBALANCE", "circuit_id": "CIR-1"},
        {"at_s": 10, "kind": "OSCP_HEARTBEAT", "peer": "dso", "offline_mode_at_s": 60},
        {"at_s": 10, "kind": "REBALANCE", "scope": {"type": "NODE", "node_id": "sb-9"}},
        {"at_s": 10, "kind": "REBALANCE", "scope": {"type": "ASSET", "asset_id": "CH-01"}},
        {"at_s": 10, "kind": "CAPABILITY_EVENT"},
        {"at_s": 10, "kind": "REBALANCE", "circuit_id": "CIR-1"},
    ]
    assert sorted(problems(profile)) == [
        ("CIRCUIT_NOT_FOUND", "scenario.requests[0].circuit_id"),
        ("CIRCUIT_NOT_FOUND", "scenario.requests[5].circuit_id"),
        ("FIELD_INVALID", "scenario.requests[1].peer"),
        ("FIELD_INVALID", "scenario.requests[3].scope"),
        ("FIELD_INVALID", "scenario.requests[4].body"),
        ("NODE_NOT_FOUND", "scenario.requests[2].scope.node_id"),
        ("PROFILE_INVALID", "scenario.requests[5].circuit_id"),
    ]
    profile["legacy_circuits"] = [{"circuit_id": "CIR-1"}]
    profile["oscp_peers"] = [{"name": "dso", "token": "t"}]
    profile["scenario"]["requests"] = profile["scenario"]["requests"][:2]
    assert problems(profile) == []


def test_an_unquoted_yaml_start_time_is_taken_when_it_has_an_offset():
    profile = load("degraded_telemetry.yaml")
    profile["scenario"]["start"] = yaml.safe_load("2026-03-02T09:00:00+01:00")
    scenario, errors = parse_scenario(profile["scenario"], profile)
    assert errors == [] and scenario.start == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    profile["scenario"]["start"] = "2026-03-02T09:00:00"
    assert problems(profile) == [("FIELD_INVALID", "scenario.start")]


def test_request_times_are_sent_as_timestamps():
    profile = load("envelopes.yaml")
    profile["legacy_circuits"] = []
    scenario, _ = parse_scenario(profile["scenario"], profile)
    start = scenario.start
    calls = {r.index: prepare(r, microgrid_id="MG.E", start=start) for r in scenario.requests}
    assert calls[0].body == {"offline_mode_at": "2026-03-02T14:40:00+01:00"}
    assert calls[0].path == "/oscp/fp/2.0/heartbeat" and calls[0].caller == "peer:dso-north"
    assert calls[2].body["forecasted_blocks"] == [
        {
            "capacity": 400000,
            "phase": "ALL",
            "unit": "W",
            "start_time": "2026-03-02T14:10:00+01:00",
            "end_time": "2026-03-02T14:30:00+01:00",
        }
    ]
    assert calls[5].path == "/api/microgrids/MG.E/capabilities/events/"
    assert calls[5].body["observed_at"] == "2026-03-02T14:10:00+01:00"
    assert calls[5].caller == "integration"
