"""History rows copied by the database match the ones simple-history writes itself."""

from datetime import timedelta

import pytest
from django.utils import timezone

from microgrid.common.history import record_history
from microgrid.topology.models import Depot

pytestmark = pytest.mark.django_db


def test_rows_created_in_bulk_get_the_history_a_save_would_have_written():
    saved = Depot.objects.create(depot_id="D-SAVED", name="Saved", timezone="UTC")
    Depot.objects.bulk_create(
        [Depot(depot_id=f"D-BULK-{i}", name=f"Bulk {i}", timezone="Europe/Oslo") for i in range(3)]
    )
    at = timezone.now() - timedelta(minutes=5)
    assert (
        record_history(
            Depot.objects.filter(depot_id__startswith="D-BULK-"), history_type="+", date=at
        )
        == 3
    )

    by_save = Depot.history.get(depot_id="D-SAVED")
    rows = list(Depot.history.filter(depot_id__startswith="D-BULK-").order_by("history_id"))
    assert [r.depot_id for r in rows] == ["D-BULK-0", "D-BULK-1", "D-BULK-2"]
    for row in rows:
        live = Depot.objects.get(depot_id=row.depot_id)
        assert row.id == live.pk and row.timezone == "Europe/Oslo"
        assert (row.history_type, row.history_date, row.history_user_id) == ("+", at, None)
        assert row.history_change_reason == by_save.history_change_reason
    # Nobody signed in: the row says the system made it (admin showed "None" before).
    assert by_save.history_change_reason == "system (no signed-in user)"
    assert by_save.history_user_id is None
    assert saved.history.count() == 1


def test_a_change_is_recorded_as_the_row_now_is():
    Depot.objects.create(depot_id="D-1", name="Before", timezone="UTC")
    Depot.objects.filter(depot_id="D-1").update(name="After")
    at = timezone.now()
    assert record_history(Depot.objects.filter(depot_id="D-1"), history_type="~", date=at) == 1
    assert [(h.history_type, h.name) for h in Depot.history.order_by("history_id")] == [
        ("+", "Before"),
        ("~", "After"),
    ]


def test_only_creation_and_change_can_be_recorded():
    with pytest.raises(ValueError):
        record_history(Depot.objects.all(), history_type="-", date=timezone.now())
