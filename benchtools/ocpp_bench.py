"""`manage.py bench ocpp`: one OCPP gateway process holding N connected stations, and how long
after a cycle's commit all of its setpoints are answered by them (issue 16).

The gateway is the real `manage.py ocpp_gateway` process on PostgreSQL; the stations are the
`ocpp` package's own ChargePoint classes (half OCPP 1.6J, half 2.0.1), one EVSE each, all in
this process's event loop. Measured:

- connecting: every station's WebSocket upgrade (Basic auth) and BootNotification, at most
  `CONCURRENT_HANDSHAKES` at once; then the stack level 0 failsafe profile each receives;
- memory: the gateway's resident set (VmRSS) before any station and with all connected, per
  connection;
- messages: a round of Heartbeats and a round of MeterValues (each a reading through the
  telemetry service), all stations at once, answered per second;
- cycles: the bench commits a cycle of the synthetic depot (every setpoint changed: the
  outbox's last accepted values are cleared first), and measures from the commit to the last
  station's answer to its SetChargingProfile (stack level 1), and to the moment every
  delivery of the cycle is recorded ACCEPTED in the database.
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from benchtools.benchmarks import _drop, materialise
from benchtools.synthetic import build_engine_input

PASSWORD = "bench-station-password-0123456789"
CONCURRENT_HANDSHAKES = 200
ROOT = Path(__file__).resolve().parents[1]


def refuse_unless_postgres() -> str | None:
    if connection.vendor != "postgresql":
        return (
            "bench ocpp runs the gateway process against the same database: set "
            "DATABASE_URL=postgres://... (a database of its own, e.g. mg_bench)"
        )
    return None


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pct(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "median_ms": round(statistics.median(s), 1),
        "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))], 1),
        "max_ms": round(s[-1], 1),
    }


def _setup(n: int):
    """A synthetic depot of n chargers, one station per charger (EVSE 1)."""
    from microgrid.topology.models import Asset
    from stations.models import ChargingStation
    from stations.services import _hash

    inp = build_engine_input(n, max(5, n // 5), depth=5, seed=16)
    microgrid = materialise(inp, f"BENCH-OCPP-{n}")
    chargers = list(Asset.objects.filter(microgrid=microgrid, kind="CHARGER").order_by("asset_id"))
    secret = _hash(PASSWORD, "benchsalt")  # one hash for all: the bench measures no hashing
    ids = [f"BENCH-CS-{i:05d}" for i in range(len(chargers))]
    ChargingStation.objects.filter(station_id__in=ids).delete()
    ChargingStation.objects.bulk_create(
        [ChargingStation(station_id=sid, microgrid=microgrid, password_hash=secret) for sid in ids]
    )
    # Tooling: the mapping written directly (the product sets it through the topology save).
    for asset, sid in zip(chargers, ids, strict=True):
        asset.station_id, asset.evse_id = sid, 1
    Asset.objects.bulk_update(chargers, ["station_id", "evse_id"], batch_size=1000)
    return microgrid, ids


class _Gateway:
    def __init__(self, port: int, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "ocpp_gateway", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),  # noqa: SIM115
            text=True,
        )
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.close()
            raise RuntimeError(f"the gateway did not start: {log.read_text()[-2000:]}")
        self.port = int(line.split("ws://")[1].split(":")[1].split("/")[0])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _station_classes(received: dict[str, list[tuple[int, float]]]):
    """ChargePoint classes of the `ocpp` package that answer SetChargingProfile Accepted and
    note (stack level, perf_counter) when they answer."""
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint as Cp16
    from ocpp.v16 import call_result as result16
    from ocpp.v16.enums import Action as Action16
    from ocpp.v201 import ChargePoint as Cp201
    from ocpp.v201 import call_result as result201
    from ocpp.v201.enums import Action as Action201

    # The simulated stations share this machine with the gateway: they do not validate what
    # they get (the tests' stations do), so the bench times the gateway, not them.
    class Station16(Cp16):
        @on(Action16.set_charging_profile, skip_schema_validation=True)
        def on_profile(self, connector_id, cs_charging_profiles):
            received[self.id].append((cs_charging_profiles["stack_level"], time.perf_counter()))
            return result16.SetChargingProfile(status="Accepted")

    class Station201(Cp201):
        @on(Action201.set_charging_profile, skip_schema_validation=True)
        def on_profile(self, evse_id, charging_profile):
            received[self.id].append((charging_profile["stack_level"], time.perf_counter()))
            return result201.SetChargingProfile(status="Accepted")

    return Station16, Station201


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _run(
    port: int, ids: list[str], microgrid, cycles: int, say, gateway_pid: int
) -> dict[str, Any]:
    import websockets
    from ocpp.v16 import call as call16
    from ocpp.v201 import call as call201

    received: dict[str, list[tuple[int, float]]] = {sid: [] for sid in ids}
    Station16, Station201 = _station_classes(received)
    stations: dict[str, Any] = {}
    tasks: list[asyncio.Task] = []
    sockets = []
    handshake_ms: list[float] = []
    gate = asyncio.Semaphore(CONCURRENT_HANDSHAKES)
    out: dict[str, Any] = {"stations": len(ids)}
    rss_before = _rss_kib(gateway_pid)

    async def connect(i: int, sid: str) -> None:
        v201 = i % 2 == 1
        auth = base64.b64encode(f"{sid}:{PASSWORD}".encode()).decode()
        async with gate:
            start = time.perf_counter()
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/ocpp/{sid}",
                subprotocols=["ocpp2.0.1" if v201 else "ocpp1.6"],
                additional_headers={"Authorization": f"Basic {auth}"},
                open_timeout=120,
                ping_interval=None,
            )
            cp = (Station201 if v201 else Station16)(sid, ws, response_timeout=120)
            sockets.append(ws)
            tasks.append(asyncio.create_task(cp.start()))
            stations[sid] = cp
            if v201:
                await cp.call(
                    call201.BootNotification(
                        charging_station={"model": "bench", "vendor_name": "bench"},
                        reason="PowerUp",
                    )
                )
            else:
                await cp.call(
                    call16.BootNotification(charge_point_model="bench", charge_point_vendor="bench")
                )
            handshake_ms.append((time.perf_counter() - start) * 1000.0)

    async def wait_until(predicate, timeout_s: float, step: float = 0.02) -> float | None:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if predicate():
                return time.perf_counter()
            await asyncio.sleep(step)
        return None

    try:
        start = time.perf_counter()
        await asyncio.gather(*(connect(i, sid) for i, sid in enumerate(ids)))
        connected_s = time.perf_counter() - start
        failsafe_at = await wait_until(
            lambda: all(any(lv == 0 for lv, _ in received[s]) for s in ids), 300, 0.2
        )
        out["connect"] = {
            "concurrent_handshakes": CONCURRENT_HANDSHAKES,
            "all_connected_and_booted_s": round(connected_s, 2),
            "handshake_and_boot": _pct(handshake_ms),
            "all_failsafe_profiles_s": round(failsafe_at - start, 2) if failsafe_at else None,
        }
        say(
            f"  {len(ids)} stations connected and booted in {connected_s:.1f} s (handshake + "
            f"boot p50 {out['connect']['handshake_and_boot']['median_ms']} ms); every level 0 "
            f"failsafe profile answered after {out['connect']['all_failsafe_profiles_s']} s"
        )
        await asyncio.sleep(3)  # let the gateway's boot work settle before reading its memory
        rss_after = _rss_kib(gateway_pid)
        out["memory"] = {
            "gateway_rss_before_mib": round(rss_before / 1024, 1),
            "gateway_rss_connected_mib": round(rss_after / 1024, 1),
            "per_connection_kib": round((rss_after - rss_before) / len(ids), 1),
        }
        say(
            f"  gateway RSS {out['memory']['gateway_rss_before_mib']} MiB before, "
            f"{out['memory']['gateway_rss_connected_mib']} MiB with {len(ids)} connected: "
            f"{out['memory']['per_connection_kib']} KiB per connection"
        )

        # Messages per second: one round of each, every station at once.
        rounds: dict[str, Any] = {}
        for name in ("Heartbeat", "MeterValues"):

            async def one(i: int, sid: str, name=name) -> None:
                cp = stations[sid]
                v201 = i % 2 == 1
                if name == "Heartbeat":
                    await cp.call(call201.Heartbeat() if v201 else call16.Heartbeat())
                    return
                value = [
                    {
                        "timestamp": _now(),
                        "sampledValue": [
                            {"value": "7400", "measurand": "Power.Active.Import"}
                            if not v201
                            else {
                                "value": 7400.0,
                                "measurand": "Power.Active.Import",
                                "unitOfMeasure": {"unit": "W"},
                            }
                        ],
                    }
                ]
                if v201:
                    await cp.call(call201.MeterValues(evse_id=1, meter_value=value))
                else:
                    await cp.call(call16.MeterValues(connector_id=1, meter_value=value))

            t = time.perf_counter()
            await asyncio.gather(*(one(i, sid) for i, sid in enumerate(ids)))
            elapsed = time.perf_counter() - t
            rounds[name] = {
                "messages": len(ids),
                "elapsed_s": round(elapsed, 2),
                "per_s": round(len(ids) / elapsed, 1),
            }
            say(f"  {name}: {len(ids)} answered in {elapsed:.2f} s ({len(ids) / elapsed:.0f}/s)")
        out["messages"] = rounds

        # Cycles: commit -> every station answered its level 1 profile -> all recorded.
        results = []
        for c in range(cycles):
            for sid in ids:
                received[sid].clear()
            cycle_pk, committed = await asyncio.to_thread(_commit_cycle, microgrid)
            answered = await wait_until(
                lambda: all(any(lv == 1 for lv, _ in received[s]) for s in ids), 60
            )
            last_answer = (
                max(t for s in ids for lv, t in received[s] if lv == 1) if answered else None
            )
            recorded = await wait_until_recorded(cycle_pk, len(ids))
            row = {
                "cycle": c + 1,
                "setpoints": len(ids),
                "commit_to_last_answer_s": round(last_answer - committed, 3)
                if last_answer
                else None,
                "commit_to_all_recorded_s": round(recorded - committed, 3) if recorded else None,
            }
            results.append(row)
            say(
                f"  cycle {c + 1}: {len(ids)} setpoints, last station answer "
                f"{row['commit_to_last_answer_s']} s after the commit, all recorded ACCEPTED "
                f"after {row['commit_to_all_recorded_s']} s"
            )
        out["cycles"] = results
        answers = [r["commit_to_last_answer_s"] for r in results if r["commit_to_last_answer_s"]]
        out["commit_to_last_answer_median_s"] = (
            round(statistics.median(answers), 3) if answers else None
        )
        out["rss_after_cycles_mib"] = round(_rss_kib(gateway_pid) / 1024, 1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return out


async def wait_until_recorded(cycle_pk: int, expected: int) -> float | None:
    from dispatch.models import Delivery

    def done() -> bool:
        return (
            Delivery.objects.filter(cycle_id=cycle_pk, channel="OCPP", status="ACCEPTED").count()
            >= expected
        )

    start = time.perf_counter()
    while time.perf_counter() - start < 60:
        if await asyncio.to_thread(done):
            return time.perf_counter()
        await asyncio.sleep(0.05)
    return None


def _commit_cycle(microgrid) -> tuple[int, float]:
    from balancing.services import cycle_request, trigger_of
    from dispatch.models import Delivery, LastAccepted

    # Every setpoint changed, as in `bench dispatch`: nothing is left UNCHANGED.
    Delivery.objects.filter(microgrid=microgrid).delete()
    LastAccepted.objects.filter(microgrid=microgrid).delete()
    with transaction.atomic():
        cycle = cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle
    committed = time.perf_counter()
    connection.close()  # this thread's connection: the next cycle may run in another thread
    return cycle.pk, committed


def bench_ocpp(*, stations: int = 2000, cycles: int = 5, port: int = 9630, say=print) -> dict:
    from benchtools.http_bench import load_average

    microgrid, ids = _setup(stations)
    log = Path(settings.VAR_DIR) / "bench" / "ocpp_gateway.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    gateway = _Gateway(port, log)
    try:
        out = asyncio.run(_run(gateway.port, ids, microgrid, cycles, say, gateway.proc.pid))
        out["load_average_at_end"] = load_average()
        out["poll_s"] = settings.OCPP_POLL_S
    finally:
        gateway.close()
        _drop(microgrid)
    return out
