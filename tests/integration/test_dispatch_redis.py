"""Deliveries on real Celery workers and the real Redis: a slow receiver holds up nobody
else, and a worker killed mid-delivery leaves its deliveries to be sent again, once.

Runs in .ci/run (CELERY_BROKER_URL=redis://..., DATABASE_URL=postgres://...). A worker
with beat serves the default queue (cycles, the dispatch sweep); a threads-pool worker
serves the `dispatch` queue, as `make run` and docs/operations.md run them.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from balancing.models import Cycle
from dispatch.models import DeliveryBatch
from dispatch.services import batch_id_of, dispatch_config_set
from microgrid.telemetry.services import telemetry_ingest
from tests.dispatch.conftest import SECRET
from tests.integration.test_celery_redis import ROOT, _database_url

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# A send may take 10 s; a claim older than 12 s is a dead worker's.
ENV = {"DISPATCH_WEBHOOK_TIMEOUT_S": "10", "DISPATCH_LEASE_S": "12", "DISPATCH_SWEEP_S": "1"}


def _start(tmp_path, name, *args):
    env = {
        **os.environ,
        **ENV,
        "DATABASE_URL": _database_url(),
        "MICROGRID_VAR_DIR": str(tmp_path),
    }
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "microgrid", "worker", "--loglevel=INFO"]
        + ["-n", f"{name}@%h", *args],
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 (lives as long as the worker)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


def _stop(proc, sig=signal.SIGTERM):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _dispatch_worker(tmp_path, name):
    return _start(tmp_path, name, "-Q", "dispatch", "--pool", "threads", "--concurrency", "4")


@pytest.fixture
def workers(tmp_path):
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs CELERY_BROKER_URL=redis://... (run by .ci/run)")
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL=postgres://... so the workers share the test database")
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    started = [
        _start(
            tmp_path,
            "main",
            "-B",
            "-Q",
            "celery",
            "--concurrency",
            "1",
            "-s",
            str(tmp_path / "beat"),
        ),
        _dispatch_worker(tmp_path, "dispatch1"),
    ]
    yield started
    for proc, _ in started:
        _stop(proc)


def _wait_for(predicate, timeout_s, logs=()):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("\n\n".join(log.read_text()[-3000:] for _, log in logs))


def _second_microgrid(small_topology):
    from microgrid.topology.services import microgrid_create, topology_replace

    mg = microgrid_create(
        microgrid_id="MG.SOUTH-1",
        name="South",
        depot={"depot_id": "DEPOT-S", "name": "South", "timezone": "UTC"},
    )
    topology_replace(
        microgrid=mg, base_version=0, nodes=small_topology["nodes"], assets=small_topology["assets"]
    )
    return mg


def _feed(mg):
    from django.utils import timezone

    now = timezone.now()
    telemetry_ingest(
        microgrid=mg,
        now=now,
        readings=[
            {
                "asset_id": c,
                "power_kw": 0,
                "observed_at": now.isoformat(),
                "connected": True,
                "requested_kw": 100,
            }
            for c in ("CH-01", "CH-02", "CH-03")
        ],
    )


def _statuses(mg):
    return set(DeliveryBatch.objects.filter(microgrid=mg).values_list("status", flat=True))


def test_a_slow_receiver_holds_up_no_other_microgrid_and_a_killed_worker_sends_again_once(
    workers, tmp_path, microgrid, small_topology, receiver_factory
):
    from balancing.tasks import run_cycle

    slow = receiver_factory(delay_s=300)  # answers only when the test lets it
    quick = receiver_factory()
    south = _second_microgrid(small_topology)
    from django.utils import timezone

    from balancing.models import CycleSchedule
    from microgrid.topology.models import Microgrid

    # No scheduled cycle may interleave: only the two cycles the test asks for run.
    Microgrid.objects.update(cycle_interval_s=3600)
    for mg in (microgrid, south):
        CycleSchedule.objects.create(microgrid=mg, last_enqueued_at=timezone.now())
    for mg, rcv in ((microgrid, slow), (south, quick)):
        dispatch_config_set(microgrid=mg, webhook_url=rcv.url, webhook_secret=SECRET)
        _feed(mg)
    run_cycle.delay(microgrid.microgrid_id, {"type": "API"})
    _wait_for(lambda: len(slow.received) == 1, 60, workers)
    # North's receiver is holding its request; South's cycle and delivery go through.
    run_cycle.delay(south.microgrid_id, {"type": "API"})
    _wait_for(lambda: _statuses(south) == {"ACCEPTED"}, 60, workers)
    assert _statuses(microgrid) == {"SENT"}
    assert len(quick.received) == 1 and quick.received[0].signature_ok

    # The dispatch worker dies while North's request is still open.
    dispatch_proc, _ = workers[1]
    _stop(dispatch_proc, signal.SIGKILL)
    slow.delay_s = 0
    slow.release.set()
    workers.append(_dispatch_worker(tmp_path, "dispatch2"))
    _wait_for(lambda: _statuses(microgrid) == {"ACCEPTED"}, 90, workers)
    cycle = Cycle.objects.get(microgrid=microgrid)
    ids = [r.headers["X-Microgrid-Delivery"] for r in slow.received]
    # Sent again exactly once, as the same message: the receiver can de-duplicate it.
    assert ids == [batch_id_of(cycle.cycle_id, "WEBHOOK")] * 2
    assert {r.headers["Idempotency-Key"] for r in slow.received} == {cycle.cycle_id}
    assert set(
        DeliveryBatch.objects.filter(microgrid=microgrid).values_list("attempts", flat=True)
    ) == {2}
