"""A legacy TOU write is a limit write: it gets its LIMIT_CHANGE cycle like a canonical one."""

import pytest

from balancing.models import Cycle

EVENING = {"start": "17:00", "end": "21:00", "days": ["MON"], "limit_kw": 200}


@pytest.mark.django_db
def test_a_legacy_tou_write_asks_for_a_limit_change_cycle(
    integration_api, circuits, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_api.post(
            "/api/circuit/CIR-101/tou_limits", {"tou_limits": [EVENING]}, format="json"
        )
    assert response.status_code == 200, response.content
    assert list(Cycle.objects.values_list("trigger_type", flat=True)) == ["LIMIT_CHANGE"]


@pytest.mark.django_db
def test_a_refused_legacy_tou_write_asks_for_no_cycle(
    integration_api, circuits, django_capture_on_commit_callbacks
):
    bad = {"tou_limits": [EVENING, {**EVENING, "start": "18:00", "end": "19:00"}]}
    with django_capture_on_commit_callbacks(execute=True):
        response = integration_api.post("/api/circuit/CIR-101/tou_limits", bad, format="json")
    assert response.status_code >= 400
    assert not Cycle.objects.exists()
