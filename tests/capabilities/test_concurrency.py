"""Competing binds and transfers at the same moment: exactly one wins (PostgreSQL row locks).

Run with DATABASE_URL=postgres://... and `-m postgres`; SQLite serialises
writers itself, so these only mean something on PostgreSQL.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from microgrid.capabilities.api.serializers import bind_input, transfer_input
from microgrid.capabilities.models import CapabilityBinding
from microgrid.capabilities.services import (
    capability_binding_create,
    capability_binding_transfer,
)
from microgrid.common.errors import DomainError
from tests.capabilities.conftest import MICROGRID, NOW, node

pytestmark = pytest.mark.postgres

THREADS = 20


@pytest.fixture
def pg(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency needs PostgreSQL: set DATABASE_URL=postgres://... and -m postgres")


def at_once(work) -> list:
    """Run work(i) in THREADS threads released together; each result or error code, in order."""
    barrier = threading.Barrier(THREADS)
    results: list = [None] * THREADS

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except DomainError as exc:
            results[i] = exc.code
        except Exception as exc:  # noqa: BLE001 - reported by the assertion, not lost in a thread
            results[i] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def active():
    return list(
        CapabilityBinding.objects.filter(active=True).values_list(
            "binding_id", "scope_type", "node_id", "source_device_id"
        )
    )


def test_twenty_competing_overlapping_binds_leave_exactly_one_active_source(pg, microgrid):
    scopes = [node("grp-a"), node("sb-1"), MICROGRID, node("grid")]

    def bind(i: int):
        outcome = capability_binding_create(
            microgrid=microgrid,
            **bind_input(
                {
                    "capability_type": "LOAD_MANAGEMENT",
                    "scope": scopes[i % len(scopes)],
                    "source_device_id": f"plc-{i}",
                }
            ),
            now=NOW,
        )
        return outcome.binding.binding_id

    results = at_once(bind)
    winners = [r for r in results if r not in ("CAPABILITY_SOURCE_CONFLICT",)]
    assert winners == ["CB-1"], results
    assert results.count("CAPABILITY_SOURCE_CONFLICT") == THREADS - 1
    assert len(active()) == 1
    assert CapabilityBinding.objects.count() == 1


def test_twenty_identical_binds_at_once_make_one_binding(pg, microgrid):
    def bind(i: int):
        outcome = capability_binding_create(
            microgrid=microgrid,
            **bind_input(
                {
                    "capability_type": "LOAD_MANAGEMENT",
                    "scope": node("grp-a"),
                    "source_device_id": "plc-a",
                }
            ),
            now=NOW,
        )
        return (outcome.binding.binding_id, outcome.created)

    results = at_once(bind)
    assert sorted(results) == [("CB-1", False)] * (THREADS - 1) + [("CB-1", True)], results
    assert active() == [("CB-1", "NODE", "grp-a", "plc-a")]


def test_twenty_transfers_from_the_same_expected_source_let_exactly_one_through(pg, microgrid):
    capability_binding_create(
        microgrid=microgrid,
        **bind_input(
            {"capability_type": "LOAD_MANAGEMENT", "scope": MICROGRID, "source_device_id": "ems"}
        ),
        now=NOW,
    )

    def transfer(i: int):
        outcome = capability_binding_transfer(
            microgrid=microgrid,
            **transfer_input(
                {
                    "capability_type": "LOAD_MANAGEMENT",
                    "scope": MICROGRID,
                    "expected_source_device_id": "ems",
                    "new_source_device_id": f"ems-{i}",
                }
            ),
            now=NOW,
        )
        return outcome.binding.source_device_id

    results = at_once(transfer)
    winners = [r for r in results if r != "CAPABILITY_TRANSFER_CONFLICT"]
    assert len(winners) == 1, results
    assert active() == [("CB-2", "MICROGRID", None, winners[0])]
    assert CapabilityBinding.objects.count() == 2
