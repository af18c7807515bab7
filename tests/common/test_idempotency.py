"""Idempotency-Key on canonical POST endpoints."""

import pytest

from balancing.models import Cycle

URL = "/api/microgrids/MG.NORTH-1/rebalance/"


@pytest.mark.django_db
def test_a_repeat_with_the_same_key_answers_as_the_first_and_changes_nothing(
    operator_api, microgrid
):
    first = operator_api.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = operator_api.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Cycle.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_refused(operator_api, microgrid):
    operator_api.post(URL, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    response = operator_api.post(
        URL,
        {"scope": {"type": "NODE", "node_id": "sb-1"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )
    assert response.status_code == 422
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert Cycle.objects.count() == 1


@pytest.mark.django_db
def test_without_a_key_every_post_runs(operator_api, microgrid):
    operator_api.post(URL, {}, format="json")
    operator_api.post(URL, {}, format="json")
    assert Cycle.objects.count() == 2


@pytest.mark.django_db
def test_a_refusal_is_replayed_too(support_api):
    body = {"microgrid_id": "bad id", "name": "x", "depot": {"depot_id": "D", "name": "d"}}
    first = support_api.post("/api/microgrids/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    second = support_api.post("/api/microgrids/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert first.status_code == second.status_code == 422
    assert first.json() == second.json()
