"""`manage.py bench dispatch`: what the outbox adds to a cycle, how long a webhook delivery of a
2,000-charger cycle takes, and how few setpoints a steady depot sends.

The receiver is a real HTTP server on 127.0.0.1 in this process that answers 200 at once and
measures its own time per request, so the delivery time can be stated without it.
"""

from __future__ import annotations

import statistics
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.db import transaction
from django.utils import timezone

from benchtools.benchmarks import _drop, materialise, timed
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


def bench_dispatch(*, chargers: int = 2000, repeat: int = 15) -> dict[str, Any]:
    from balancing.services import cycle_request, trigger_of
    from balancing.signals import cycle_stored
    from dispatch import services
    from dispatch.receivers import write_deliveries
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

        # 1. What writing the deliveries adds to the cycle: the receiver timed directly, and the
        # cycle with and without the outbox.
        write_ms: list[float] = []
        original = services.deliveries_write

        def timed_write(**kwargs):
            start = time.perf_counter()
            try:
                return original(**kwargs)
            finally:
                write_ms.append((time.perf_counter() - start) * 1000.0)

        services.deliveries_write = timed_write
        try:
            with_outbox = timed(cycle, repeat=repeat)
        finally:
            services.deliveries_write = original
        cycle_stored.disconnect(write_deliveries, dispatch_uid="dispatch.write_deliveries")
        try:
            without = timed(cycle, repeat=repeat)
        finally:
            cycle_stored.connect(write_deliveries, dispatch_uid="dispatch.write_deliveries")
        out["write"] = {
            "deliveries_write": _stats(write_ms[-repeat:]),
            "cycle_with_outbox": with_outbox,
            "cycle_without_outbox": without,
            "added_median_ms": round(with_outbox["median_ms"] - without["median_ms"], 3),
        }

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
        _drop(microgrid)
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
