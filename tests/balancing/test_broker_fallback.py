"""When the broker cannot take a task, a limit change still gets its cycle, in-process."""

import pytest

from balancing import tasks
from balancing.models import Cycle


@pytest.mark.django_db
def test_enqueue_cycle_runs_the_cycle_in_process_when_the_broker_is_down(microgrid, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.run_cycle, "apply_async", refuse)
    tasks.enqueue_cycle("MG.NORTH-1", {"type": "ENVELOPE_CHANGE"})
    assert Cycle.objects.get().trigger_type == "ENVELOPE_CHANGE"
