"""Scheduled cycles in batches (balancing/batch.py): the same cycles as the single path, with
the reads of all members in one query each, the locks and the trigger rules kept."""

import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from balancing.batch import cycle_batch
from balancing.models import Breach, Cycle, CycleTrigger
from balancing.services import cycle_request, trigger_of
from microgrid.telemetry.models import SessionDefault
from microgrid.telemetry.selectors import charger_get
from microgrid.telemetry.services import charger_session_put, telemetry_ingest
from tests.balancing.test_cycles import readings

SCHEDULED = trigger_of("SCHEDULED")


def another(microgrid_id, topology):
    from microgrid.topology.api.serializers import microgrid_input
    from microgrid.topology.services import microgrid_create, topology_replace

    mg = microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": microgrid_id,
                "name": microgrid_id,
                "depot": {"depot_id": f"D-{microgrid_id}", "name": "D", "timezone": "UTC"},
            }
        )
    )
    topology_replace(microgrid=mg, base_version=0, **topology)
    mg.refresh_from_db()
    return mg


def varied_fleet(microgrid, small_topology, now):
    """Three microgrids whose cycles differ in every input a cycle reads: a breach opening
    and a limit policy and an envelope and a waiting trigger (A), a stale site load on its
    fallback and a charger under an external controller and a session (B), a breach that
    resolves, a session default and a webhook's deliveries after an earlier cycle (C)."""
    from dispatch.services import dispatch_config_set
    from microgrid.capabilities.api.serializers import bind_input, event_input
    from microgrid.capabilities.services import capability_binding_create, capability_event_record
    from microgrid.envelopes.services import (
        oscp_group_binding_save,
        oscp_message_receive,
        oscp_peer_save,
    )
    from microgrid.limits.services import limit_policy_create

    a = microgrid
    b = another("MG.B", small_topology)
    c = another("MG.C", small_topology)
    # A
    telemetry_ingest(
        microgrid=a, now=now, readings=readings(now, SITE=10, PV_1=0, M_GRID=900, CH_01=150)
    )
    limit_policy_create(microgrid=a, scope="NODE", node_id="grp-b", limit_kw=40.0)
    peer, _ = oscp_peer_save(name="dso", token="batch-token-0123456789", heartbeat_interval_s=60)
    oscp_group_binding_save(peer=peer, group_id="G", microgrid=a, scope={"type": "MICROGRID"})
    block = {
        "capacity": 300,
        "phase": "ALL",
        "unit": "KW",
        "start_time": (now - timedelta(minutes=5)).isoformat(),
        "end_time": (now + timedelta(hours=1)).isoformat(),
    }
    oscp_message_receive(
        peer=peer,
        message_type="UPDATE_GROUP_CAPACITY_FORECAST",
        request_id="r-1",
        correlation_id="c-1",
        body=json.dumps({"group_id": "G", "type": "CONSUMPTION", "forecasted_blocks": [block]}),
        now=now - timedelta(minutes=5),
    )
    CycleTrigger.objects.create(
        microgrid=a,
        trigger=trigger_of("TOU_TRANSITION"),
        scope={"type": "MICROGRID"},
        requested_at=now - timedelta(seconds=1),
    )
    # B
    old = now - timedelta(seconds=300)
    telemetry_ingest(microgrid=b, now=now, readings=readings(old, SITE=10))
    telemetry_ingest(microgrid=b, now=now, readings=readings(now, PV_1=0, CH_01=50, CH_03=90))
    charger_session_put(
        asset=charger_get(b, "CH-01"),
        departure_at=now + timedelta(minutes=62),
        energy_needed_kwh=40.0,
        now=now,
    )
    scope = {"type": "NODE", "node_id": "grp-b"}
    capability_binding_create(
        microgrid=b,
        **bind_input(
            {"capability_type": "LOAD_MANAGEMENT", "scope": scope, "source_device_id": "EMS"}
        ),
        now=now - timedelta(seconds=30),
    )
    capability_event_record(
        microgrid=b,
        **event_input(
            {
                "capability_type": "LOAD_MANAGEMENT",
                "scope": scope,
                "source_device_id": "EMS",
                "event_ref": "ems-1",
                "state": "AVAILABLE",
                "observed_at": (now - timedelta(seconds=5)).isoformat(),
                "detail": None,
            }
        ),
        now=now - timedelta(seconds=5),
    )
    # C
    SessionDefault.objects.create(
        microgrid=c, node_id="grp-a", default_dwell_s=4 * 3600, default_energy_kwh=80
    )
    dispatch_config_set(
        microgrid=c,
        webhook_url="https://ems.example.test/setpoints",
        webhook_secret="s3cret-0123456789abcdef",
    )
    before = now - timedelta(seconds=15)
    telemetry_ingest(
        microgrid=c, now=before, readings=readings(before, SITE=0, PV_1=0, M_GRID=900, CH_02=60)
    )
    cycle_request(microgrid=c, trigger=SCHEDULED, now=lambda: before)
    telemetry_ingest(microgrid=c, now=now, readings=readings(now, M_GRID=100, CH_02=60))
    return [a, b, c]


def stored(microgrids):
    """Everything the cycles of `microgrids` wrote that is theirs, by microgrid."""
    from django.forms.models import model_to_dict

    from dispatch.models import Delivery, DeliveryBatch
    from microgrid.fleet.models import MicrogridState

    out = {}
    for mg in microgrids:
        cycle = Cycle.objects.filter(microgrid=mg).order_by("-seq").first()
        out[mg.microgrid_id] = {
            "row": {
                f: getattr(cycle, f)
                for f in (
                    "cycle_id",
                    "seq",
                    "trigger_type",
                    "scope",
                    "started_at",
                    "completed_at",
                    "topology_version",
                    "outcome",
                    "source_mode",
                    "reason_codes",
                    "vehicles_at_risk",
                    "record_part_id",
                )
            },
            "record": bytes(cycle.record),
            "document": cycle.document,
            "snapshot": cycle.snapshot,
            "breaches": sorted(
                (b.breach_id, b.status, b.cycle_id == cycle.pk, b.resolved_by_id == cycle.pk)
                for b in Breach.objects.filter(microgrid=mg)
            ),
            # The fleet overview's state (batched: one upsert for all members).
            "fleet_state": model_to_dict(MicrogridState.objects.get(microgrid=mg)),
            "triggers": sorted(
                (t.trigger["type"], t.requested_at, t.served_by_id == cycle.pk)
                for t in CycleTrigger.objects.filter(microgrid=mg)
            ),
            "deliveries": sorted(
                Delivery.objects.filter(microgrid=mg).values_list(
                    "delivery_id", "target_id", "limit_kw", "status", "channel", "valid_until"
                )
            )
            + sorted(
                DeliveryBatch.objects.filter(microgrid=mg).values_list(
                    "batch_id",
                    "seq",
                    "channel",
                    "targets",
                    "full",
                    "sent_count",
                    "unchanged_count",
                    "valid_until",
                    "status",
                    "created_at",
                )
            ),
        }
    return out


@pytest.mark.django_db
def test_a_batch_writes_the_very_cycles_the_single_path_writes(microgrid, small_topology):
    now = timezone.now()
    fleet = varied_fleet(microgrid, small_topology, now)
    at = now + timedelta(seconds=1)
    asked = now + timedelta(milliseconds=500)
    ids = [mg.microgrid_id for mg in fleet]

    with transaction.atomic():
        outcome = cycle_batch(ids, trigger=SCHEDULED, requested_at=asked, now=lambda: at)
        assert list(outcome.cycles) == ids and not outcome.busy and not outcome.idle
        batched = stored(fleet)
        transaction.set_rollback(True)

    for mg in fleet:
        cycle_request(microgrid=mg, trigger=SCHEDULED, requested_at=asked, now=lambda: at)
    single = stored(fleet)

    assert batched == single
    # ... and the inputs were not trivial: every difference the fleet was built with shows.
    a, b, c = (single[i]["document"] for i in ids)
    assert a["breaches"][0]["new"] is True
    limits = single[ids[0]]["snapshot"]["limits"]
    assert limits["grid"]["envelope_ids"] and limits["grp-b"]["active_policy_id"]
    assert single[ids[0]]["triggers"] == [
        ("SCHEDULED", asked, True),
        ("TOU_TRANSITION", now - timedelta(seconds=1), True),
    ]
    assert b["source_mode"] == "FALLBACK_DERIVED" and b["scope_budgets"]
    assert any(ch.get("departure_at") for ch in b["chargers"])
    assert single[ids[2]]["row"]["seq"] == 2
    assert [x[1] for x in single[ids[2]]["breaches"]] == ["RESOLVED"]
    assert single[ids[2]]["deliveries"]
    assert any(ch.get("departure_at") for ch in c["chargers"])


@pytest.mark.django_db
def test_a_batch_reads_each_kind_of_input_once_for_all_its_members(microgrid, small_topology):
    """Neither the reads nor the writes grow with the batch."""
    fleet = [microgrid] + [another(f"MG.Q{i}", small_topology) for i in range(5)]
    now = timezone.now()
    for mg in fleet:
        telemetry_ingest(microgrid=mg, now=now, readings=readings(now, SITE=10, CH_01=150))
    ids = [mg.microgrid_id for mg in fleet]
    cycle_batch(ids, trigger=SCHEDULED)  # warm: prepared reads compiled, as in a worker
    counts = []
    for members in (ids[:2], ids):
        with CaptureQueriesContext(connection) as ctx:
            assert len(cycle_batch(members, trigger=SCHEDULED).cycles) == len(members)
        counts.append(ctx.captured_queries)
    reads = [[q for q in c if q["sql"].startswith("SELECT")] for c in counts]
    # Nor its writes: the members' cycles, fleet states and triggers are one statement each
    # for the batch (a pushed channel's outbox, none here, still writes per member).
    writes = [
        [q["sql"][:40] for q in c if not q["sql"].startswith(("SELECT", "SAVEPOINT", "RELEASE"))]
        for c in counts
    ]
    assert writes[1] == writes[0], writes[1]
    assert len(counts[1]) == len(counts[0]), [q["sql"][:80] for q in counts[1]]
    assert len(reads[1]) == len(reads[0]), [q["sql"][:80] for q in reads[1]]


@pytest.mark.django_db(transaction=True)
def test_a_member_someone_else_holds_is_left_out_of_the_batch(microgrid, small_topology):
    """A microgrid whose lock another transaction holds is `busy`: the task then cycles it on
    its own, waiting for the lock (PostgreSQL; SQLite serialises whole transactions)."""
    import threading

    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED are PostgreSQL's")
    from microgrid.topology.services import lock_microgrid

    other = another("MG.OTHER", small_topology)
    held, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            lock_microgrid(other)
            held.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        outcome = cycle_batch([microgrid.microgrid_id, "MG.OTHER"], trigger=SCHEDULED)
    finally:
        release.set()
        thread.join()
    assert list(outcome.cycles) == [microgrid.microgrid_id]
    assert outcome.busy == ["MG.OTHER"]
    assert not Cycle.objects.filter(microgrid=other).exists()


@pytest.mark.django_db
def test_disabled_microgrids_and_those_without_topology_are_not_cycled(
    microgrid, empty_microgrid, small_topology
):
    off = another("MG.OFF", small_topology)
    off.enabled = False
    off.save()
    from microgrid.topology.api.serializers import microgrid_input
    from microgrid.topology.services import microgrid_create

    bare = microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": "MG.BARE",
                "name": "bare",
                "depot": {"depot_id": "D-BARE", "name": "D", "timezone": "UTC"},
            }
        )
    )
    outcome = cycle_batch(["MG.OFF", "MG.BARE", microgrid.microgrid_id], trigger=SCHEDULED)
    assert list(outcome.cycles) == [microgrid.microgrid_id]
    assert outcome.idle == ["MG.OFF", "MG.BARE"] and outcome.busy == []
    assert not Cycle.objects.filter(microgrid__in=[off, bare]).exists()


@pytest.mark.django_db
def test_a_failing_member_rolls_the_batch_back_whole(microgrid, small_topology, monkeypatch):
    from balancing import batch

    other = another("MG.B", small_topology)
    real = batch.plan_locked

    def failing(mg, **kw):
        if mg.microgrid_id == "MG.B":
            raise RuntimeError("boom")
        return real(mg, **kw)

    monkeypatch.setattr(batch, "plan_locked", failing)
    with pytest.raises(RuntimeError):
        cycle_batch([microgrid.microgrid_id, "MG.B"], trigger=SCHEDULED)
    assert not Cycle.objects.filter(microgrid__in=[microgrid, other]).exists()
    assert not CycleTrigger.objects.exists()


@pytest.mark.django_db
def test_every_batched_read_answers_each_member_what_its_own_query_answers(
    microgrid, small_topology
):
    """The reads a batch answers from one query, against each microgrid's own query."""
    from balancing.inputs import _asset_rows
    from balancing.services import _open_breaches
    from dispatch.services import _config
    from microgrid.capabilities.selectors import _load_management_bindings
    from microgrid.common.prepared import batched
    from microgrid.envelopes.selectors import _in_window_rows
    from microgrid.limits.selectors import _policy_rows
    from microgrid.telemetry.selectors import _session_defaults
    from microgrid.topology.selectors import _node_rows
    from stations.services import _station_ids

    now = timezone.now()
    fleet = varied_fleet(microgrid, small_topology, now)
    for mg in fleet:  # open breaches where the meters say so
        cycle_request(microgrid=mg, trigger=SCHEDULED)
    pks = [mg.pk for mg in fleet]
    reads = {
        "nodes": lambda pk: _node_rows(microgrid=pk),
        "assets": lambda pk: _asset_rows(microgrid=pk),
        "policies": lambda pk: _policy_rows(microgrid=pk),
        "envelopes": lambda pk: [e.pk for e in _in_window_rows(microgrid=pk, at=now)],
        "bindings": lambda pk: [b.pk for b in _load_management_bindings(microgrid=pk)],
        "defaults": lambda pk: _session_defaults(microgrid=pk),
        "breaches": lambda pk: [b.pk for b in _open_breaches(microgrid=pk)],
        "dispatch": lambda pk: [c.pk for c in _config(microgrid=pk)],
        "stations": lambda pk: _station_ids(microgrid=pk),  # none here: empty for all
    }

    def sort(rows):
        return sorted(rows, key=repr)

    own = {name: [sort(read(pk)) for pk in pks] for name, read in reads.items()}
    assert all(any(rows) for name, rows in own.items() if name != "stations"), own
    for name, read in reads.items():
        with batched(microgrid=pks), CaptureQueriesContext(connection) as ctx:
            rows = [sort(read(pk)) for pk in pks]
            again = sort(read(pks[0]))  # a second call for a member reads again
        assert rows == own[name], name
        assert again == own[name][0]
        assert len(ctx.captured_queries) == 2, name


@pytest.mark.django_db
def test_a_read_that_cannot_be_answered_per_member_from_one_query_is_refused(microgrid):
    from microgrid.common.prepared import PreparedRead, batched

    sliced = PreparedRead(
        lambda microgrid: Cycle.objects.filter(microgrid_id=microgrid).order_by("-seq")[:1],
        microgrid=int,
        batch_by="microgrid",
    )
    with batched(microgrid=[microgrid.pk]), pytest.raises(TypeError, match="slice"):
        sliced(microgrid=microgrid.pk)
    assert sliced(microgrid=microgrid.pk) == []  # outside a batch: its own query
    with pytest.raises(TypeError, match="names no parameter"):
        PreparedRead(lambda microgrid: Cycle.objects.all(), microgrid=int, batch_by="mg")


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_batch_committed_never_cycles_its_members_again(
    microgrid, small_topology, monkeypatch
):
    """A receiver's on_commit that raises comes after the cycles are stored: the task must
    not take it for a failed batch and cycle every member a second time."""
    from balancing import batch, tasks

    another("MG.B", small_topology)
    real = batch.hand_over

    def hand_over_then_fail_after_commit(mg, cycle):
        real(mg, cycle)
        transaction.on_commit(lambda: 1 / 0)

    monkeypatch.setattr(batch, "hand_over", hand_over_then_fail_after_commit)
    asked = timezone.now().isoformat()
    assert tasks.run_scheduled_cycles.run([microgrid.microgrid_id, "MG.B"], asked, 15) == 2
    assert Cycle.objects.filter(trigger_type="SCHEDULED").count() == 2
    assert sorted(Cycle.objects.values_list("seq", flat=True)) == [1, 1]
