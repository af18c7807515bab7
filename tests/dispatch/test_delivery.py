"""Setpoints reach a real webhook receiver, signed; every answer and fault ends in the status
the spec names, visible on the cycle, the card and the setpoints API."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from balancing.services import cycle_request, trigger_of
from dispatch.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryBatch,
    DispatchConfig,
    ReceiverState,
)
from dispatch.selectors import cycle_targets
from dispatch.services import (
    batch_id_of,
    deliveries_sweep,
    dispatch_config_input,
    dispatch_config_set,
)
from microgrid.common.errors import DomainError
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.models import Microgrid
from tests.dispatch.conftest import SECRET

pytestmark = pytest.mark.django_db


def _feed(microgrid, requested=(150, 150, 150), now=None):
    now = now or timezone.now()
    readings = [
        {
            "asset_id": c,
            "power_kw": 0,
            "observed_at": now.isoformat(),
            "connected": True,
            "requested_kw": kw,
        }
        for c, kw in zip(("CH-01", "CH-02", "CH-03"), requested, strict=True)
    ]
    readings.append({"asset_id": "SITE", "power_kw": 50, "observed_at": now.isoformat()})
    telemetry_ingest(microgrid=microgrid, readings=readings, now=now)


def _hook(microgrid, url, **extra):
    return dispatch_config_set(
        microgrid=microgrid,
        **dispatch_config_input({"webhook": {"url": url, "secret": SECRET}, **extra}),
    )


@pytest.fixture
def cycle(django_capture_on_commit_callbacks):
    """Run one cycle and the sends its commit asks for (Celery is eager in tests)."""

    def run(microgrid):
        with django_capture_on_commit_callbacks(execute=True):
            return cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle

    return run


def _statuses(cycle):
    """Every target's status, derived from the cycle's batch as every reader sees it."""
    return sorted({t.status for t in cycle_targets(cycle)})


def _batch(cycle):
    return DeliveryBatch.objects.get(cycle=cycle)


def _poll(predicate, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_cycles_setpoints_arrive_signed_and_show_accepted_everywhere(
    microgrid, receiver, cycle, operator_api, operator_client, integration_api
):
    _hook(microgrid, receiver.url)
    _feed(microgrid)
    c = cycle(microgrid)
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.signature_ok
    assert got.headers["X-Microgrid-Delivery"] == batch_id_of(c.cycle_id, "WEBHOOK")
    assert got.headers["Idempotency-Key"] == c.cycle_id
    body = got.json
    assert body["cycle_id"] == c.cycle_id and body["microgrid_id"] == "MG.NORTH-1"
    doc_chargers = {ch["asset_id"]: ch for ch in c.document["chargers"]}
    assert {s["asset_id"]: s["limit_kw"] for s in body["setpoints"]} == {
        a: ch["allocated_kw"] for a, ch in doc_chargers.items()
    }
    assert all(s["valid_until"] == body["valid_until"] for s in body["setpoints"])
    assert _statuses(c) == ["ACCEPTED"]

    doc = operator_api.get(f"/api/microgrids/MG.NORTH-1/cycles/{c.cycle_id}/").json()
    assert doc["dispatch"] == {"channels": ["WEBHOOK"], "counts": {"ACCEPTED": 3}}
    assert {ch["dispatch_status"] for ch in doc["chargers"]} == {"ACCEPTED"}

    page = operator_client.get(f"/manage/microgrids/MG.NORTH-1/cycles/{c.cycle_id}/")
    html = page.content.decode()
    assert 'data-testid="cycle-dispatch"' in html and "ACCEPTED" in html
    assert html.count('data-testid="dispatch-status"') == 3

    now = integration_api.get("/api/microgrids/MG.NORTH-1/setpoints/").json()
    assert [(s["asset_id"], s["limit_kw"], s["dispatch_status"]) for s in now["setpoints"]] == [
        (a, doc_chargers[a]["allocated_kw"], "ACCEPTED") for a in ("CH-01", "CH-02", "CH-03")
    ]
    one = integration_api.get("/api/microgrids/MG.NORTH-1/setpoints/?asset_id=CH-02").json()
    assert [s["asset_id"] for s in one["setpoints"]] == ["CH-02"]
    assert one["setpoints"][0]["cycle_id"] == c.cycle_id


def test_a_4xx_answer_is_rejected_and_never_sent_again(microgrid, receiver_factory, cycle):
    receiver = receiver_factory(status=422)
    _hook(microgrid, receiver.url)
    _feed(microgrid)
    c = cycle(microgrid)
    assert _statuses(c) == ["REJECTED"]
    deliveries_sweep()
    assert len(receiver.received) == 1
    assert DeliveryAttempt.objects.get().http_status == 422


@override_settings(DISPATCH_RETRY_BASE_S=0.05, DISPATCH_RETRY_MAX_S=0.05)
def test_a_receiver_answering_500_forever_ends_failed_then_expired_with_its_attempts(
    microgrid, receiver_factory, cycle, operator_client
):
    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=1)  # valid for 3 s
    receiver = receiver_factory(status=500)
    _hook(microgrid, receiver.url)
    _feed(microgrid)
    c = cycle(microgrid)
    assert _statuses(c) == ["FAILED"]
    row = _batch(c)
    assert row.next_attempt_at is not None and row.last_error == "HTTP 500"

    def expired():
        deliveries_sweep()
        return _statuses(c) == ["EXPIRED"]

    assert _poll(expired)
    attempts = _batch(c).attempts
    assert attempts >= 2 and len(receiver.received) == attempts
    # Every retry is the same message: receivers de-duplicate by its id.
    assert {r.headers["X-Microgrid-Delivery"] for r in receiver.received} == {
        batch_id_of(c.cycle_id, "WEBHOOK")
    }
    card = operator_client.get("/manage/microgrids/MG.NORTH-1/").content.decode()
    assert 'data-testid="dispatch-trouble"' in card and "EXPIRED" in card
    assert f'<td class="num">{attempts}</td>' in card


@override_settings(DISPATCH_WEBHOOK_TIMEOUT_S=0.3)
def test_a_receiver_that_does_not_answer_in_time_is_failed_and_retried(
    microgrid, receiver_factory, cycle
):
    receiver = receiver_factory(delay_s=5)
    _hook(microgrid, receiver.url)
    _feed(microgrid)
    c = cycle(microgrid)
    assert _statuses(c) == ["FAILED"]
    assert "no answer within" in _batch(c).last_error


def test_a_refused_connection_is_failed(microgrid, cycle):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    _hook(microgrid, f"http://127.0.0.1:{port}/hook")
    _feed(microgrid)
    c = cycle(microgrid)
    assert _statuses(c) == ["FAILED"]
    assert "ConnectionRefused" in _batch(c).last_error


def test_a_newer_cycle_supersedes_what_an_older_one_could_not_deliver(
    microgrid, receiver_factory, cycle
):
    receiver = receiver_factory(status=500)
    _hook(microgrid, receiver.url)
    _feed(microgrid)
    first = cycle(microgrid)
    assert _statuses(first) == ["FAILED"]
    receiver.status = 200
    _feed(microgrid, requested=(40, 50, 60))
    second = cycle(microgrid)
    assert _statuses(first) == ["SUPERSEDED"]
    assert _statuses(second) == ["ACCEPTED"]
    deliveries_sweep()
    # The superseded setpoints were never sent again.
    assert [r.json["cycle_id"] for r in receiver.received] == [first.cycle_id, second.cycle_id]


def test_an_unchanged_setpoint_is_renewed_by_every_message_not_sent_again(
    microgrid, receiver, cycle
):
    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=60)  # valid for 180 s
    config = _hook(microgrid, receiver.url, deadband_kw=0.5, refresh_s=30)
    _feed(microgrid, requested=(40, 50, 60))
    first = cycle(microgrid)
    assert _statuses(first) == ["ACCEPTED"]
    assert receiver.received[0].json["full"] is True  # nothing held yet: everything
    _feed(microgrid, requested=(40, 50.3, 60))  # CH-02 moves by 0.3 kW: inside the deadband
    second = cycle(microgrid)
    assert _statuses(second) == ["UNCHANGED"]
    # Nothing to send, but the message still goes: it renews what the receiver holds.
    heartbeat = receiver.received[1]
    assert heartbeat.signature_ok
    assert heartbeat.json["setpoints"] == [] and heartbeat.json["full"] is False
    assert heartbeat.json["valid_until"] == _batch(second).valid_until.isoformat()
    assert heartbeat.json["seq"] == second.seq > first.seq
    assert _batch(second).status == "ACCEPTED"
    _feed(microgrid, requested=(40, 55, 60))  # CH-02 moves by 5 kW
    third = cycle(microgrid)
    statuses = {t.target_id: t.status for t in cycle_targets(third)}
    assert statuses == {"CH-01": "UNCHANGED", "CH-02": "ACCEPTED", "CH-03": "UNCHANGED"}
    assert [s["asset_id"] for s in receiver.received[-1].json["setpoints"]] == ["CH-02"]
    # The webhook renews: refresh_s (the per-charger channels' resend window) sends nothing.
    DispatchConfig.objects.filter(pk=config.pk).update(refresh_s=600)
    fourth = cycle(microgrid)
    assert _statuses(fourth) == ["UNCHANGED"]
    assert receiver.received[-1].json["setpoints"] == []
    assert len(receiver.received) == 4


def test_when_what_the_receiver_holds_has_expired_everything_is_sent_in_full(
    microgrid, receiver, cycle
):
    from dispatch.models import ReceiverState

    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=60)
    _hook(microgrid, receiver.url)
    _feed(microgrid, requested=(40, 50, 60))
    cycle(microgrid)
    # The product stopped longer than the validity: the receiver has dropped them all.
    ReceiverState.objects.update(valid_until=timezone.now() - timedelta(seconds=1))
    again = cycle(microgrid)
    assert _statuses(again) == ["ACCEPTED"]
    body = receiver.received[-1].json
    assert body["full"] is True and len(body["setpoints"]) == 3


def test_a_receiver_that_lost_what_it_held_answers_409_and_gets_everything_at_once(
    microgrid, receiver_factory, cycle
):
    receiver = receiver_factory()
    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=60)
    _hook(microgrid, receiver.url)
    _feed(microgrid, requested=(40, 50, 60))
    cycle(microgrid)
    receiver.conflict_unless_full = True  # it restarted and holds nothing
    second = cycle(microgrid)
    bodies = receiver.bodies()
    assert [(b["full"], len(b["setpoints"])) for b in bodies] == [(True, 3), (False, 0), (True, 3)]
    assert _statuses(second) == ["ACCEPTED"]
    assert _batch(second).full and _batch(second).attempts == 2
    outcomes = DeliveryAttempt.objects.filter(cycle=second).order_by("started_at")
    assert [(a.outcome, a.http_status) for a in outcomes] == [("FAILED", 409), ("ACCEPTED", 200)]
    # Every retry is still the same message id, so the receiver de-duplicates nothing it needs.
    assert {r.headers["X-Microgrid-Delivery"] for r in receiver.received[1:]} == {
        batch_id_of(second.cycle_id, "WEBHOOK")
    }


def test_after_a_message_whose_outcome_is_unknown_the_next_one_is_full(
    microgrid, receiver_factory, cycle
):
    receiver = receiver_factory()
    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=60)
    _hook(microgrid, receiver.url)
    _feed(microgrid, requested=(40, 50, 60))
    cycle(microgrid)
    with _broker_down():
        _feed(microgrid, requested=(40, 52, 60))
        pending = cycle(microgrid)
    # A worker has it in flight (its answer has not come yet): the receiver may apply it.
    DeliveryBatch.objects.filter(cycle=pending).update(
        status="SENT", claimed_at=timezone.now(), attempts=1
    )
    second = cycle(microgrid)
    assert _batch(second).full and receiver.received[-1].json["full"] is True
    # A 500 (the receiver may have applied it anyway): the next message is full too.
    receiver.status = 500
    _feed(microgrid, requested=(40, 55, 60))
    third = cycle(microgrid)
    assert not _batch(third).full and _statuses(third) == ["FAILED"]
    receiver.status = 200
    fourth = cycle(microgrid)
    assert _batch(third).status == "SUPERSEDED"
    assert _batch(fourth).full and len(receiver.received[-1].json["setpoints"]) == 3
    # A definite refusal (4xx) changed nothing there: the next one is a difference again.
    receiver.status = 422
    _feed(microgrid, requested=(40, 60, 60))
    assert _statuses(cycle(microgrid)) == ["REJECTED"]
    receiver.status = 200
    sixth = cycle(microgrid)
    assert not _batch(sixth).full
    assert [s["asset_id"] for s in receiver.received[-1].json["setpoints"]] == ["CH-02"]


@contextmanager
def _broker_down():
    """The broker is a closed port: publishing a task fails as when Redis is down."""
    from microgrid.celery import app

    saved = (app.conf.task_always_eager, app.conf.broker_url, app._pool)
    app.conf.task_always_eager = False
    app.conf.broker_url = "redis://127.0.0.1:9/0"
    app._pool = None
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.broker_url, app._pool = saved


def test_with_the_broker_down_deliveries_wait_and_go_out_when_it_returns(
    microgrid, receiver, cycle
):
    _hook(microgrid, receiver.url)
    _feed(microgrid)
    with _broker_down():
        c = cycle(microgrid)
        assert _statuses(c) == ["PENDING"]
        assert receiver.received == []
    deliveries_sweep()  # beat's sweep, once the broker is back
    assert _statuses(c) == ["ACCEPTED"]
    assert len(receiver.received) == 1


def test_with_the_broker_down_past_their_validity_deliveries_expire_unsent(
    microgrid, receiver, cycle
):
    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=1)
    _hook(microgrid, receiver.url)
    _feed(microgrid)
    with _broker_down():
        c = cycle(microgrid)
    assert _poll(lambda: _batch(c).valid_until < timezone.now())
    deliveries_sweep()
    assert _statuses(c) == ["EXPIRED"]
    assert receiver.received == []


@pytest.mark.parametrize(
    "data, field",
    [
        ({"webhook": {"url": "ftp://x.example/hook", "secret": "k"}}, "dispatch.webhook.url"),
        ({"webhook": {"url": "https://x.example/hook", "secret": ""}}, "dispatch.webhook.secret"),
        ({"webhook": {"url": "https://x.example/hook"}}, "dispatch.webhook.secret"),
        ({"webhook": {"url": "not a url", "secret": "k"}}, "dispatch.webhook.url"),
        ({"deadband_kw": -1}, "dispatch.deadband_kw"),
        ({"refresh_s": 1.5}, "dispatch.refresh_s"),
        ({"colour": "red"}, "dispatch.colour"),
    ],
)
def test_a_bad_webhook_configuration_is_refused_and_changes_nothing(microgrid, data, field):
    with pytest.raises(DomainError) as exc:
        dispatch_config_set(microgrid=microgrid, **dispatch_config_input(data))
    assert exc.value.status == 422
    assert [(e.code, e.field) for e in exc.value.errors] == [("FIELD_INVALID", field)]
    assert not DispatchConfig.objects.exists()


def test_without_a_webhook_setpoints_wait_to_be_pulled(
    microgrid, cycle, integration_api, operator_api
):
    _feed(microgrid)
    c = cycle(microgrid)
    # The cycle itself is what is pulled: no delivery row is written, none superseded later.
    assert not Delivery.objects.exists() and not DeliveryBatch.objects.exists()
    body = integration_api.get("/api/microgrids/MG.NORTH-1/setpoints/").json()
    assert [(s["cycle_id"], s["dispatch_status"]) for s in body["setpoints"]] == [
        (c.cycle_id, "PENDING")
    ] * 3
    assert all(s["limit_kw"] is not None for s in body["setpoints"])
    doc = operator_api.get(f"/api/microgrids/MG.NORTH-1/cycles/{c.cycle_id}/").json()
    assert doc["dispatch"] == {"channels": ["PULL"], "counts": {"PENDING": 3}}
    assert {ch["dispatch_status"] for ch in doc["chargers"]} == {"PENDING"}
    # A newer cycle supersedes what the older one handed out; the API follows the newer one.
    newer = cycle(microgrid)
    doc = operator_api.get(f"/api/microgrids/MG.NORTH-1/cycles/{c.cycle_id}/").json()
    assert doc["dispatch"] == {"channels": ["PULL"], "counts": {"SUPERSEDED": 3}}
    body = integration_api.get("/api/microgrids/MG.NORTH-1/setpoints/").json()
    assert {s["cycle_id"] for s in body["setpoints"]} == {newer.cycle_id}
    assert not Delivery.objects.exists() and not DeliveryBatch.objects.exists()


def test_a_pulled_setpoint_past_its_validity_is_expired_and_no_longer_offered(
    microgrid, integration_api, operator_api
):
    past = timezone.now() - timedelta(hours=1)
    _feed(microgrid, now=past)
    c = cycle_request(microgrid=microgrid, trigger=trigger_of("API"), now=lambda: past).cycle
    doc = operator_api.get(f"/api/microgrids/MG.NORTH-1/cycles/{c.cycle_id}/").json()
    assert doc["dispatch"] == {"channels": ["PULL"], "counts": {"EXPIRED": 3}}
    body = integration_api.get("/api/microgrids/MG.NORTH-1/setpoints/").json()
    assert {s["limit_kw"] for s in body["setpoints"]} == {None}


def test_chargers_without_a_valid_setpoint_are_listed_with_null(microgrid, integration_api):
    body = integration_api.get("/api/microgrids/MG.NORTH-1/setpoints/").json()
    assert body["setpoints"] == [
        {
            "asset_id": a,
            "limit_kw": None,
            "valid_until": None,
            "cycle_id": None,
            "dispatch_status": None,
        }
        for a in ("CH-01", "CH-02", "CH-03")
    ]
    assert body["scope_budgets"] == []


@pytest.mark.parametrize("query", ["asset_id=bad%20id", "asset_id=" + "x" * 65, "asset_id=%00"])
def test_a_bad_setpoints_filter_is_422_field_invalid(microgrid, integration_api, query):
    response = integration_api.get(f"/api/microgrids/MG.NORTH-1/setpoints/?{query}")
    assert response.status_code == 422
    assert response.json()["code"] == "FIELD_INVALID"
    assert response.json()["errors"][0]["field"] == "asset_id"


def test_the_setpoints_api_takes_constant_queries(
    microgrid, cycle, integration_api, django_assert_max_num_queries
):
    _feed(microgrid)
    cycle(microgrid)
    with django_assert_max_num_queries(8):
        assert integration_api.get("/api/microgrids/MG.NORTH-1/setpoints/").status_code == 200


def test_a_failing_outbox_write_undoes_the_cycle(microgrid, monkeypatch):
    """The deliveries are written in the cycle's transaction: no cycle without its outbox."""
    from balancing.models import Cycle
    from dispatch import services

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "deliveries_write", broken)
    _feed(microgrid)
    with pytest.raises(RuntimeError):
        cycle_request(microgrid=microgrid, trigger=trigger_of("API"))
    assert not Cycle.objects.exists()


def test_support_follows_a_batch_in_admin_with_its_targets_and_history(
    microgrid, receiver, cycle, support_client
):
    Microgrid.objects.filter(pk=microgrid.pk).update(cycle_interval_s=60)
    _hook(microgrid, receiver.url)
    _feed(microgrid, requested=(40, 50, 60))
    cycle(microgrid)
    _feed(microgrid, requested=(40, 55, 60))
    second = cycle(microgrid)
    batch = _batch(second)
    listing = support_client.get(
        "/admin/dispatch/deliverybatch/",
        {"microgrid__id__exact": microgrid.pk, "status__exact": "ACCEPTED", "since": "1h"},
    )
    assert listing.status_code == 200
    assert f"/admin/dispatch/deliverybatch/{batch.pk}/change/" in listing.content.decode()
    page = support_client.get(f"/admin/dispatch/deliverybatch/{batch.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "<td>CH-02</td><td>" in html and html.count("<td>UNCHANGED</td>") == 2
    assert "#1 " in html and "ACCEPTED" in html  # its send attempt
    filtered = support_client.get("/admin/dispatch/deliverybatch/", {"channel__exact": "OCPP"})
    assert f"/{batch.pk}/change/" not in filtered.content.decode()
    # What the receiver holds after the accepted messages: listed and shown, read-only.
    state = ReceiverState.objects.get(microgrid=microgrid)
    states = support_client.get("/admin/dispatch/receiverstate/", {"channel__exact": "WEBHOOK"})
    assert states.status_code == 200
    assert f"/admin/dispatch/receiverstate/{state.pk}/change/" in states.content.decode()
    shown = support_client.get(f"/admin/dispatch/receiverstate/{state.pk}/change/")
    assert shown.status_code == 200 and receiver.url in shown.content.decode()
    assert (
        support_client.post(f"/admin/dispatch/receiverstate/{state.pk}/delete/").status_code == 403
    )
