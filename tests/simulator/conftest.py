"""Running scenarios in tests: artifacts as Python objects, and one run per profile per session.

The simulator dispatches setpoints after each commit, as production does, so
tests that run it use the transactional database (`transactional_db`).
A profile's run is cached for the session (the artifacts are files; the
database is flushed after each transactional test anyway), so several tests
can read one run's artifacts without running it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.urls import Resolver404, resolve

PROFILES = Path(__file__).resolve().parents[2] / "simulator" / "profiles"
ARTIFACTS = ("cycles.jsonl", "breaches.jsonl", "requests.jsonl", "summary.json")


@dataclass
class Run:
    out: Path
    profile: dict

    def lines(self, name: str) -> list[dict]:
        return [json.loads(line) for line in (self.out / name).read_text().splitlines()]

    @property
    def cycles(self) -> list[dict]:
        return self.lines("cycles.jsonl")

    @property
    def breaches(self) -> list[dict]:
        return self.lines("breaches.jsonl")

    @property
    def requests(self) -> list[dict]:
        return self.lines("requests.jsonl")

    @property
    def summary(self) -> dict:
        return json.loads((self.out / "summary.json").read_text())

    def bytes(self) -> dict[str, bytes]:
        return {name: (self.out / name).read_bytes() for name in ARTIFACTS}


def load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name).read_text())


def simulate(profile: dict, out: Path, *args: str) -> Run:
    """Run a profile (a dict, written to a file first) through the management command."""
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    # The test database: the command's default scratch database is tested in test_simulate.
    call_command("simulate", str(path), "--out", str(out), "--database", "current", *args)
    return Run(out, profile)


_cache: dict[str, Run] = {}


@pytest.fixture
def profile_run(transactional_db, tmp_path_factory):
    """profile_run(file name) -> the Run of that profile, run once per test session."""

    def get(name: str, *args: str) -> Run:
        key = " ".join((name, *args))
        if key not in _cache:
            out = tmp_path_factory.mktemp("sim") / name.replace(".yaml", "")
            _cache[key] = simulate(load(name), out, *args)
        return _cache[key]

    return get


def route_exists(path: str) -> bool:
    """True when a real view (not the API's catch-all 404) answers `path`."""
    from microgrid.common.api import api_404

    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.func is not api_404


def sections_missing(*names: str) -> list[str]:
    from simulator.loader import known_sections

    return [n for n in names if n not in known_sections()]
