"""Fleet-scale paths on PostgreSQL: the schedule's claim and the cycle's lock that does not wait
under real row locks (threads), and worker tasks keeping their database connection."""

import threading

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from balancing.models import CycleSchedule
from microgrid.topology.models import Depot, Microgrid
from tests.reliability.conftest import run_concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_ten_concurrent_claims_enqueue_each_of_two_hundred_microgrids_once(postgres_only):
    depots = Depot.objects.bulk_create(
        [Depot(depot_id=f"D-{i}", name=str(i), timezone="UTC") for i in range(200)]
    )
    Microgrid.objects.bulk_create(
        [Microgrid(microgrid_id=f"MG-{i:03d}", depot=d, name=str(i)) for i, d in enumerate(depots)]
    )
    now = timezone.now()
    results = run_concurrently(10, lambda i: CycleSchedule.claim_due(now))
    assert all(isinstance(r, list) for r in results), results
    claimed = [microgrid_id for r in results for microgrid_id, _ in r]
    assert sorted(claimed) == [f"MG-{i:03d}" for i in range(200)]


def test_a_cycle_lock_that_would_wait_returns_nothing_instead(postgres_only, microgrid):
    from microgrid.topology.services import lock_microgrid, try_lock_microgrid

    held = threading.Event()
    release = threading.Event()

    def holder():
        try:
            with transaction.atomic():
                lock_microgrid(microgrid)
                held.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(timeout=30)
        with transaction.atomic():
            assert try_lock_microgrid(microgrid) is None
    finally:
        release.set()
        thread.join(timeout=30)
    with transaction.atomic():
        locked = try_lock_microgrid(microgrid)
    assert locked.pk == microgrid.pk
    assert locked.depot.depot_id == "DEPOT-N"


def test_a_worker_task_closes_an_obsolete_connection_and_keeps_a_fresh_one(postgres_only):
    from types import SimpleNamespace

    from microgrid.celery import _close_old_connections

    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    connection.ensure_connection()
    connection.close_at = None  # CONN_MAX_AGE None: persistent
    _close_old_connections(task=task)
    assert connection.connection is not None
    connection.close_at = 0
    _close_old_connections(task=task)
    assert connection.connection is None
