"""Compacted cycles (issue 18): closed, aggregated quarter hours of cycles move into blocks,
and every reader reads a compacted cycle as it read its row: the API list (filters, order,
paging) and detail, the Manage pages and charts, admin, replay, the simulator's artifacts,
pruning and the aggregates. On SQLite and, with DATABASE_URL=postgres://..., PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from balancing import blocks, selectors
from balancing.lifecycle import (
    cycle_aggregate,
    cycle_block_prune,
    cycle_compact,
    cycle_maintain,
    cycle_prune,
)
from balancing.models import (
    Breach,
    Cycle,
    CycleAggregate,
    CycleBlock,
    CycleRecordPart,
    CycleTrigger,
    cycle_id_of,
    cycle_id_prefix,
    cycle_seq_of,
)
from balancing.services import cycle_request, trigger_of
from microgrid.telemetry.services import telemetry_ingest

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STEP = timedelta(seconds=15)


def _readings(at: datetime, i: int, grid_kw: float) -> list[dict]:
    out = [
        {
            "asset_id": c,
            "power_kw": 0,
            "observed_at": (at - timedelta(milliseconds=37 * (i + k))).isoformat(),
            "connected": True,
            "requested_kw": 20 + (i * 7 + k * 13) % 130,
        }
        for k, c in enumerate(("CH-01", "CH-02", "CH-03"))
    ]
    out += [
        {"asset_id": "SITE", "power_kw": 50 + i % 5, "observed_at": at.isoformat()},
        {"asset_id": "M-GRID", "power_kw": grid_kw, "observed_at": at.isoformat()},
    ]
    return out


def _run(microgrid, start: datetime, n: int, *, kind="SCHEDULED", grid_kw=100.0) -> list[Cycle]:
    out = []
    for i in range(n):
        at = start + STEP * i
        telemetry_ingest(microgrid=microgrid, now=at, readings=_readings(at, i, grid_kw))
        out.append(
            cycle_request(microgrid=microgrid, trigger=trigger_of(kind), now=lambda at=at: at).cycle
        )
    return out


def _api_list(api, microgrid, query: str = "") -> list[dict]:
    answer = api.get(f"/api/microgrids/{microgrid.microgrid_id}/cycles/{query}")
    assert answer.status_code == 200, answer.content
    return answer.json()["cycles"]


def _api_detail(api, microgrid, cycle_id: str):
    return api.get(f"/api/microgrids/{microgrid.microgrid_id}/cycles/{cycle_id}/")


def _listed(page) -> list[str]:
    """The rows of the Manage cycles page, as the cycle ids and the row's text."""
    assert page.status_code == 200
    return re.findall(r'<tr data-cycle-id="([0-9a-f]+)">(.*?)</tr>', page.content.decode(), re.S)


def _compact_all(now: datetime) -> int:
    cycle_aggregate(now=now, limit=100_000)
    return cycle_compact(now=now, limit=100_000)


def test_a_cycle_id_names_its_microgrid_and_seq():
    cycle_id = cycle_id_of("MG.NORTH-1", 300)
    assert len(cycle_id) == 32 and int(cycle_id, 16) >= 0
    assert cycle_seq_of(cycle_id) == (cycle_id_prefix("MG.NORTH-1"), 300)
    assert cycle_id_of("MG.NORTH-2", 300)[:24] != cycle_id[:24]
    # Any other text is no such id, never an error.
    for other in ("", "x" * 32, cycle_id.upper(), cycle_id + "0", "a.b", "5" * 32, None, 7):
        assert cycle_seq_of(other) is None


def test_closed_aggregated_quarter_hours_move_into_blocks(microgrid):
    cycles = _run(microgrid, T0, 70)  # 60 in 09:00-09:15, 10 after
    now = T0 + timedelta(minutes=40)
    # Nothing aggregated yet: nothing moves.
    assert cycle_compact(now=now) == 0
    cycle_aggregate(now=now, limit=1000)
    sums_before = list(CycleAggregate.objects.order_by("node_id", "bucket_start").values())
    assert cycle_compact(now=now) == 60
    block = CycleBlock.objects.get()
    assert (block.first_seq, block.last_seq, block.cycles) == (1, 60, 60)
    assert (block.started_from, block.started_to) == (T0, T0 + STEP * 59)
    assert block.record_part_id == cycles[0].record_part_id
    # Their rows and the triggers they served are gone; the later quarter hour stays rows.
    assert sorted(Cycle.objects.values_list("seq", flat=True)) == list(range(61, 71))
    assert not CycleTrigger.objects.filter(served_by__seq__lte=60).exists()
    assert CycleTrigger.objects.count() == 10
    # The aggregates are what they were; running again changes nothing.
    assert list(CycleAggregate.objects.order_by("node_id", "bucket_start").values()) == sums_before
    assert cycle_compact(now=now) == 0


def test_a_compacted_cycle_reads_as_its_row_did_through_the_api(microgrid, operator_api):
    _run(microgrid, T0, 64)
    _run(microgrid, T0 + STEP * 64, 2, kind="API")
    queries = [
        "",
        "?limit=200",
        "?limit=7",
        "?trigger=API",
        "?trigger=SCHEDULED&limit=100",
        "?outcome=CONSTRAINED&limit=100",
        "?source_mode=MEASURED&limit=100",
        f"?since={(T0 + STEP * 10).isoformat().replace('+', '%2B')}&limit=100",
        f"?until={(T0 + STEP * 30).isoformat().replace('+', '%2B')}&limit=5",
        f"?since={(T0 + STEP * 55).isoformat().replace('+', '%2B')}"
        f"&until={(T0 + STEP * 62).isoformat().replace('+', '%2B')}",
    ]
    lists = {q: _api_list(operator_api, microgrid, q) for q in queries}
    ids = [c["cycle_id"] for c in lists["?limit=200"]]
    details = {i: _api_detail(operator_api, microgrid, i).json() for i in ids}
    assert _compact_all(T0 + timedelta(minutes=40)) == 60
    assert Cycle.objects.count() == 6
    for q, before in lists.items():
        assert _api_list(operator_api, microgrid, q) == before, q
    for cycle_id, before in details.items():
        answer = _api_detail(operator_api, microgrid, cycle_id)
        assert answer.status_code == 200
        assert answer.json() == before
    # The served triggers and the dispatch section of a compacted cycle are kept.
    first = details[ids[-1]]
    assert first["served_triggers"] == [{"type": "SCHEDULED"}]
    assert "dispatch" in first


def test_an_unknown_or_foreign_cycle_id_is_not_found(microgrid, operator_api, empty_microgrid):
    _run(microgrid, T0, 61)
    _compact_all(T0 + timedelta(minutes=40))
    compacted = cycle_id_of(microgrid.microgrid_id, 5)
    assert _api_detail(operator_api, microgrid, compacted).status_code == 200
    for unknown in (
        cycle_id_of(microgrid.microgrid_id, 999),
        cycle_id_of("MG.OTHER", 5),
        compacted.upper(),
        compacted[:-1],
        "MG.NORTH-1.5",
    ):
        answer = _api_detail(operator_api, microgrid, unknown)
        assert answer.status_code == 404, unknown
        assert answer.json()["code"] == "CYCLE_NOT_FOUND"


def test_manage_pages_charts_and_admin_show_compacted_cycles(
    microgrid, operator_client, support_client
):
    _run(microgrid, T0, 62)
    page = f"/manage/microgrids/{microgrid.microgrid_id}/cycles/"
    before_series = selectors.recent_series(microgrid, count=40)
    before_all = selectors.recent_series(microgrid, count=100)
    second_page = _listed(operator_client.get(page + "?page=2"))
    assert len(second_page) == 12
    _compact_all(T0 + timedelta(minutes=40))
    assert Cycle.objects.count() == 2
    assert selectors.recent_series(microgrid, count=40) == before_series
    assert selectors.recent_series(microgrid, count=100) == before_all
    listing = operator_client.get(page)
    assert listing.status_code == 200
    assert f'href="{cycle_id_of(microgrid.microgrid_id, 13)}/"' in listing.content.decode()
    assert _listed(operator_client.get(page + "?page=2")) == second_page
    detail = operator_client.get(f"{page}{cycle_id_of(microgrid.microgrid_id, 7)}/")
    assert detail.status_code == 200 and "Cycle #7" in detail.content.decode()
    # Support staff see every cycle of a block in admin.
    block = CycleBlock.objects.get()
    assert support_client.get("/admin/balancing/cycleblock/").status_code == 200
    change = support_client.get(f"/admin/balancing/cycleblock/{block.pk}/change/")
    assert change.status_code == 200
    text = change.content.decode()
    assert cycle_id_of(microgrid.microgrid_id, 1) in text
    assert cycle_id_of(microgrid.microgrid_id, 60) in text


def test_replay_and_the_simulators_order_read_compacted_cycles(microgrid, capsys):
    rows = _run(microgrid, T0, 61)
    documents = {c.seq: c.document for c in rows}
    _compact_all(T0 + timedelta(minutes=40))
    call_command("replay_cycle", cycle_id_of(microgrid.microgrid_id, 17))
    assert "IDENTICAL" in capsys.readouterr().out
    read = list(selectors.cycles_by_seq(microgrid))
    assert [c.seq for c in read] == list(range(1, 62))
    assert {c.seq: c.document for c in read} == documents
    assert selectors.cycle_seqs(microgrid) == {c.cycle_id: c.seq for c in rows}
    with pytest.raises(SystemExit):
        call_command("replay_cycle", cycle_id_of(microgrid.microgrid_id, 500))


def test_referenced_and_newest_cycles_stay_rows(microgrid):
    cycles = _run(microgrid, T0, 3, grid_kw=900.0)  # a breach opens at the first
    cycles += _run(microgrid, T0 + STEP * 3, 3)
    breach = Breach.objects.get()
    assert breach.cycle_id == cycles[0].pk
    _compact_all(T0 + timedelta(minutes=40))
    kept = set(Cycle.objects.values_list("seq", flat=True))
    # The breach's cycle (and the one that resolved it) and the newest stay rows.
    assert 1 in kept and 6 in kept
    if breach.resolved_by_id:
        assert Cycle.objects.get(pk=breach.resolved_by_id).seq in kept
    compacted = set(blocks.newest_first(microgrid, need=0))
    assert {c.seq for c in compacted} | kept == set(range(1, 7))
    breach.refresh_from_db()
    assert breach.to_dict()["cycle_id"] == cycles[0].cycle_id
    # The next cycle goes on from the newest.
    assert _run(microgrid, T0 + timedelta(hours=1), 1)[0].seq == 7


def test_blocks_split_at_quarter_hours_and_a_bounded_run_takes_them_whole(microgrid):
    _run(microgrid, T0 + timedelta(minutes=14), 12)  # 4 in 09:00-09:15, 8 after
    _run(microgrid, T0 + timedelta(minutes=30), 1)
    cycle_aggregate(now=T0 + timedelta(hours=1), limit=1000)
    # A run whose limit would cut the second quarter hour takes the first only.
    assert cycle_compact(now=T0 + timedelta(hours=1), limit=6) == 4
    assert cycle_compact(now=T0 + timedelta(hours=1), limit=6) == 6  # alone: cut, not stuck
    assert cycle_compact(now=T0 + timedelta(hours=1), limit=6) == 2
    spans = list(CycleBlock.objects.order_by("first_seq").values_list("first_seq", "last_seq"))
    assert spans == [(1, 4), (5, 10), (11, 12)]
    assert [c.seq for c in selectors.cycles_by_seq(microgrid)] == list(range(1, 14))


def test_compaction_takes_the_same_queries_for_many_cycles_as_for_few(microgrid):
    from balancing.models import CycleAggregateCursor

    counts = []
    for n, start in ((3, T0), (40, T0 + timedelta(hours=1))):
        _run(microgrid, start, n)
        _run(microgrid, start + timedelta(minutes=20), 1)
        CycleAggregateCursor.objects.all().delete()
        CycleAggregate.objects.all().delete()
        cycle_aggregate(now=start + timedelta(minutes=50), limit=1000)
        with CaptureQueriesContext(connection) as ctx:
            # (the second run takes the first one's last cycle too: no longer the newest)
            assert cycle_compact(now=start + timedelta(minutes=50)) == n + len(counts)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 12, counts


@override_settings(CYCLE_RETENTION_DAYS=14, CYCLE_COMPACT_LOOKBACK_HOURS=24 * 30)
def test_blocks_past_retention_are_pruned_and_their_parts_with_them(microgrid):
    old = _run(microgrid, T0, 10)
    recent = _run(microgrid, T0 + timedelta(days=20), 1)
    recent += _run(microgrid, T0 + timedelta(days=20, minutes=30), 1)
    now = T0 + timedelta(days=20, hours=1)
    cycle_aggregate(now=now, limit=1000)
    assert cycle_compact(now=now) == 11  # the old ten and the recent first
    assert CycleBlock.objects.count() == 2
    assert cycle_block_prune(now=now, limit=1) == 1
    assert cycle_block_prune(now=now, limit=1) == 0  # the recent block is kept
    assert cycle_prune(now=now) == 0  # no old row left
    assert CycleAggregate.objects.filter(bucket_start=T0).exists()
    assert (
        not CycleRecordPart.objects.filter(digest=old[0].record_part_id)
        .exclude(digest=recent[0].record_part_id)
        .exists()
    )
    # What is left reads whole: the recent block's cycle and the newest row.
    assert [c.seq for c in selectors.cycles_by_seq(microgrid)] == [11, 12]
    assert selectors.cycle_get(microgrid, recent[0].cycle_id).document == recent[0].document
    # The maintenance task runs all the steps.
    assert set(cycle_maintain(now=now)) == {
        "dispatch_pruned",
        "block_days_created",
        "block_days_dropped",
        "aggregated",
        "compacted",
        "pruned",
        "aggregates_pruned",
    }


def test_a_compacted_cycle_cannot_be_saved(microgrid):
    _run(microgrid, T0, 1)
    _run(microgrid, T0 + timedelta(minutes=30), 1)
    assert _compact_all(T0 + timedelta(minutes=50)) == 1
    cycle = selectors.cycle_get(microgrid, cycle_id_of(microgrid.microgrid_id, 1))
    assert cycle.in_block and cycle.pk is None
    with pytest.raises(ValueError):
        cycle.save()


def test_cycles_stored_before_ids_named_their_seq_stay_rows_and_are_found(microgrid, operator_api):
    """An upgraded database: cycles stored with uuid5 ids keep them, stay rows (until pruned)
    and are found by them; the cycles after the upgrade are compacted around them."""
    from balancing.services import stable_id

    cycles = _run(microgrid, T0, 40)
    for cycle in cycles[:20]:
        Cycle.objects.filter(pk=cycle.pk).update(
            cycle_id=stable_id("cycle", microgrid.microgrid_id, cycle.seq)
        )
    _run(microgrid, T0 + timedelta(minutes=30), 1)
    before = _api_list(operator_api, microgrid, "?limit=100")
    assert _compact_all(T0 + timedelta(minutes=50)) == 20
    assert sorted(Cycle.objects.values_list("seq", flat=True)) == list(range(1, 21)) + [41]
    assert _api_list(operator_api, microgrid, "?limit=100") == before
    old = stable_id("cycle", microgrid.microgrid_id, 3)
    assert _api_detail(operator_api, microgrid, old).json()["cycle_id"] == old
    call_command("replay_cycle", old)
    assert [c.seq for c in selectors.cycles_by_seq(microgrid)] == list(range(1, 42))


@override_settings(CYCLE_COMPACT_LOOKBACK_HOURS=24)
def test_compaction_looks_back_a_day_only(microgrid):
    _run(microgrid, T0, 3)
    _run(microgrid, T0 + timedelta(days=2), 3)
    _run(microgrid, T0 + timedelta(days=2, minutes=30), 1)
    # Cycles two days behind the aggregation stay rows (a backlog that old is pruned).
    assert _compact_all(T0 + timedelta(days=2, minutes=50)) == 3
    assert sorted(Cycle.objects.values_list("seq", flat=True)) == [1, 2, 3, 7]
