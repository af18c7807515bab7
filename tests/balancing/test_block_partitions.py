"""Cycle blocks partitioned by day on PostgreSQL (issue 18, migration balancing.0014): the
maintenance makes the days ahead, compaction writes into its day, a day past retention
leaves whole while the kept days read as before, and a block of a day without a partition
waits in the DEFAULT one until that day's partition is made. Skipped on SQLite (plain table;
tests/balancing/test_cycle_blocks.py covers the row-by-row pruning there)."""

from datetime import UTC, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import override_settings

from balancing import selectors
from balancing.lifecycle import cycle_block_days, cycle_maintain
from balancing.models import CycleBlock, cycle_id_of
from microgrid.common import partitions
from tests.balancing.test_cycle_blocks import T0, _api_detail, _compact_all, _run

TABLE = CycleBlock._meta.db_table
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's"),
]


def _homes() -> dict[int, str]:
    """first_seq -> the partition its block is stored in."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT first_seq, tableoid::regclass::text FROM {TABLE}")
        return dict(cursor.fetchall())


def _day(at) -> str:
    return f"{TABLE}_p{at.astimezone(UTC).date():%Y%m%d}"


@override_settings(CYCLE_PARTITION_DAYS_AHEAD=3)
def test_blocks_are_kept_in_day_partitions_the_maintenance_makes_ahead(microgrid):
    assert partitions.is_partitioned(connection, TABLE)
    _run(microgrid, T0, 10)
    _run(microgrid, T0 + timedelta(minutes=20), 1)
    done = cycle_maintain(now=T0 + timedelta(minutes=40))
    assert done["block_days_created"] == 4 and done["compacted"] == 10
    today = T0.date()
    assert {today + timedelta(days=d) for d in range(4)} <= set(partitions.days(connection, TABLE))
    assert _homes() == {1: _day(T0)}
    # Run again, nothing more to make.
    assert cycle_block_days(now=T0 + timedelta(minutes=41))["block_days_created"] == 0


@override_settings(CYCLE_RETENTION_DAYS=14)
def test_a_day_past_retention_is_dropped_whole_and_the_kept_day_reads_as_before(
    microgrid, operator_api
):
    _run(microgrid, T0, 10)
    _run(microgrid, T0 + timedelta(minutes=20), 1)
    cycle_maintain(now=T0 + timedelta(minutes=40))
    assert _homes() == {1: _day(T0)}
    later = T0 + timedelta(days=20)
    recent = _run(microgrid, later, 30)
    _run(microgrid, later + timedelta(minutes=30), 1)
    old_id = cycle_id_of(microgrid.microgrid_id, 5)
    assert _api_detail(operator_api, microgrid, old_id).status_code == 200
    kept_id = recent[7].cycle_id
    before = _api_detail(operator_api, microgrid, kept_id).json()

    done = cycle_maintain(now=later + timedelta(hours=1))
    # The day of the old block and the days made ahead of it are gone, with their blocks;
    # nothing was deleted row by row but the old quarter hour's last cycle, still a row.
    assert done["block_days_dropped"] == 4 and done["compacted"] == 30
    assert done["pruned"] == 1
    assert T0.date() not in partitions.days(connection, TABLE)
    assert _homes() == {12: _day(later)}
    assert _api_detail(operator_api, microgrid, old_id).status_code == 404
    # The kept day's cycles read through the API and replay as they did.
    assert _api_detail(operator_api, microgrid, kept_id).json() == before
    call_command("replay_cycle", kept_id)
    assert [c.seq for c in selectors.cycles_by_seq(microgrid)] == list(range(12, 43))


def test_a_block_of_a_day_without_partition_waits_in_the_default_one_then_moves(microgrid):
    day = T0.date()
    assert day not in partitions.days(connection, TABLE)
    rows = _run(microgrid, T0, 61)
    assert _compact_all(T0 + timedelta(minutes=40)) == 60
    assert _homes() == {1: f"{TABLE}_default"}
    assert partitions.ensure_days(connection, TABLE, day, day) == [day]
    assert _homes() == {1: _day(T0)}
    assert [c.document for c in selectors.cycles_by_seq(microgrid)] == [r.document for r in rows]
