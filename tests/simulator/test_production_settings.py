"""The simulator and the commands under production settings (DEBUG=false).

With DEBUG=false, SECURE_SSL_REDIRECT is on and ALLOWED_HOSTS names the real
hosts: the simulator's in-process requests must still be answered by the
views (not 301 to https, not 400 for an unknown host).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from microgrid.common.inprocess import InProcessClient, allowed_host

ROOT = Path(__file__).resolve().parents[2]


def test_the_in_process_host_is_one_the_deployment_allows():
    with override_settings(ALLOWED_HOSTS=["*", "grid.example.com", "localhost"]):
        assert allowed_host() == "grid.example.com"
    with override_settings(ALLOWED_HOSTS=[".example.org"]):
        assert allowed_host() == "example.org"
    with override_settings(ALLOWED_HOSTS=["*"]):
        assert allowed_host() == "testserver"


@pytest.mark.django_db
def test_in_process_calls_are_not_redirected_under_production_security_settings(make_user):
    from microgrid.common.models import ApiToken

    _, key = ApiToken.issue(user=make_user("operator"))
    with override_settings(SECURE_SSL_REDIRECT=True, ALLOWED_HOSTS=["grid.example.com"]):
        client = InProcessClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        response = client.get("/api/microgrids/")
        assert response.status_code == 200, response.content
        # A plain client is redirected: what the simulator met before.
        from rest_framework.test import APIClient

        plain = APIClient(HTTP_HOST="grid.example.com")
        assert plain.get("/api/microgrids/").status_code == 301


def _production_env(tmp_path: Path) -> dict[str, str]:
    return {
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "PATH": "/usr/bin:/bin",
        "MICROGRID_VAR_DIR": str(tmp_path),
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
        "DEBUG": "false",
        "SECRET_KEY": "production-settings-test-key-0123456789abcdefghijklmnop",
        "ALLOWED_HOSTS": "grid.example.com",
    }


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
    return result


def test_simulate_and_the_commands_work_with_debug_false(tmp_path):
    env = _production_env(tmp_path)
    _manage(env, "migrate", "--noinput", "-v0")
    _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    _manage(env, "load_profile", "simulator/profiles/demo_depot.yaml")
    # demo_users refuses by design outside DEBUG; real users get tokens from create_api_token.
    _manage(env, "create_api_token", "integration-client", "--role", "integration")
    out = tmp_path / "sim"
    _manage(
        env, "simulate", "simulator/profiles/legacy_compat.yaml", "--out", str(out), "--no-chart"
    )
    requests = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    statuses = [r["status"] for r in requests]
    assert statuses and 301 not in statuses and 400 not in statuses, statuses
    # Every call was answered by its view, with the answers the profile's comments give
    # (CIR-103's rebalance is refused 409, three TOU writes 422: see legacy_compat.yaml).
    assert all(r["answer"] is not None for r in requests)
    legacy = [r for r in requests if r["kind"] == "LEGACY_REBALANCE"]
    assert [r["status"] for r in legacy] == [200, 200, 200, 409]
    assert all(r["answer"]["cycle_id"] for r in legacy[:3])
