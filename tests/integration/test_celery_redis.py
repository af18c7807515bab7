"""A real Celery worker with embedded beat on the real Redis runs scheduled cycles.

Runs in .ci/run with CELERY_BROKER_URL=redis://... and DATABASE_URL=postgres://...;
the worker is a separate process that reads the test database, so the data is
committed (transactional_db).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from balancing.models import Cycle

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{connection.settings_dict['NAME']}"


def start_worker(tmp_path, name: str, *, concurrency: int = 1):
    """A Celery worker with embedded beat on the test database, in its own process group;
    returns the process and its log file."""
    env = {**os.environ, "DATABASE_URL": _database_url(), "MICROGRID_VAR_DIR": str(tmp_path)}
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "microgrid",
            "worker",
            "-B",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "-s",
            str(tmp_path / f"{name}-beat"),
            "-n",
            f"{name}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 (lives as long as the worker)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


@pytest.fixture
def worker(tmp_path):
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs CELERY_BROKER_URL=redis://... (run by .ci/run)")
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL=postgres://... so the worker shares the test database")
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    proc, log = start_worker(tmp_path, "worker", concurrency=2)
    yield proc, log
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_for(predicate, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_worker_with_beat_runs_scheduled_cycles_that_never_overlap(worker, microgrid):
    from microgrid.topology.models import Microgrid

    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=2)
    proc, log = worker
    ok = _wait_for(
        lambda: Cycle.objects.filter(microgrid=microgrid, trigger_type="SCHEDULED").count() >= 3, 60
    )
    assert ok, log.read_text()[-4000:]
    cycles = list(Cycle.objects.filter(microgrid=microgrid).order_by("started_at"))
    for earlier, later in zip(cycles, cycles[1:], strict=False):
        assert earlier.completed_at <= later.started_at
    assert [c.seq for c in cycles] == list(range(1, len(cycles) + 1))


def test_tasks_enqueued_from_the_web_process_run_on_the_worker(worker, microgrid):
    from balancing.tasks import run_cycle

    run_cycle.delay("MG.NORTH-1", {"type": "ENVELOPE_CHANGE"})
    proc, log = worker
    ok = _wait_for(lambda: Cycle.objects.filter(trigger_type="ENVELOPE_CHANGE").exists(), 60)
    assert ok, log.read_text()[-4000:]
