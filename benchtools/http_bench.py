"""`manage.py bench http`: the product measured from the outside, as users deploy it.

A gunicorn server (microgrid/gunicorn_conf.py, `WEB_CONCURRENCY` workers, 2 by
default) is started with `DEBUG=false` on 127.0.0.1 (an OS-chosen port)
against the same PostgreSQL database as this command. Its requests carry
`X-Forwarded-Proto: https` as a TLS-terminating proxy's would, so
`SECURE_SSL_REDIRECT` stays on, as in production. The client is a plain
`http.client` connection per request (gunicorn's sync workers close the
connection after each response); a request's time is from sending it until
the last byte of the answer is read.

Measured on synthetic depots (benchtools.synthetic: limits binding at several
levels, mixed priorities and minimums, site loads and PV):

- telemetry ingest: rounds of one reading per charger of a 2,000-charger /
  421-node depot, posted in batches of 500 (4 batches a round), sequentially;
  readings per second over the whole run, and the median batch;
- rebalance: `POST .../rebalance/` on that depot (the full cycle and its
  answer, the cycle document);
- topology read: `GET .../topology/` of a 500-node / 2,000-asset depot (and of
  the 421-node one).

The load average is read before and after each measurement: on a shared
2-core host it changes every figure (docs/performance.md).
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.utils import timezone

BASE_DIR = Path(settings.BASE_DIR)
PREFIX = "BENCH-HTTP"
LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def refuse_unless_postgres() -> str | None:
    if connection.vendor != "postgresql":
        return (
            "bench http measures gunicorn against PostgreSQL: set DATABASE_URL=postgres://... "
            "(a database of its own, e.g. mg_bench)"
        )
    return None


class Server:
    """gunicorn with DEBUG=false on an OS-chosen port, in its own process group."""

    def __init__(self, *, workers: int, log_path: Path) -> None:
        self.log_path = log_path
        path = os.pathsep.join(filter(None, [str(BASE_DIR), os.environ.get("PYTHONPATH")]))
        env = {
            **os.environ,
            "PYTHONPATH": path,
            "DEBUG": "false",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "WEB_BIND": "127.0.0.1:0",
            "WEB_CONCURRENCY": str(workers),
            "WEB_ACCESS_LOG": "",
        }
        env.pop("WEB_CONTROL_SOCKET", None)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:microgrid.gunicorn_conf"],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped as one group, never by name
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: see {self.log_path}")
            found = LISTENING.search(self.log_path.read_bytes())
            if found:
                port = int(found.group(1))
                if self._answers(port):
                    return port
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer within {timeout_s} s: see {self.log_path}")

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz-bench", headers={"X-Forwarded-Proto": "https"})
            conn.getresponse().read()
            conn.close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def request(
    port: int, method: str, path: str, *, token: str, body: bytes | None = None
) -> tuple[int, bytes, float]:
    """One request on a new connection: (status, body, seconds until the answer is read)."""
    headers = {
        "Authorization": f"Token {token}",
        "Host": "127.0.0.1",
        "X-Forwarded-Proto": "https",
        "Accept": "application/json",
    }
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - start
    conn.close()
    return response.status, data, elapsed


def summary(samples: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000.0 for s in samples)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
        "min_ms": round(ms[0], 2),
        "repeat": len(ms),
    }


def _token(username: str, role: str, microgrid_ids: list[str]) -> str:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from microgrid.common.models import ApiToken
    from microgrid.topology.services import microgrid_memberships_grant

    user, _ = get_user_model().objects.get_or_create(username=username)
    user.groups.add(Group.objects.get(name=role))
    microgrid_memberships_grant(user=user, microgrid_ids=microgrid_ids)
    _, key = ApiToken.issue(user=user, name="bench http")
    return key


def _meter(server: Server):
    """CPU of the gunicorn processes and of this database's PostgreSQL backends: on a shared
    host the wall time of a request depends on everyone's load, its CPU time much less."""
    from benchtools.meters import CpuMeter, database_backend_pids, group_pids

    return CpuMeter({"web": lambda: group_pids(server.proc.pid), "database": database_backend_pids})


def _cpu(meter, cpu: dict[str, float], count: int) -> dict[str, float]:
    return {
        "web_cpu_ms": round(cpu["web"] * 1000 / count, 1),
        "database_cpu_ms": round(cpu["database"] * 1000 / count, 1),
    }


def _timed(
    fn: Callable[[], tuple[int, bytes, float]],
    *,
    repeat: int,
    warmup: int,
    expect: int,
    meter=None,
) -> tuple[dict[str, Any], bytes]:
    last = b""
    for _ in range(warmup):
        status, last, _ = fn()
        if status != expect:
            raise RuntimeError(f"expected {expect}, got {status}: {last[:500]!r}")
    samples = []
    load_before = load_average()
    if meter:
        meter.start()
    for _ in range(repeat):
        status, last, elapsed = fn()
        if status != expect:
            raise RuntimeError(f"expected {expect}, got {status}: {last[:500]!r}")
        samples.append(elapsed)
    cpu = _cpu(meter, meter.stop(), repeat) if meter else {}
    return {
        **summary(samples),
        **cpu,
        "bytes": len(last),
        "load_before": load_before,
        "load_after": load_average(),
    }, last


def bench_http(
    *,
    chargers: int = 2000,
    nodes: int = 421,
    workers: int = 2,
    repeat: int = 30,
    ingest_rounds: int = 10,
    batch_size: int = 500,
    topology_size: tuple[int, int] = (1990, 500),
    log_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    from benchtools.benchmarks import materialise
    from benchtools.synthetic import build_engine_input
    from microgrid.topology.models import Asset, MicrogridNode
    from microgrid.topology.services import microgrid_delete

    log_dir = log_dir or Path(settings.VAR_DIR) / "bench"
    say(f"building a {chargers}-charger / {nodes}-node depot and a {topology_size} one...")
    inp = build_engine_input(chargers, nodes, depth=5, seed=1)
    depot = materialise(inp, f"{PREFIX}-{chargers}")
    tinp = build_engine_input(*topology_size, depth=5, seed=2)
    tdepot = materialise(tinp, f"{PREFIX}-TOPOLOGY")
    ids = [depot.microgrid_id, tdepot.microgrid_id]
    tokens = {
        "support": _token("bench-http-support", "support", ids),
        "integration": _token("bench-http-integration", "integration", ids),
        "operator": _token("bench-http-operator", "operator", ids),
    }
    out: dict[str, Any] = {
        "server": {
            "command": "gunicorn -c python:microgrid.gunicorn_conf",
            "workers": workers,
            "worker_class": "sync",
            "debug": False,
            "database": connection.vendor,
        },
        "depot": {
            "chargers": chargers,
            "nodes": MicrogridNode.objects.filter(microgrid=depot).count(),
            "assets": Asset.objects.filter(microgrid=depot).count(),
        },
        "topology_depot": {
            "nodes": MicrogridNode.objects.filter(microgrid=tdepot).count(),
            "assets": Asset.objects.filter(microgrid=tdepot).count(),
        },
    }
    server = Server(workers=workers, log_path=log_dir / "bench-http-gunicorn.log")
    try:
        say(f"gunicorn on 127.0.0.1:{server.port}, {workers} workers, DEBUG=false")
        out["ingest"] = _ingest(
            server.port,
            depot,
            inp,
            tokens["integration"],
            ingest_rounds,
            batch_size,
            _meter(server),
            senders=workers,
        )
        say(
            f"  ingest: {out['ingest']['readings_per_s']} readings/s one batch at a time, "
            f"{out['ingest']['concurrent']['readings_per_s']} readings/s from "
            f"{out['ingest']['concurrent']['senders']} senders "
            f"(batch p50 {out['ingest']['batch']['median_ms']} ms; CPU per batch: web "
            f"{out['ingest']['web_cpu_ms']} ms, database {out['ingest']['database_cpu_ms']} ms)"
        )
        base = f"/api/microgrids/{depot.microgrid_id}/"
        out["rebalance"], doc = _timed(
            lambda: request(
                server.port, "POST", base + "rebalance/", token=tokens["support"], body=b"{}"
            ),
            repeat=repeat,
            warmup=2,
            expect=200,
            meter=_meter(server),
        )
        answer = orjson.loads(doc)
        out["rebalance"]["outcome"] = answer.get("outcome")
        out["rebalance"]["chargers_in_answer"] = len(answer.get("chargers", []))
        say(
            f"  rebalance: p50 {out['rebalance']['median_ms']} ms "
            f"(CPU per request: web {out['rebalance']['web_cpu_ms']} ms, "
            f"database {out['rebalance']['database_cpu_ms']} ms)"
        )
        for key, microgrid in (("topology", tdepot), ("topology_421", depot)):
            out[key], _ = _timed(
                lambda m=microgrid: request(
                    server.port,
                    "GET",
                    f"/api/microgrids/{m.microgrid_id}/topology/",
                    token=tokens["operator"],
                ),
                repeat=repeat,
                warmup=2,
                expect=200,
                meter=_meter(server),
            )
            say(
                f"  {key}: p50 {out[key]['median_ms']} ms (CPU per request: web "
                f"{out[key]['web_cpu_ms']} ms, database {out[key]['database_cpu_ms']} ms)"
            )
    finally:
        server.stop()
        microgrid_delete(microgrid=depot)
        microgrid_delete(microgrid=tdepot)
    return out


def _ingest(
    port, depot, inp, token: str, rounds: int, batch_size: int, meter, senders: int = 2
) -> dict[str, Any]:
    """`rounds` readings of every charger, in batches of `batch_size`: first one batch after
    another (the latency of a batch), then `rounds` more from `senders` clients at once, as the
    chargers' integrations send them (the throughput the server sustains)."""
    path = f"/api/microgrids/{depot.microgrid_id}/telemetry/"
    start = timezone.now() - timedelta(seconds=2 * rounds + 10)
    bodies = []
    for r in range(2 * rounds + 1):
        at = (start + timedelta(seconds=r)).isoformat()
        readings = [
            {
                "asset_id": c.asset_id,
                "power_kw": 1.0,
                "observed_at": at,
                "connected": True,
                "requested_kw": c.requested_kw or 10.0,
            }
            for c in inp.chargers
        ]
        for i in range(0, len(readings), batch_size):
            bodies.append(orjson.dumps({"readings": readings[i : i + batch_size]}))
    per_round = -(-len(inp.chargers) // batch_size)
    warm = bodies[:per_round]
    timed_bodies = bodies[per_round : per_round * (rounds + 1)]
    parallel_bodies = bodies[per_round * (rounds + 1) :]

    def send(body) -> float:
        status, data, elapsed = request(port, "POST", path, token=token, body=body)
        if status != 202:
            raise RuntimeError(f"telemetry answered {status}: {data[:500]!r}")
        return elapsed

    for body in warm:
        send(body)
    samples = []
    load_before = load_average()
    meter.start()
    for body in timed_bodies:
        samples.append(send(body))
    cpu = _cpu(meter, meter.stop(), len(samples))
    readings = batch_size * len(samples)
    # Several senders: each takes the next batch in order (so a round's batches go out
    # together, as chargers report), until none is left.
    queue = iter(parallel_bodies)
    lock = threading.Lock()
    parallel_samples: list[float] = []

    def sender() -> None:
        while True:
            with lock:
                body = next(queue, None)
            if body is None:
                return
            elapsed = send(body)
            with lock:
                parallel_samples.append(elapsed)

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if len(parallel_samples) != len(parallel_bodies):
        raise RuntimeError("a sender failed: see the gunicorn log")
    return {
        **cpu,
        "batch_size": batch_size,
        "batches": len(samples),
        "readings": readings,
        "readings_per_s": round(readings / sum(samples)),
        "readings_per_s_at_median_batch": round(batch_size / statistics.median(samples)),
        "batch": summary(samples),
        "concurrent": {
            "senders": senders,
            "batches": len(parallel_samples),
            "readings_per_s": round(batch_size * len(parallel_samples) / wall),
            "batch": summary(parallel_samples),
        },
        "load_before": load_before,
        "load_after": load_average(),
    }
