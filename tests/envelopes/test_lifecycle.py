"""Envelope lifecycle on a controlled clock: derived status, supersede chains, withdraw,
transitions recorded by the beat task, heartbeat loss switching to fallback envelopes and back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from microgrid.envelopes.models import EnvelopeTransition, OperatingEnvelope, PeerModeChange
from microgrid.envelopes.selectors import enforced_ids, enforcement, envelope_status
from microgrid.envelopes.services import envelope_transitions_record, envelope_withdraw
from microgrid.limits.selectors import effective_limits

from .conftest import T0, block, forecast_body

H = timedelta(hours=1)
M = timedelta(minutes=1)


def env(envelope_id: str) -> OperatingEnvelope:
    return OperatingEnvelope.objects.select_related("peer").get(envelope_id=envelope_id)


def states() -> dict[str, tuple[str, str | None]]:
    return {
        e.envelope_id: (e.state, e.superseded_by.envelope_id if e.superseded_by else None)
        for e in OperatingEnvelope.objects.select_related("superseded_by").order_by("number")
    }


def root_limit(microgrid, at):
    return effective_limits(microgrid, at)["grid"]


@pytest.mark.django_db
def test_status_is_derived_from_the_clock_at_read_time(bound, receive):
    receive(forecast_body(blocks=[block(T0 + H, T0 + 2 * H)]), now=T0)
    e = env("OE-1")
    assert envelope_status(e, T0) == "PENDING"
    assert envelope_status(e, T0 + H) == "ACTIVE"  # the window is [valid_from, valid_until)
    assert envelope_status(e, T0 + 2 * H - timedelta(microseconds=1)) == "ACTIVE"
    assert envelope_status(e, T0 + 2 * H) == "EXPIRED"
    assert e.state == "RECEIVED"  # nothing was written for it: the clock decides


@pytest.mark.django_db
def test_a_new_forecast_supersedes_overlapping_live_envelopes_of_its_group_and_type(bound, receive):
    receive(forecast_body(blocks=[block(T0, T0 + 2 * H, 300)]), now=T0 - H)  # OE-1
    receive(forecast_body(blocks=[block(T0 + 3 * H, T0 + 4 * H, 300)]), now=T0 - H)  # OE-2
    receive(  # OE-3: another type of the same group
        forecast_body(type="FALLBACK_CONSUMPTION", blocks=[block(T0, T0 + 2 * H, 100)]), now=T0 - H
    )
    receive(forecast_body(group_id="GRP-A", blocks=[block(T0, T0 + 2 * H, 200)]), now=T0 - H)
    # OE-5 overlaps OE-1 only
    receipt = receive(forecast_body(blocks=[block(T0 + H, T0 + 2 * H, 250)]), now=T0 - H)
    assert receipt.superseded == ["OE-1"]
    assert states() == {
        "OE-1": ("SUPERSEDED", "OE-5"),
        "OE-2": ("RECEIVED", None),
        "OE-3": ("RECEIVED", None),
        "OE-4": ("RECEIVED", None),
        "OE-5": ("RECEIVED", None),
        "OE-6": ("RECEIVED", None),  # what OE-5 did not cover of OE-1: T0 .. T0 + 1 h
    }
    assert env("OE-1").superseded_at == T0 - H
    part = env("OE-6")
    assert (part.valid_from, part.valid_until, part.capacity_kw) == (T0, T0 + H, 300)
    assert part.split_from.envelope_id == "OE-1"


@pytest.mark.django_db
def test_a_partial_revision_supersedes_only_the_time_it_covers(bound, receive, support_api):
    """00:30-01:30 over 00:00-01:00 (180 kW) and 01:00-02:00 (181 kW): 00:00-00:30 keeps
    180 kW and 01:30-02:00 keeps 181 kW; no instant loses its cap."""
    half = timedelta(minutes=30)
    receive(
        forecast_body(blocks=[block(T0, T0 + H, 180), block(T0 + H, T0 + 2 * H, 181)]),
        now=T0 - H,
    )  # OE-1, OE-2
    receipt = receive(forecast_body(blocks=[block(T0 + half, T0 + H + half, 150)]), now=T0 - H)
    assert receipt.superseded == ["OE-1", "OE-2"]
    assert [e.envelope_id for e in receipt.envelopes] == ["OE-3"]
    assert states() == {
        "OE-1": ("SUPERSEDED", "OE-3"),
        "OE-2": ("SUPERSEDED", "OE-3"),
        "OE-3": ("RECEIVED", None),
        "OE-4": ("RECEIVED", None),
        "OE-5": ("RECEIVED", None),
    }
    parts = {
        e.envelope_id: (e.valid_from, e.valid_until, e.capacity_kw, e.split_from.envelope_id)
        for e in OperatingEnvelope.objects.filter(split_from__isnull=False)
    }
    assert parts == {
        "OE-4": (T0, T0 + half, 180, "OE-1"),
        "OE-5": (T0 + H + half, T0 + 2 * H, 181, "OE-2"),
    }
    # Every instant of 00:00-02:00 has exactly the cap the CP meant.
    for minute, kw in ((0, 180), (29, 180), (30, 150), (89, 150), (90, 181), (119, 181)):
        at = T0 + timedelta(minutes=minute)
        assert root_limit(bound, at).effective_limit_kw == kw, minute
    detail = support_api.get("/api/microgrids/MG.NORTH-1/operating-envelopes/OE-4/").json()
    assert detail["split_from"] == "OE-1"
    assert detail["source"]["request_id"] == env("OE-1").message.request_id
    origin = support_api.get("/api/microgrids/MG.NORTH-1/operating-envelopes/OE-1/").json()
    assert origin["parts"] == ["OE-4"]
    assert origin["superseded_by"] == "OE-3"


@pytest.mark.django_db
def test_a_revision_inside_an_envelope_leaves_both_ends_in_force(bound, receive):
    receive(forecast_body(blocks=[block(T0, T0 + 3 * H, 200)]), now=T0 - H)  # OE-1
    receive(
        forecast_body(
            blocks=[block(T0 + H, T0 + H + 10 * M, 50), block(T0 + 2 * H, T0 + 2 * H + 10 * M, 60)]
        ),
        now=T0 - H,
    )  # OE-2, OE-3 and the parts OE-4, OE-5, OE-6
    windows = [
        (e.valid_from, e.valid_until, e.capacity_kw)
        for e in OperatingEnvelope.objects.filter(split_from__envelope_id="OE-1").order_by("number")
    ]
    assert windows == [
        (T0, T0 + H, 200),
        (T0 + H + 10 * M, T0 + 2 * H, 200),
        (T0 + 2 * H + 10 * M, T0 + 3 * H, 200),
    ]
    assert enforced_ids(bound, T0 + H + 5 * M) == {"OE-2"}
    assert enforced_ids(bound, T0 + H + 15 * M) == {"OE-5"}


@pytest.mark.django_db
def test_a_revision_received_inside_a_window_keeps_the_rest_of_it_enforced(bound, receive):
    receive(forecast_body(blocks=[block(T0, T0 + 2 * H, 200)]), now=T0 - H)  # OE-1
    # At T0 + 30 min the CP revises 01:00-01:30 only.
    receive(forecast_body(blocks=[block(T0 + H, T0 + H + 30 * M, 90)]), now=T0 + 30 * M)
    assert enforced_ids(bound, T0 + 30 * M) == {"OE-3"}  # the part T0 .. T0 + 1 h
    assert root_limit(bound, T0 + 30 * M).effective_limit_kw == 200
    assert root_limit(bound, T0 + H + 45 * M).effective_limit_kw == 200
    # The beat task records no ACTIVATED for a part already in force at its split.
    envelope_transitions_record(now=T0 + 31 * M)
    assert not EnvelopeTransition.objects.filter(envelope__envelope_id="OE-3").exists()
    envelope_transitions_record(now=T0 + H + 31 * M)
    assert EnvelopeTransition.objects.filter(
        envelope__envelope_id="OE-4", transition="ACTIVATED", at=T0 + H + 30 * M
    ).exists()


@pytest.mark.django_db
def test_supersede_chains_stay_visible_link_by_link(bound, receive, support_api):
    for capacity in (300, 250, 200):
        receive(forecast_body(blocks=[block(T0, T0 + H, capacity)]), now=T0 - H)
    assert states() == {
        "OE-1": ("SUPERSEDED", "OE-2"),
        "OE-2": ("SUPERSEDED", "OE-3"),
        "OE-3": ("RECEIVED", None),
    }
    middle = support_api.get("/api/microgrids/MG.NORTH-1/operating-envelopes/OE-2/").json()
    assert middle["status"] == "SUPERSEDED"
    assert middle["superseded_by"] == "OE-3"
    assert middle["supersedes"] == ["OE-1"]
    assert [h["change"] for h in middle["history"]] == ["RECEIVED", "SUPERSEDED"]
    assert middle["history"][1]["superseded_by"] == "OE-3"


@pytest.mark.django_db
def test_one_new_block_supersedes_several_old_ones_and_the_first_overlap_names_the_successor(
    bound, receive
):
    receive(
        forecast_body(blocks=[block(T0, T0 + H, 300), block(T0 + H, T0 + 2 * H, 280)]),
        now=T0 - H,
    )
    receive(
        forecast_body(
            blocks=[block(T0 + 30 * M, T0 + 90 * M, 200), block(T0 + 90 * M, T0 + 3 * H, 150)]
        ),
        now=T0 - H,
    )
    assert states() == {
        "OE-1": ("SUPERSEDED", "OE-3"),
        "OE-2": ("SUPERSEDED", "OE-3"),
        "OE-3": ("RECEIVED", None),
        "OE-4": ("RECEIVED", None),
        "OE-5": ("RECEIVED", None),  # OE-1's first half, which the revision did not cover
    }
    assert (env("OE-5").valid_from, env("OE-5").valid_until) == (T0, T0 + 30 * M)


@pytest.mark.django_db
def test_expired_and_withdrawn_envelopes_are_not_superseded(bound, receive):
    receive(forecast_body(blocks=[block(T0, T0 + H, 300)]), now=T0 - H)  # OE-1
    receive(forecast_body(blocks=[block(T0 + H, T0 + 2 * H, 300)]), now=T0 - H)  # OE-2
    envelope_withdraw(envelope=env("OE-2"), now=T0)
    # at T0 + 1h OE-1 has just expired; the new block overlaps both windows
    receive(forecast_body(blocks=[block(T0 - H, T0 + 3 * H, 100)]), now=T0 + H)
    assert states()["OE-1"] == ("RECEIVED", None)
    assert states()["OE-2"] == ("WITHDRAWN", None)
    assert envelope_status(env("OE-1"), T0 + H) == "EXPIRED"


@pytest.mark.django_db
def test_an_envelope_can_be_withdrawn_while_pending_or_active_only(bound, receive):
    receive(forecast_body(blocks=[block(T0, T0 + H, 300)]), now=T0 - H)
    receive(forecast_body(blocks=[block(T0 + 2 * H, T0 + 3 * H, 300)]), now=T0 - H)
    withdrawn = envelope_withdraw(envelope=env("OE-1"), now=T0 + M, reason="tariff error")
    assert (withdrawn.state, withdrawn.withdrawn_at) == ("WITHDRAWN", T0 + M)
    assert withdrawn.withdraw_reason == "tariff error"
    assert enforced_ids(bound, T0 + 2 * M) == set()
    from microgrid.common.errors import DomainError

    for envelope_id, at in (("OE-1", T0 + 2 * M), ("OE-2", T0 + 3 * H)):
        with pytest.raises(DomainError) as caught:
            envelope_withdraw(envelope=env(envelope_id), now=at)
        assert caught.value.code == "ENVELOPE_NOT_WITHDRAWABLE"
        assert caught.value.status == 409
    assert env("OE-2").state == "RECEIVED"


@pytest.mark.django_db
def test_the_beat_task_records_each_transition_once(bound, receive):
    receive(forecast_body(blocks=[block(T0 + H, T0 + 2 * H)]), now=T0)
    assert envelope_transitions_record(now=T0 + H - timedelta(seconds=1)) == 0
    assert envelope_transitions_record(now=T0 + H + timedelta(seconds=3)) == 1
    assert envelope_transitions_record(now=T0 + H + timedelta(seconds=8)) == 0
    assert envelope_transitions_record(now=T0 + 2 * H + timedelta(seconds=2)) == 1
    assert envelope_transitions_record(now=T0 + 2 * H + timedelta(seconds=7)) == 0
    rows = list(EnvelopeTransition.objects.order_by("at").values_list("transition", "at"))
    assert rows == [("ACTIVATED", T0 + H), ("EXPIRED", T0 + 2 * H)]


@pytest.mark.django_db
def test_an_envelope_active_on_receipt_records_no_activation_but_its_expiry(bound, receive):
    receive(forecast_body(blocks=[block(T0 - H, T0 + H)]), now=T0)
    receive(forecast_body(group_id="GRP-A", blocks=[block(T0 - 2 * H, T0 - H)]), now=T0)
    envelope_transitions_record(now=T0 + 2 * H)
    rows = list(EnvelopeTransition.objects.values_list("envelope__envelope_id", "transition"))
    # OE-2 arrived already expired: nothing happened to it after its receipt
    assert rows == [("OE-1", "EXPIRED")]


@pytest.mark.django_db
def test_the_beat_task_asks_for_a_cycle_when_an_envelope_starts_or_ends(
    bound, receive, django_capture_on_commit_callbacks, monkeypatch
):
    asked = []
    monkeypatch.setattr(
        "balancing.tasks.enqueue_cycle",
        lambda microgrid_id, trigger, scope=None: asked.append((microgrid_id, trigger, scope)),
    )
    receive(forecast_body(group_id="GRP-A", blocks=[block(T0 + H, T0 + 2 * H)]), now=T0)
    receive(forecast_body(type="OPTIMUM", blocks=[block(T0 + H, T0 + 2 * H)]), now=T0)
    with django_capture_on_commit_callbacks(execute=True):
        envelope_transitions_record(now=T0 + H)
    assert asked == [
        (
            "MG.NORTH-1",
            {"type": "ENVELOPE_CHANGE", "envelope_ids": ["OE-1"]},
            {"type": "NODE", "node_id": "sb-1"},
        )
    ]
    with django_capture_on_commit_callbacks(execute=True):
        envelope_transitions_record(now=T0 + H + timedelta(seconds=5))
    assert len(asked) == 1  # nothing new, nothing asked
    with django_capture_on_commit_callbacks(execute=True):
        envelope_transitions_record(now=T0 + 2 * H)
    assert len(asked) == 2


@pytest.mark.django_db
def test_receipt_of_an_active_envelope_asks_for_a_cycle_at_once(
    bound, receive, django_capture_on_commit_callbacks, monkeypatch
):
    asked = []
    monkeypatch.setattr(
        "balancing.tasks.enqueue_cycle",
        lambda microgrid_id, trigger, scope=None: asked.append(trigger),
    )
    with django_capture_on_commit_callbacks(execute=True):
        receive(forecast_body(blocks=[block(T0 + H, T0 + 2 * H)]), now=T0)  # pending
    assert asked == []
    with django_capture_on_commit_callbacks(execute=True):
        receive(forecast_body(blocks=[block(T0 - H, T0 + H)], group_id="GRP-A"), now=T0)
    assert asked == [{"type": "ENVELOPE_CHANGE", "envelope_ids": ["OE-2"]}]
    # superseding an active envelope by a pending one changes what holds now, too
    with django_capture_on_commit_callbacks(execute=True):
        receive(forecast_body(blocks=[block(T0, T0 + 2 * H)], group_id="GRP-A"), now=T0)
    assert asked[-1] == {"type": "ENVELOPE_CHANGE", "envelope_ids": ["OE-2", "OE-3"]}


@pytest.mark.django_db
def test_withdrawing_an_active_envelope_asks_for_a_cycle(
    bound, receive, django_capture_on_commit_callbacks, monkeypatch
):
    asked = []
    monkeypatch.setattr(
        "balancing.tasks.enqueue_cycle",
        lambda microgrid_id, trigger, scope=None: asked.append(trigger),
    )
    receive(forecast_body(blocks=[block(T0 - H, T0 + H)]), now=T0)
    with django_capture_on_commit_callbacks(execute=True):
        envelope_withdraw(envelope=env("OE-1"), now=T0)
    assert asked == [{"type": "ENVELOPE_CHANGE", "envelope_ids": ["OE-1"]}]


@pytest.mark.django_db
def test_heartbeat_loss_switches_to_the_fallback_envelopes_and_a_heartbeat_switches_back(
    bound, peer, receive, django_capture_on_commit_callbacks, monkeypatch
):
    asked = []
    monkeypatch.setattr(
        "balancing.tasks.enqueue_cycle",
        lambda microgrid_id, trigger, scope=None: asked.append(trigger),
    )
    # Heartbeats every 10 minutes: offline_mode_at (T0 + 10 min) comes before twice that.
    peer.heartbeat_interval_s = 600
    peer.save()
    window = [block(T0 - H, T0 + 3 * H, 300)]
    receive(forecast_body(blocks=window), now=T0 - H)  # OE-1
    fallback = [block(T0 - H, T0 + 3 * H, 120)]
    receive(forecast_body(type="FALLBACK_CONSUMPTION", blocks=fallback), now=T0 - H)  # OE-2
    receive({"offline_mode_at": (T0 + 10 * M).isoformat()}, message_type="HEARTBEAT", now=T0)

    assert root_limit(bound, T0).envelope_ids == ("OE-1",)
    assert root_limit(bound, T0).effective_limit_kw == 300.0
    peer.refresh_from_db()
    assert enforcement(env("OE-2"), peer, T0) == "FALLBACK_STANDBY"

    lost = T0 + 10 * M
    with django_capture_on_commit_callbacks(execute=True):
        envelope_transitions_record(now=lost + timedelta(seconds=2))
    assert root_limit(bound, lost).envelope_ids == ("OE-2",)
    assert root_limit(bound, lost).effective_limit_kw == 120.0
    assert enforcement(env("OE-1"), peer, lost) == "REPLACED_BY_FALLBACK"
    assert enforcement(env("OE-2"), peer, lost) == "ENFORCED"
    assert asked == [{"type": "ENVELOPE_CHANGE", "envelope_ids": ["OE-1", "OE-2"]}]
    assert list(PeerModeChange.objects.values_list("mode", "cause", "at")) == [
        ("OFFLINE", "HEARTBEAT_LAPSED", lost)
    ]

    back = T0 + 20 * M
    with django_capture_on_commit_callbacks(execute=True):
        receive(
            {"offline_mode_at": (back + 10 * M).isoformat()}, message_type="HEARTBEAT", now=back
        )
    assert root_limit(bound, back).envelope_ids == ("OE-1",)
    assert asked[-1] == {"type": "ENVELOPE_CHANGE", "envelope_ids": ["OE-1", "OE-2"]}
    assert PeerModeChange.objects.order_by("-at").first().mode == "ONLINE"


@pytest.mark.django_db
def test_a_heartbeat_after_an_unnoticed_loss_still_records_both_switches(bound, peer, receive):
    receive({"offline_mode_at": (T0 + M).isoformat()}, message_type="HEARTBEAT", now=T0)
    # no beat task ran while the peer was offline
    receive(
        {"offline_mode_at": (T0 + 10 * M).isoformat()}, message_type="HEARTBEAT", now=T0 + 5 * M
    )
    assert list(PeerModeChange.objects.order_by("at").values_list("mode", "cause", "at")) == [
        ("OFFLINE", "HEARTBEAT_LAPSED", T0 + M),
        ("ONLINE", "HEARTBEAT", T0 + 5 * M),
    ]
    assert envelope_transitions_record(now=T0 + 6 * M) == 0


@pytest.mark.django_db
def test_a_fresh_handshake_ends_offline_mode(bound, peer, receive):
    receive(forecast_body(type="FALLBACK_CONSUMPTION", blocks=[block(T0, T0 + 2 * H, 50)]), now=T0)
    receive({"offline_mode_at": (T0 + M).isoformat()}, message_type="HEARTBEAT", now=T0)
    assert root_limit(bound, T0 + 2 * M).effective_limit_kw == 50.0
    handshake = {"required_behaviour": {"measurement_configuration": ["CONTINUOUS"]}}
    receive(handshake, message_type="HANDSHAKE", now=T0 + 3 * M)
    peer.refresh_from_db()
    assert not peer.offline_at(T0 + 3 * M)
    assert root_limit(bound, T0 + 3 * M).envelope_ids == ()
    assert PeerModeChange.objects.order_by("-at").first().cause == "HANDSHAKE"
    # it stays online for twice the heartbeat interval (2 x 60 s) without a heartbeat
    assert not peer.offline_at(T0 + 4 * M + timedelta(seconds=59))
    assert peer.offline_at(T0 + 5 * M)


@pytest.mark.django_db
def test_a_zero_capacity_envelope_is_accepted_as_a_pause(bound, receive):
    receive(forecast_body(group_id="GRP-G", blocks=[block(T0, T0 + H, 0)]), now=T0)
    limit = effective_limits(bound, T0)["grp-a"]
    assert (limit.effective_limit_kw, limit.limit_source) == (0.0, "OPERATING_ENVELOPE")


@pytest.mark.django_db
def test_optimum_and_export_envelopes_are_stored_and_shown_but_never_enforced(bound, peer, receive):
    receive(forecast_body(type="OPTIMUM", blocks=[block(T0, T0 + H, 10)]), now=T0)
    receive(forecast_body(type="GENERATION", blocks=[block(T0, T0 + H, 20)]), now=T0)
    assert [(e.direction, envelope_status(e, T0)) for e in OperatingEnvelope.objects.all()] == [
        ("IMPORT", "ACTIVE"),
        ("EXPORT", "ACTIVE"),
    ]
    assert enforcement(env("OE-1"), peer, T0) == "OPTIMUM_SHOWN"
    assert enforcement(env("OE-2"), peer, T0) == "EXPORT_SHOWN"
    assert root_limit(bound, T0).limit_source == "PHYSICAL_RATING"
    assert root_limit(bound, T0).envelope_ids == ()


@pytest.mark.django_db
def test_several_active_envelopes_on_one_scope_the_smallest_binds(bound, receive):
    receive(forecast_body(blocks=[block(T0, T0 + H, 300)]), now=T0)
    receive(forecast_body(group_id="GRP-A", blocks=[block(T0, T0 + H, 500)]), now=T0)
    from microgrid.envelopes.services import oscp_group_binding_save

    # a second group bound to the same whole-microgrid scope
    oscp_group_binding_save(
        peer=env("OE-1").peer, group_id="GRP-N2", microgrid=bound, scope={"type": "MICROGRID"}
    )
    receive(forecast_body(group_id="GRP-N2", blocks=[block(T0, T0 + H, 280)]), now=T0)
    root = root_limit(bound, T0)
    assert root.envelope_ids == ("OE-1", "OE-3")
    assert (root.effective_limit_kw, root.limit_source) == (280.0, "OPERATING_ENVELOPE")
    assert effective_limits(bound, T0)["sb-1"].envelope_ids == ("OE-2",)


@pytest.mark.django_db
def test_the_envelope_ids_of_a_node_are_listed_by_number(bound, peer, receive):
    from microgrid.envelopes.services import oscp_group_binding_save

    oscp_group_binding_save(
        peer=peer, group_id="GRP-R", microgrid=bound, scope={"type": "NODE", "node_id": "grid"}
    )
    later = [block(T0 + i * H, T0 + (i + 1) * H) for i in range(1, 9)]
    receive(forecast_body(group_id="GRP-A", blocks=later[:1]), now=T0)  # OE-1
    receive(forecast_body(blocks=[block(T0, T0 + H, 400)]), now=T0)  # OE-2
    receive(forecast_body(group_id="GRP-G", blocks=later[1:]), now=T0)  # OE-3 .. OE-9
    receive(forecast_body(group_id="GRP-R", blocks=[block(T0, T0 + H, 300)]), now=T0)  # OE-10
    root = root_limit(bound, T0)
    assert root.envelope_ids == ("OE-2", "OE-10")
    assert (root.effective_limit_kw, root.envelope_ids[-1]) == (300.0, "OE-10")
