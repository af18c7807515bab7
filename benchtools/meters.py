"""What the benchmarks measure the machine and its processes with (Linux /proc).

`machine()` describes where a report was measured; `CpuMeter` counts the CPU seconds that named
groups of processes (Celery workers, PostgreSQL backends, Redis) spend during a fleet run.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable
from pathlib import Path

from django.db import connection


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "database": connection.vendor,
    }


def _ticks_per_s() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of these processes (Linux /proc; 0 where unreadable)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _ticks_per_s()


def group_pids(pgid: int) -> list[int]:
    """Every live process of a process group (a worker and its pool children)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def database_backend_pids() -> list[int]:
    """PostgreSQL backends serving clients of this database, other than this process's own
    (not autovacuum, which the fleet's bulk setup sets off)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def redis_server_pids() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "redis-server":
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


class CpuMeter:
    """CPU seconds spent by named groups of processes between `start()` and `stop()`."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: cpu_seconds([pid]) for pid in pids()} for name, pids in self.groups.items()
        }

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        out = {}
        for name, pids in after.items():
            earlier = self.before.get(name, {})
            out[name] = round(sum(cpu - earlier.get(pid, 0.0) for pid, cpu in pids.items()), 2)
        return out
