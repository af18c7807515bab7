import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection, connections

from microgrid.capabilities.api.serializers import bind_input
from microgrid.limits.api.serializers import policy_input


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "real row locks and concurrency: run with DATABASE_URL=postgres://... (.ci/run does)"
        )


def run_concurrently(count: int, work: Callable[[int], object]) -> list[object]:
    """Start `count` threads at the same instant (a barrier); each gets its own connection."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # the caller inspects what each thread got
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


# Filled by tests/reliability/test_schemathesis.py; reported at the end of the run.
SCHEMATHESIS_STATS = {"requests": 0, "failures": 0, "seconds": 0.0, "statuses": Counter()}


def pytest_terminal_summary(terminalreporter):
    if SCHEMATHESIS_STATS["requests"]:
        terminalreporter.write_line(
            f"schemathesis: {SCHEMATHESIS_STATS['requests']} requests, "
            f"{SCHEMATHESIS_STATS['failures']} failures "
            f"({SCHEMATHESIS_STATS['seconds']:.0f} s in requests)"
        )
        statuses = sorted(SCHEMATHESIS_STATS["statuses"].items())
        terminalreporter.write_line(
            "schemathesis statuses: " + ", ".join(f"{code}: {n}" for code, n in statuses)
        )


PEER_TOKEN = "reliability-peer-token-0123456789"


@dataclass
class Depot:
    microgrid: object
    peer: object
    keys: dict[str, str]  # role -> API token key
    cycle_id: str
    breach_id: str

    def client(self, role: str | None):
        """A DRF client with `role`'s token ("peer": the OSCP peer's; None: no token)."""
        from rest_framework.test import APIClient

        client = APIClient()
        if role is not None:
            key = PEER_TOKEN if role == "peer" else self.keys[role]
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client


@pytest.fixture
def depot(microgrid, make_user):
    """MG.NORTH-1 with one of everything: a Node Limit (LP-1), an OSCP peer whose group GRP-N
    is bound to the whole microgrid and an envelope from it active now (OE-1), a capability
    binding (CB-1 on grp-b, source plc-b), a legacy circuit aliased to sb-1 (CIR-101), a cycle
    and an open breach (a grid meter above the rating), and tokens for every role."""
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from legacy_circuit.models import CircuitAlias
    from legacy_circuit.services import circuit_alias_save, legacy_circuit_save
    from microgrid.capabilities.services import capability_binding_create
    from microgrid.common.models import ApiToken
    from microgrid.common.roles import ALL_ROLES
    from microgrid.envelopes.services import (
        oscp_group_binding_save,
        oscp_message_receive,
        oscp_peer_save,
    )
    from microgrid.limits.services import limit_policy_create
    from microgrid.telemetry.services import telemetry_ingest

    # A transactional test flushes the tables after itself, the role groups included.
    for role in ALL_ROLES:
        Group.objects.get_or_create(name=role)
    keys = {role: ApiToken.issue(user=make_user(role))[1] for role in ALL_ROLES}
    peer, _ = oscp_peer_save(name="dso-rel", token=PEER_TOKEN, heartbeat_interval_s=60)
    oscp_group_binding_save(
        peer=peer, group_id="GRP-N", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    now = timezone.now()
    block = {
        "capacity": 600,
        "phase": "ALL",
        "unit": "KW",
        "start_time": (now - timedelta(minutes=1)).isoformat(),
        "end_time": (now + timedelta(hours=2)).isoformat(),
    }
    oscp_message_receive(
        peer=peer,
        message_type="UPDATE_GROUP_CAPACITY_FORECAST",
        request_id="setup-1",
        body=json.dumps({"group_id": "GRP-N", "type": "CONSUMPTION", "forecasted_blocks": [block]}),
        now=now,
    )
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "sb-1", "limit_kw": 350})
    )
    capability_binding_create(
        microgrid=microgrid,
        **bind_input(
            {
                "capability_type": "LOAD_MANAGEMENT",
                "scope": {"type": "NODE", "node_id": "grp-b"},
                "source_device_id": "plc-b",
            }
        ),
    )
    circuit, _ = legacy_circuit_save(
        circuit_id="CIR-101", name="Board 1", configured_capacity_kw=350, depot=microgrid.depot
    )
    circuit_alias_save(
        alias=CircuitAlias(circuit=circuit, microgrid=microgrid, scope_type="NODE", node_id="sb-1")
    )
    telemetry_ingest(
        microgrid=microgrid,
        readings=[
            {"asset_id": "M-GRID", "power_kw": 900, "observed_at": now.isoformat()},
            {
                "asset_id": "CH-01",
                "power_kw": 50,
                "observed_at": now.isoformat(),
                "connected": True,
                "requested_kw": 150,
            },
        ],
    )
    made = Depot(microgrid=microgrid, peer=peer, keys=keys, cycle_id="", breach_id="")
    answer = made.client("support").post(
        f"/api/microgrids/{microgrid.microgrid_id}/rebalance/", {}, format="json"
    )
    assert answer.status_code == 200, answer.content
    made.cycle_id = answer.json()["cycle_id"]
    made.breach_id = answer.json()["breaches"][0]["breach_id"]
    return made


def row_counts() -> dict[str, int]:
    """Rows of every product table (history tables included), the legacy audit aside: one
    query."""
    from django.apps import apps

    from microgrid.common.apps import PRODUCT_APPS

    tables = sorted(
        model._meta.db_table
        for label in PRODUCT_APPS
        for model in apps.get_app_config(label).get_models()
        if model._meta.label not in UNCOUNTED
    )
    quote = connection.ops.quote_name
    sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {quote(t)})" for t in tables)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return dict(zip(tables, cursor.fetchone(), strict=True))


# The legacy audit writes one row per call whatever the answer (spec 5): tests count it apart.
UNCOUNTED = {"legacy_circuit.AliasUsage"}
