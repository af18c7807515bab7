"""Stations tests: chargers name their station and EVSE through the topology, as in use."""

from __future__ import annotations

import pytest


def map_chargers(microgrid, mapping: dict[str, tuple[str, int] | None]) -> None:
    """Save the topology with these chargers' (station_id, evse_id) (None: off OCPP)."""
    from microgrid.topology.selectors import topology_document
    from microgrid.topology.services import topology_replace

    microgrid.refresh_from_db()
    document = topology_document(microgrid)
    for asset in document["assets"]:
        if asset["asset_id"] in mapping:
            station_evse = mapping[asset["asset_id"]]
            asset["station_id"], asset["evse_id"] = station_evse or (None, None)
    topology_replace(
        microgrid=microgrid,
        base_version=microgrid.topology_version,
        nodes=document["nodes"],
        assets=document["assets"],
    )
    microgrid.refresh_from_db()


@pytest.fixture
def mapped():
    return map_chargers


@pytest.fixture
def start_gateway(tmp_path):
    """Start real `manage.py ocpp_gateway` processes on the test database (PostgreSQL, committed
    data): `start_gateway(**env)` -> its port. Each is stopped after the test."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL=postgres://... so the gateway shares the test database")
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{connection.settings_dict['NAME']}"
    root = Path(__file__).resolve().parents[2]
    procs = []

    def start(**env: str) -> int:
        log = tmp_path / f"gateway-{len(procs)}.log"
        proc = subprocess.Popen(
            # (a free port; OCPP_TEST_GATEWAY_PORT pins one where only some ports may be used)
            [
                sys.executable,
                "manage.py",
                "ocpp_gateway",
                "--port",
                os.environ.get("OCPP_TEST_GATEWAY_PORT", "0"),
            ],
            cwd=root,
            env={**os.environ, "DATABASE_URL": url, "MICROGRID_VAR_DIR": str(tmp_path), **env},
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),  # noqa: SIM115
            text=True,
        )
        procs.append(proc)
        line = proc.stdout.readline()
        assert "listening on" in line, log.read_text()
        return int(line.split("ws://127.0.0.1:")[1].split("/")[0])

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=20)
