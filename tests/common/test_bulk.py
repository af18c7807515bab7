"""insert_rows (microgrid/common/bulk.py): the rows `bulk_create` writes, with one statement
whose SQL does not grow with the rows (PostgreSQL), and its upsert."""

from datetime import timedelta

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from balancing.models import Cycle, CycleTrigger
from microgrid.common.bulk import insert_rows
from microgrid.fleet.models import MicrogridState


def triggers(microgrid, at, served_by=None):
    return [
        CycleTrigger(
            microgrid=microgrid,
            trigger={"type": kind, "n": [i, None, "x"]},
            scope={"type": "MICROGRID"},
            requested_at=at + timedelta(microseconds=i),
            served_by=served_by if i else None,
        )
        for i, kind in enumerate(["SCHEDULED", "LIMIT_CHANGE", "TOU_TRANSITION"])
    ]


def rows(objs):
    return [{k: v for k, v in model_to_dict(o).items() if k != "id"} for o in objs]


@pytest.mark.django_db
def test_insert_rows_writes_what_bulk_create_writes_and_sets_the_keys(microgrid):
    from balancing.services import cycle_request, trigger_of

    cycle = cycle_request(microgrid=microgrid, trigger=trigger_of("SCHEDULED")).cycle
    at = timezone.now()
    ours, theirs = triggers(microgrid, at, cycle), triggers(microgrid, at, cycle)
    with CaptureQueriesContext(connection) as ctx:
        insert_rows(ours)
    CycleTrigger.objects.bulk_create(theirs)
    assert len(ctx.captured_queries) == 1
    assert all(t.pk is not None and not t._state.adding for t in ours)
    stored = CycleTrigger.objects.filter(pk__in=[t.pk for t in ours]).order_by("pk")
    expected = CycleTrigger.objects.filter(pk__in=[t.pk for t in theirs]).order_by("pk")
    assert rows(stored) == rows(expected) == rows(theirs)
    assert [t.pk for t in stored] == [t.pk for t in ours]
    # The same statement for any number of rows (compiled once).
    with CaptureQueriesContext(connection) as more:
        insert_rows(triggers(microgrid, at) + triggers(microgrid, at))
    if connection.vendor == "postgresql":
        assert more.captured_queries[0]["sql"].count("unnest") == 1
        assert more.captured_queries[0]["sql"].startswith(
            ctx.captured_queries[0]["sql"].split(" SELECT")[0]
        )


@pytest.mark.django_db
def test_insert_rows_updates_the_rows_that_exist_when_asked(microgrid):
    from microgrid.fleet.services import STATE_FIELDS

    def state(seq):
        return MicrogridState(
            microgrid=microgrid,
            cycle_id=f"c{seq}",
            cycle_seq=seq,
            completed_at=timezone.now(),
            trigger_type="SCHEDULED",
            outcome="OK",
            source_mode="MEASURED",
            reason_codes=["A", seq],
            root_load_kw=None,
        )

    insert_rows([state(1)], unique_fields=["microgrid"], update_fields=STATE_FIELDS)
    insert_rows([state(2)], unique_fields=["microgrid"], update_fields=STATE_FIELDS)
    row = MicrogridState.objects.get(microgrid=microgrid)
    assert (row.cycle_id, row.cycle_seq, row.reason_codes) == ("c2", 2, ["A", 2])


@pytest.mark.django_db
def test_insert_rows_refuses_objects_that_are_stored_already(microgrid):
    trigger = triggers(microgrid, timezone.now())[0]
    trigger.save()
    with pytest.raises(ValueError, match="new objects"):
        insert_rows([trigger])
    with pytest.raises(TypeError, match="one model"):
        insert_rows([triggers(microgrid, timezone.now())[0], Cycle()])


@pytest.mark.django_db
def test_insert_rows_leaves_existing_rows_as_they_are_when_told_to_ignore_conflicts(microgrid):
    from balancing.models import CycleRecordPart

    insert_rows([CycleRecordPart(digest="d1", data=b"first")], ignore_conflicts=True)
    insert_rows(
        [CycleRecordPart(digest="d1", data=b"second"), CycleRecordPart(digest="d2", data=b"x")],
        ignore_conflicts=True,
    )
    stored = dict(CycleRecordPart.objects.values_list("digest", "data"))
    assert {k: bytes(v) for k, v in stored.items()} == {"d1": b"first", "d2": b"x"}
    # Keys the database gives cannot be matched to rows it skipped.
    with pytest.raises(ValueError, match="key the caller gives"):
        insert_rows(triggers(microgrid, timezone.now()), ignore_conflicts=True)
