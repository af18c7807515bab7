"""`manage.py bench dispatch`: what the outbox adds to a cycle, how long a webhook delivery of a
2,000-charger cycle takes, and how few setpoints a steady depot sends.

The receiver is a real HTTP server on 127.0.0.1 in this process that answers 200 at once and
measures its own time per request, so the delivery time can be stated without it.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from benchtools.benchmarks import _drop, materialise
from benchtools.synthetic import build_engine_input

SECRET = "bench-secret"


class _Receiver:
    def __init__(self) -> None:
        self.times_ms: list[float] = []
        self.sizes: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                start = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.times_ms.append((time.perf_counter() - start) * 1000.0)
                receiver.sizes.append(len(body))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stats(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 3),
        "repeat": len(samples),
    }


def bench_dispatch(*, chargers: int = 2000, repeat: int = 15, fill: int = 0) -> dict[str, Any]:
    """`fill` > 0 (PostgreSQL): first give the database a history, as a depot that has run for
    a while (`_fill`): the bench microgrid's `fill` earlier batches and 10 x `fill` batches of
    20 other microgrids."""
    from balancing.services import cycle_request, trigger_of
    from dispatch import services
    from dispatch.services import deliveries_send, dispatch_config_set

    inp = build_engine_input(chargers, chargers // 5, depth=5, seed=4)
    microgrid = materialise(inp, f"BENCH-DISPATCH-{chargers}")
    receiver = _Receiver()
    out: dict[str, Any] = {"chargers": chargers}
    try:
        dispatch_config_set(microgrid=microgrid, webhook_url=receiver.url, webhook_secret=SECRET)
        now = timezone.now()

        def cycle(at=now):
            # The send is measured on its own below: here only the cycle and its outbox.
            with transaction.atomic():
                return cycle_request(
                    microgrid=microgrid, trigger=trigger_of("API"), now=lambda: at
                ).cycle

        if fill:
            out["filled"] = _fill(microgrid, cycle, history=fill)

        # 1. What the outbox adds to the cycle: with and without dispatch's receiver,
        # alternated, wall and CPU time (this process and its PostgreSQL backend), and the
        # pieces: the write in the transaction, and the send asked for on commit.
        # Three times as many pairs as other repeats: a difference of a few milliseconds
        # between two ~100 ms figures needs them on a shared machine.
        out["write"] = _outbox_cost(cycle, 3 * repeat)

        # 2. One webhook delivery of a whole cycle's setpoints (every one changed).
        send_ms: list[float] = []
        receiver.times_ms.clear()
        # The bench sends itself: no worker may send the cycle's deliveries first (with an
        # eager or fast worker it would, and the bench would time an empty send).
        enqueue = services.enqueue_send
        services.enqueue_send = lambda microgrid_id: False
        try:
            sends = _sends(cycle, microgrid, deliveries_send, repeat, send_ms)
        finally:
            services.enqueue_send = enqueue
        sent = sends[-1]
        own = _stats(send_ms)
        theirs = _stats(receiver.times_ms[-repeat:])
        out["webhook"] = {
            "setpoints": sent,
            "body_bytes": receiver.sizes[-1],
            "send": own,
            "receiver": theirs,
            "send_minus_receiver_median_ms": round(own["median_ms"] - theirs["median_ms"], 3),
        }

        # 3. Steady state: demand unchanged, cycles every interval on a moving clock.
        out["steady"] = [
            _steady(microgrid, cycle, interval_s=interval, refresh_s=refresh, cycles=12)
            for interval, refresh in ((15, 30), (15, 10), (60, 30), (300, 30))
        ]
    finally:
        receiver.close()
        if fill:
            _unfill()
        _drop(microgrid)
    return out


_FILL_PREFIX = "BENCH-DISPATCH-FILL-"


def _fill(microgrid, cycle, *, history: int, others: int = 20) -> dict[str, Any]:
    """A database that holds many cycles' deliveries: the bench microgrid's `history` earlier
    batches (copies of a real 2,000-charger batch, seq 1..history: 90 % ACCEPTED, 8 %
    SUPERSEDED unsent, 2 % EXPIRED after a send, as a day of a depot whose receiver mostly
    answers) and `others` microgrids with `history` / 2 batches each (small targets), batch
    ids as random as real ones. Then ANALYZE, as autovacuum would have. PostgreSQL only."""
    from balancing.models import Cycle
    from dispatch.models import DeliveryBatch
    from microgrid.topology.services import microgrid_create

    if connection.vendor != "postgresql":
        return {"skipped": "PostgreSQL only"}
    started = time.perf_counter()
    _unfill()  # what an interrupted run left
    first = cycle()
    # The real cycles continue after the history.
    Cycle.objects.filter(pk=first.pk).update(seq=history + 1)
    source = DeliveryBatch.objects.get(cycle=first).pk
    table = DeliveryBatch._meta.db_table
    status = "CASE WHEN mod(g, 50) = 0 THEN 'EXPIRED' WHEN mod(g, 12) = 0 THEN 'SUPERSEDED' ELSE 'ACCEPTED' END"
    attempts = "CASE WHEN mod(g, 12) = 0 AND mod(g, 50) <> 0 THEN 0 ELSE 1 END"
    insert = (
        f'INSERT INTO {table} (batch_id, microgrid_id, cycle_id, seq, channel, targets, "full", '
        f"sent_count, unchanged_count, valid_until, status, attempts, claim, claimed_at, "
        f"answered_at, last_error, created_at) "
        f"SELECT 'fill' || md5(%s || ':' || g::text), %s, cycle_id, g, channel, {{targets}}, \"full\", "
        f"sent_count, unchanged_count, valid_until - (%s - g) * interval '15 seconds', "
        f"{status}, {attempts}, '', NULL, NULL, '', "
        f"created_at - (%s - g) * interval '15 seconds' "
        f"FROM {table}, generate_series(1, %s) AS g WHERE id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            insert.format(targets="targets"),
            [microgrid.microgrid_id, microgrid.pk, history + 1, history + 1, history, source],
        )
        small = '{"ids":[],"kw":[],"send":"","budgets":[]}'
        for i in range(others):
            other = microgrid_create(
                microgrid_id=f"{_FILL_PREFIX}{i}",
                name=f"{_FILL_PREFIX}{i}",
                depot={"depot_id": f"D-{_FILL_PREFIX}{i}", "name": "fill", "timezone": "UTC"},
            )
            cursor.execute(
                insert.format(targets="%s"),
                [other.microgrid_id, other.pk, small, history, history, history // 2, source],
            )
        cursor.execute(f"ANALYZE {table}")
        cursor.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
        rows, size = cursor.fetchone()
    return {
        "history": history,
        "other_microgrids": others,
        "batches": rows,
        "table_bytes": size,
        "fill_s": round(time.perf_counter() - started, 1),
    }


def _unfill() -> None:
    from dispatch.models import DeliveryBatch
    from microgrid.topology.models import Depot, Microgrid

    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {DeliveryBatch._meta.db_table} WHERE batch_id LIKE %s", ["fill%"]
        )
    Microgrid.objects.filter(microgrid_id__startswith=_FILL_PREFIX).delete()
    Depot.objects.filter(depot_id__startswith=f"D-{_FILL_PREFIX}").delete()


class _Meter:
    """Wall time, this process's CPU time and its PostgreSQL backend's CPU time (Linux
    /proc/<pid>/schedstat, nanoseconds; None elsewhere), in milliseconds."""

    def __init__(self) -> None:
        self.path = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                path = Path(f"/proc/{cursor.fetchone()[0]}/schedstat")
            if path.exists():
                self.path = path

    def _backend_ms(self) -> float:
        if self.path is None:
            return 0.0
        try:
            return int(self.path.read_text().split()[0]) / 1e6
        except (OSError, ValueError, IndexError):
            return 0.0

    def read(self) -> tuple[float, float, float]:
        return (time.perf_counter() * 1000.0, time.process_time() * 1000.0, self._backend_ms())


def _med(samples: list[float]) -> float:
    return round(statistics.median(samples), 3) if samples else 0.0


def _outbox_cost(cycle, repeat: int, *, warmup: int = 3) -> dict[str, Any]:
    """Cycles with and without dispatch's `cycle_stored` receiver, alternated (with, without,
    then without, with: a growing database or a warming process slows both alike), each timed
    from before its transaction to after its commit, so the difference is everything the
    outbox adds, the on-commit send request included. Also the pieces: `deliveries_write`
    (in the transaction) and `enqueue_send` (on commit), each timed where it runs."""
    from balancing.signals import cycle_stored
    from dispatch import services
    from dispatch.receivers import write_deliveries

    meter = _Meter()
    pieces: dict[str, list[tuple[float, ...]]] = {"deliveries_write": [], "enqueue_send": []}
    originals = {name: getattr(services, name) for name in pieces}

    def timing(name):
        original = originals[name]

        def run(*args, **kwargs):
            before = meter.read()
            try:
                return original(*args, **kwargs)
            finally:
                after = meter.read()
                pieces[name].append(tuple(b - a for a, b in zip(before, after, strict=True)))

        return run

    runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}

    def one(with_outbox: bool, keep: bool) -> None:
        if not with_outbox:
            cycle_stored.disconnect(write_deliveries, dispatch_uid="dispatch.write_deliveries")
        try:
            # Each cycle starts from a collected heap, so that it pays for the collections its
            # own garbage triggers, not for a full one the other variant's garbage was due
            # (a full collection in this process costs more than the outbox: 20 ms and more).
            gc.collect()
            before = meter.read()
            cycle()
            after = meter.read()
        finally:
            if not with_outbox:
                cycle_stored.connect(write_deliveries, dispatch_uid="dispatch.write_deliveries")
        if keep:
            runs[with_outbox].append(tuple(b - a for a, b in zip(before, after, strict=True)))

    for name in pieces:
        setattr(services, name, timing(name))
    try:
        for i in range(warmup + repeat):
            order = (True, False) if i % 2 == 0 else (False, True)
            for with_outbox in order:
                one(with_outbox, keep=i >= warmup)
    finally:
        for name, original in originals.items():
            setattr(services, name, original)
    with_, without = runs[True], runs[False]
    out: dict[str, Any] = {"repeat": repeat, "warmup_pairs": warmup}
    for key, index in (("wall", 0), ("cpu", 1), ("db_cpu", 2)):
        a = [r[index] for r in with_]
        b = [r[index] for r in without]
        out[key] = {
            "with_median_ms": _med(a),
            "without_median_ms": _med(b),
            # Paired: each with-run against the without-run next to it.
            "added_median_ms": _med([x - y for x, y in zip(a, b, strict=True)]),
            "added_mean_ms": round(statistics.mean(a) - statistics.mean(b), 3),
        }
    for name, samples in pieces.items():
        kept = samples[-repeat:]
        out[name] = {
            "wall": _stats([s[0] for s in kept]) if kept else None,
            "cpu_median_ms": _med([s[1] for s in kept]),
            "db_cpu_median_ms": _med([s[2] for s in kept]),
        }
    out["db_cpu_measured"] = meter.path is not None
    # The CPU the outbox adds, wherever it runs (this process and its database backend).
    out["cpu_total_added_median_ms"] = round(
        out["cpu"]["added_median_ms"] + out["db_cpu"]["added_median_ms"], 3
    )
    return out


def _steady(microgrid, cycle, *, interval_s: int, refresh_s: int, cycles: int) -> dict[str, Any]:
    """Demand unchanged, one cycle per interval on a moving clock, every message accepted: the
    share of charger setpoints sent per cycle after the first, and the ones only renewed."""
    from dispatch.models import DeliveryBatch, DispatchConfig, ReceiverState
    from dispatch.services import deliveries_send
    from microgrid.telemetry.models import LatestReading
    from microgrid.topology.models import Microgrid

    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=interval_s)
    microgrid.cycle_interval_s = interval_s
    DispatchConfig.objects.filter(microgrid=microgrid).update(refresh_s=refresh_s)
    DeliveryBatch.objects.filter(microgrid=microgrid).delete()
    ReceiverState.objects.filter(microgrid=microgrid).delete()
    start = timezone.now()
    fractions, renewed, messages, statuses = [], [], [], set()
    for i in range(cycles):
        at = start + timedelta(seconds=i * interval_s)
        # The same demand, reported fresh at every cycle.
        LatestReading.objects.filter(microgrid=microgrid).update(observed_at=at)
        c = cycle(at)
        deliveries_send(microgrid_id=microgrid.microgrid_id)
        batches = list(
            DeliveryBatch.objects.filter(cycle=c).values_list(
                "sent_count", "unchanged_count", "status"
            )
        )
        sent = sum(b[0] for b in batches)
        total = sum(b[0] + b[1] for b in batches)
        statuses |= {b[2] for b in batches}
        if i > 0:  # the first cycle sends everything
            fractions.append(sent / total if total else 0.0)
            renewed.append(sum(b[1] for b in batches))
            messages.append(len(batches))
    return {
        "interval_s": interval_s,
        "valid_for_s": 3 * interval_s,
        "refresh_s": refresh_s,
        "deadband_kw": 0.5,
        "cycles": cycles,
        "sent_fraction_mean": round(statistics.mean(fractions), 4),
        "sent_fraction_per_cycle": [round(f, 4) for f in fractions],
        "renewed_per_cycle": renewed,
        "messages_per_cycle": messages,
        "batch_statuses": sorted(statuses),
    }


def _sends(cycle, microgrid, deliveries_send, repeat: int, send_ms: list[float]) -> list:
    """`repeat` cycles with every setpoint changed (nothing held by the receiver: each message
    is full), each cycle's batch sent and timed."""
    from dispatch.models import DeliveryBatch, ReceiverState
    from dispatch.packing import unpack_targets

    done = []
    for _ in range(repeat):
        DeliveryBatch.objects.filter(microgrid=microgrid).delete()
        ReceiverState.objects.filter(microgrid=microgrid).delete()
        c = cycle(timezone.now())
        start = time.perf_counter()
        sent = deliveries_send(microgrid_id=microgrid.microgrid_id)
        send_ms.append((time.perf_counter() - start) * 1000.0)
        batch = DeliveryBatch.objects.get(cycle=c)
        assert batch.status == "ACCEPTED" and batch.full, batch.status
        assert sent == batch.sent_count + len(unpack_targets(batch.targets)[1]), sent
        done.append(sent)
    return done
