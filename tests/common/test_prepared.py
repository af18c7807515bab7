"""A prepared read returns what its QuerySet returns, in one query, for any parameter values."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from microgrid.common.prepared import PreparedRead
from microgrid.telemetry.models import LatestReading
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.api.serializers import microgrid_input
from microgrid.topology.models import Asset, Microgrid, MicrogridNode

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_microgrids(microgrid, small_topology):
    """MG.NORTH-1 and a second microgrid with the same tree, both with readings."""
    from microgrid.topology.services import microgrid_create, topology_replace

    other = microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": "MG.SOUTH-2",
                "name": "South",
                "depot": {"depot_id": "DEPOT-S", "name": "South Depot", "timezone": "UTC"},
            }
        )
    )
    topology_replace(
        microgrid=other,
        base_version=0,
        nodes=small_topology["nodes"],
        assets=small_topology["assets"][:2],
    )
    now = timezone.now()
    for mg, power in ((microgrid, 10.0), (other, 20.0)):
        telemetry_ingest(
            microgrid=mg,
            now=now,
            readings=[
                {
                    "asset_id": "CH-01",
                    "power_kw": power,
                    "observed_at": now.isoformat(),
                    "connected": True,
                    "requested_kw": 50,
                },
                {
                    "asset_id": "CH-02",
                    "power_kw": power + 1,
                    "observed_at": (now - timedelta(minutes=5)).isoformat(),
                    "connected": True,
                    "requested_kw": 50,
                },
            ],
        )
    return microgrid, other


def test_a_values_read_gives_the_querysets_dicts_for_each_microgrid(two_microgrids):
    def build(microgrid):
        return (
            MicrogridNode.objects.filter(microgrid_id=microgrid)
            .order_by("node_id")
            .values("node_id", "parent__node_id", "physical_rating_kw")
        )

    read = PreparedRead(build, microgrid=int)
    for mg in two_microgrids:
        assert read(microgrid=mg.pk) == list(build(mg.pk))
    assert read(microgrid=-1) == []


def test_a_values_list_read_converts_joined_datetimes_as_the_queryset_does(two_microgrids):
    def build(microgrid):
        return (
            Asset.objects.filter(microgrid_id=microgrid)
            .order_by("asset_id")
            .values_list("asset_id", "node__node_id", "latest_reading__observed_at")
        )

    read = PreparedRead(build, microgrid=int)
    for mg in two_microgrids:
        rows = read(microgrid=mg.pk)
        assert rows == list(build(mg.pk))
        assert any(r[2] is not None and r[2].tzinfo is not None for r in rows)


def test_timestamps_come_back_as_the_querysets_with_the_same_tzinfo(two_microgrids):
    """On PostgreSQL a prepared read parses timestamptz with psycopg's C loader, not Django's
    Python one: the values, their time zone object and their microseconds must not differ."""

    def build(microgrid):
        return (
            LatestReading.objects.filter(microgrid_id=microgrid)
            .order_by("id")
            .values_list("observed_at", "updated_at")
        )

    read = PreparedRead(build, microgrid=int)
    for mg in two_microgrids:
        rows, expected = read(microgrid=mg.pk), list(build(mg.pk))
        assert rows == expected
        assert [[v.tzinfo for v in r] for r in rows] == [[v.tzinfo for v in r] for r in expected]
        assert [[v.microsecond for v in r] for r in rows] == [
            [v.microsecond for v in r] for r in expected
        ]


def test_a_flat_read_with_a_limit_gives_the_first_value_only(two_microgrids):
    def build(microgrid):
        return (
            Asset.objects.filter(microgrid_id=microgrid)
            .order_by("-asset_id")
            .values_list("asset_id", flat=True)[:1]
        )

    read = PreparedRead(build, microgrid=int)
    assert read(microgrid=two_microgrids[0].pk) == ["SITE"]
    assert read(microgrid=two_microgrids[1].pk) == ["CH-02"]


def test_a_datetime_parameter_filters_like_the_queryset(two_microgrids):
    def build(microgrid, since):
        return LatestReading.objects.filter(microgrid_id=microgrid, observed_at__gte=since)

    read = PreparedRead(build, microgrid=int, since=type(timezone.now()))
    mg = two_microgrids[1]
    for since in (timezone.now() - timedelta(minutes=1), timezone.now() - timedelta(hours=1)):
        got = read(microgrid=mg.pk, since=since)
        want = list(build(mg.pk, since))
        assert [(r.pk, r.power_kw, r.observed_at) for r in got] == [
            (r.pk, r.power_kw, r.observed_at) for r in want
        ]
    assert len(read(microgrid=mg.pk, since=timezone.now() - timedelta(hours=1))) == 2


def test_a_string_parameter_and_select_related_fill_the_related_object(two_microgrids):
    def build(microgrid_id):
        return Microgrid.objects.filter(microgrid_id=microgrid_id).select_related("depot")

    read = PreparedRead(build, microgrid_id=str)
    (found,) = read(microgrid_id="MG.SOUTH-2")
    assert found.pk == two_microgrids[1].pk
    assert found.depot.depot_id == "DEPOT-S"  # no query: filled from the join
    assert read(microgrid_id="MG.NOWHERE") == []


def test_each_call_is_one_query(two_microgrids, django_assert_num_queries):
    read = PreparedRead(
        lambda microgrid: Asset.objects.filter(microgrid_id=microgrid).values_list("asset_id"),
        microgrid=int,
    )
    read(microgrid=two_microgrids[0].pk)  # compiles
    with django_assert_num_queries(1):
        read(microgrid=two_microgrids[1].pk)


@pytest.mark.django_db(transaction=True)
def test_a_locking_read_needs_a_transaction_as_its_queryset_does(two_microgrids):
    read = PreparedRead(lambda pk: Microgrid.objects.select_for_update().filter(pk=pk), pk=int)
    with transaction.atomic():
        assert [m.pk for m in read(pk=two_microgrids[0].pk)] == [two_microgrids[0].pk]
    with pytest.raises(TransactionManagementError):
        read(pk=two_microgrids[0].pk)


def test_reads_it_cannot_reproduce_are_refused_when_first_run(two_microgrids):
    from django.db.models import Count

    annotated = PreparedRead(
        lambda pk: Microgrid.objects.filter(pk=pk).annotate(n=Count("nodes")), pk=int
    )
    with pytest.raises(TypeError):
        annotated(pk=two_microgrids[0].pk)
    unused = PreparedRead(lambda pk: Microgrid.objects.all(), pk=int)
    with pytest.raises(TypeError):
        unused(pk=two_microgrids[0].pk)


def test_parameters_must_be_given_with_their_declared_kinds(two_microgrids):
    read = PreparedRead(lambda pk: Microgrid.objects.filter(pk=pk), pk=int)
    with pytest.raises(TypeError):
        read(pk="1")
    with pytest.raises(TypeError):
        read()
    with pytest.raises(TypeError):
        PreparedRead(lambda at: Microgrid.objects.all(), at=float)
    at_read = PreparedRead(
        lambda at: LatestReading.objects.filter(observed_at__lte=at), at=type(timezone.now())
    )
    with pytest.raises(ValueError):
        at_read(at=timezone.now().replace(tzinfo=None))
