import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection, connections


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "real row locks and concurrency: run with DATABASE_URL=postgres://... (.ci/run does)"
        )


def run_concurrently(count: int, work: Callable[[int], object]) -> list[object]:
    """Start `count` threads at the same instant (a barrier); each gets its own connection."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # the caller inspects what each thread got
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


# Filled by tests/reliability/test_schemathesis.py; reported at the end of the run.
SCHEMATHESIS_STATS = {"requests": 0, "failures": 0, "seconds": 0.0, "statuses": Counter()}


def pytest_terminal_summary(terminalreporter):
    if SCHEMATHESIS_STATS["requests"]:
        terminalreporter.write_line(
            f"schemathesis: {SCHEMATHESIS_STATS['requests']} requests, "
            f"{SCHEMATHESIS_STATS['failures']} failures "
            f"({SCHEMATHESIS_STATS['seconds']:.0f} s in requests)"
        )
        statuses = sorted(SCHEMATHESIS_STATS["statuses"].items())
        terminalreporter.write_line(
            "schemathesis statuses: " + ", ".join(f"{code}: {n}" for code, n in statuses)
        )
