"""A worker killed with SIGKILL in the middle of a cycle leaves nothing partial and no lock behind.

The test holds an EXCLUSIVE lock on the cycle table, so the worker's cycle
blocks exactly at "store the cycle" with the microgrid row lock taken and
the inputs computed: mid-cycle. Then the worker is killed, the table lock
released, and a fresh worker must run the next scheduled cycle normally.
"""

import contextlib
import os
import signal

import pytest
from django.db import connection, transaction

from balancing.models import Cycle
from microgrid.topology.models import Microgrid
from tests.integration.test_celery_redis import _wait_for, start_worker

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _kill(proc) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


def _blocked_on_cycle_insert() -> bool:
    with connection.cursor() as cursor:
        # Activity statistics are a snapshot per transaction: refresh it on every poll.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def _other_backends() -> int:
    """Client backends of this database other than the test's own (the orphan, until reaped)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_worker_killed_mid_cycle_leaves_no_partial_cycle_and_no_lock(
    tmp_path, microgrid, settings
):
    if not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql":
        pytest.skip("needs Redis and PostgreSQL (run by .ci/run)")
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=2)
    proc, log = start_worker(tmp_path, "doomed")
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute('LOCK TABLE "balancing_cycle" IN EXCLUSIVE MODE')
            assert _wait_for(_blocked_on_cycle_insert, 60), "\n".join(
                line for line in log.read_text().splitlines() if "Sending due" not in line
            )[-3000:]
            _kill(proc)
        # The table lock is released: the orphaned backend finishes its INSERT, fails to
        # answer the dead worker, and rolls the whole cycle back.
        assert _wait_for(lambda: not _blocked_on_cycle_insert(), 30)
        # PostgreSQL reaps the orphaned backend (its INSERT rolled back) before we count.
        assert _wait_for(lambda: _other_backends() == 0, 30)
        assert Cycle.objects.count() == 0
        with transaction.atomic():
            Microgrid.objects.select_for_update(nowait=True).get(pk=microgrid.pk)  # not left locked
    finally:
        _kill(proc)
    fresh, fresh_log = start_worker(tmp_path, "fresh")
    try:
        assert _wait_for(lambda: Cycle.objects.filter(trigger_type="SCHEDULED").exists(), 60), (
            fresh_log.read_text()[-3000:]
        )
        assert Cycle.objects.order_by("seq").first().seq == 1
    finally:
        _kill(fresh)
