"""Concurrency on PostgreSQL with real threads: one winner, nothing lost, nothing partial."""

import copy
from collections import Counter

import pytest

from balancing.models import Cycle, CycleTrigger
from microgrid.common.errors import DomainError
from microgrid.topology.models import Microgrid, MicrogridNode, TopologyRevision
from tests.reliability.conftest import run_concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_twenty_concurrent_topology_saves_from_one_base_version_have_one_winner(
    postgres_only, microgrid, small_topology
):
    from microgrid.topology.services import topology_replace

    def save(i: int):
        body = copy.deepcopy(small_topology)
        body["nodes"][1]["name"] = f"Board by writer {i}"
        mg = Microgrid.objects.get(pk=microgrid.pk)
        try:
            topology_replace(
                microgrid=mg, base_version=1, nodes=body["nodes"], assets=body["assets"]
            )
            return "saved"
        except DomainError as exc:
            return exc.code

    results = run_concurrently(20, save)
    assert results.count("saved") == 1, results
    assert results.count("TOPOLOGY_VERSION_CONFLICT") == 19, results
    microgrid.refresh_from_db()
    assert microgrid.topology_version == 2
    assert TopologyRevision.objects.filter(microgrid=microgrid).count() == 2
    assert MicrogridNode.objects.get(microgrid=microgrid, node_id="sb-1").name.startswith(
        "Board by writer"
    )
    assert MicrogridNode.objects.filter(microgrid=microgrid).count() == 4


def test_fifty_concurrent_rebalance_triggers_never_overlap_and_none_is_lost(
    postgres_only, microgrid
):
    from balancing.services import cycle_request, trigger_of

    def trigger(i: int):
        mg = Microgrid.objects.get(pk=microgrid.pk)
        kind = "API" if i % 2 else "SCHEDULED"
        outcome = cycle_request(microgrid=mg, trigger=trigger_of(kind, n=i))
        return outcome.cycle.cycle_id

    results = run_concurrently(50, trigger)
    assert all(isinstance(r, str) for r in results), [r for r in results if not isinstance(r, str)]
    cycles = list(Cycle.objects.filter(microgrid=microgrid).order_by("started_at"))
    for earlier, later in zip(cycles, cycles[1:], strict=False):
        assert earlier.completed_at <= later.started_at, "cycles overlapped"
    triggers = CycleTrigger.objects.filter(microgrid=microgrid)
    assert triggers.count() == 50
    assert not triggers.filter(served_by__isnull=True).exists()
    # Coalescing, exactly: every cycle ran for a caller whose trigger it served and was the
    # answer to at least that caller, so the cycles are exactly the distinct answers; each
    # trigger names the one cycle that served it, and every cycle served at least one.
    assert {c.cycle_id for c in cycles} == set(results)
    served = Counter(triggers.values_list("served_by__cycle_id", flat=True))
    assert served == Counter(results)
    assert sum(served.values()) == 50 and len(served) == len(cycles)
