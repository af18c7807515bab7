"""Readings leave by retention: whole days dropped on PostgreSQL (partitions), rows elsewhere."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from microgrid.common import partitions
from microgrid.telemetry.models import TelemetryReading
from microgrid.telemetry.services import telemetry_ingest, telemetry_maintain

TABLE = TelemetryReading._meta.db_table
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitions are PostgreSQL's"
)


def _site(microgrid, at, kw=10.0):
    telemetry_ingest(
        microgrid=microgrid,
        readings=[{"asset_id": "SITE", "power_kw": kw, "observed_at": at.isoformat()}],
        now=at,
    )


@pytest.mark.django_db
def test_readings_past_retention_leave_and_the_others_stay(microgrid):
    now = timezone.now()
    retention = timedelta(hours=settings.TELEMETRY_RETENTION_HOURS)
    for hours in (200, 100, 30 + retention.total_seconds() / 3600):
        _site(microgrid, now - timedelta(hours=hours))
    _site(microgrid, now - retention + timedelta(hours=1))
    _site(microgrid, now)
    done = telemetry_maintain(now=now)
    left = sorted(TelemetryReading.objects.values_list("observed_at", flat=True))
    assert left and all(at >= now - retention for at in left)
    assert len(left) == 2
    if connection.vendor != "postgresql":
        assert done == {"days_created": 0, "days_dropped": 0, "deleted": 3}


@postgres_only
@pytest.mark.django_db
def test_on_postgresql_readings_are_kept_in_day_partitions_made_ahead(microgrid):
    assert partitions.is_partitioned(connection, TABLE)
    now = timezone.now()
    telemetry_maintain(now=now)
    today = now.astimezone(UTC).date()
    have = partitions.days(connection, TABLE)
    ahead = settings.TELEMETRY_PARTITION_DAYS_AHEAD
    assert {today + timedelta(days=d) for d in range(ahead + 1)} <= set(have)
    _site(microgrid, now)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {TABLE}")
        assert cursor.fetchall() == [(f"{TABLE}_p{today:%Y%m%d}",)]


@postgres_only
@pytest.mark.django_db
def test_a_reading_of_a_day_without_partition_waits_in_the_default_one_then_moves(microgrid):
    far = timezone.now() + timedelta(days=40)
    day = far.astimezone(UTC).date()
    assert day not in partitions.days(connection, TABLE)
    _site(microgrid, far)
    _site(microgrid, far)  # a repeat is stored once, partitioned or not
    assert TelemetryReading.objects.filter(observed_at=far).count() == 1
    assert partitions.ensure_days(connection, TABLE, day, day) == [day]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text, power_kw FROM {TABLE}")
        assert cursor.fetchall() == [(f"{TABLE}_p{day:%Y%m%d}", 10.0)]
    # A day goes whole once it has ended before the cutoff, not before.
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    assert day not in partitions.drop_days_before(connection, TABLE, end - timedelta(seconds=1))
    assert TelemetryReading.objects.filter(observed_at=far).exists()
    assert day in partitions.drop_days_before(connection, TABLE, end)
    assert not TelemetryReading.objects.filter(observed_at=far).exists()
    assert day not in partitions.days(connection, TABLE)
