"""The fleet overview: state per microgrid, counts, search, filters, sort, paging (page and API)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from balancing.services import cycle_request, trigger_of
from microgrid.fleet.models import MicrogridState
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.api.serializers import microgrid_input
from microgrid.topology.services import microgrid_create, topology_replace
from tests.balancing.test_cycles import readings


def make_microgrid(n: int, small_topology, *, name: str | None = None):
    microgrid = microgrid_create(
        **microgrid_input(
            {
                "microgrid_id": f"MG.F-{n:04d}",
                "name": name or f"Depot {n:04d} microgrid",
                "depot": {"depot_id": f"D-{n:04d}", "name": f"Depot {n:04d}", "timezone": "UTC"},
            }
        )
    )
    topology_replace(
        microgrid=microgrid,
        base_version=0,
        nodes=small_topology["nodes"],
        assets=small_topology["assets"],
    )
    microgrid.refresh_from_db()
    return microgrid


def cycle(microgrid, *, grid_kw=100.0, site_kw=10.0, fresh=True):
    now = timezone.now()
    if fresh:
        telemetry_ingest(
            microgrid=microgrid,
            now=now,
            readings=readings(now, SITE=site_kw, PV_1=0, M_GRID=grid_kw, CH_01=50, CH_02=50),
        )
    return cycle_request(microgrid=microgrid, trigger=trigger_of("API")).cycle


@pytest.mark.django_db
def test_a_stored_cycle_becomes_the_microgrids_state_with_its_root_load(microgrid):
    first = cycle(microgrid)
    second = cycle(microgrid)
    state = MicrogridState.objects.get(microgrid=microgrid)
    assert state.cycle_id == second.cycle_id != first.cycle_id
    root = second.document["nodes"][0]
    assert state.root_node_id == "grid"
    assert state.root_limit_kw == root["effective_limit_kw"]
    load = root["uncontrolled_load_kw"] + root["allocated_kw"]
    assert state.root_load_kw == pytest.approx(load, abs=1e-3)
    assert state.root_load_pct == pytest.approx(100 * load / root["effective_limit_kw"], abs=0.1)
    assert state.outcome == second.outcome


@pytest.mark.django_db
def test_the_api_lists_state_load_breaches_and_counts(operator_api, microgrid, small_topology):
    other = make_microgrid(2, small_topology)
    cycle(microgrid, grid_kw=900)  # above the 800 kW rating: a breach opens
    body = operator_api.get("/api/microgrids/").json()
    assert body["count"] == 2 and body["page"] == 1 and body["pages"] == 1
    rows = {r["microgrid_id"]: r for r in body["microgrids"]}
    north = rows["MG.NORTH-1"]
    assert north["state"] == north["latest_cycle"]["outcome"]
    assert north["open_breaches"] == 1
    assert north["root"]["node_id"] == "grid"
    assert north["root"]["load_pct"] is not None
    assert north["timezone"] == "Europe/Amsterdam"
    assert rows[other.microgrid_id]["state"] == "NO_CYCLE"
    assert rows[other.microgrid_id]["latest_cycle"] is None
    assert body["counts"]["all"] == 2
    assert body["counts"]["NO_CYCLE"] == 1
    assert body["counts"]["with_open_breaches"] == 1
    assert body["counts"][north["state"]] == 1


@pytest.mark.django_db
def test_filters_search_sort_and_pages(operator_api, small_topology):
    grids = [make_microgrid(n, small_topology) for n in range(1, 8)]
    for m in grids[:3]:
        cycle(m)
    named = make_microgrid(99, small_topology, name="Harbour yard")

    def ids(query):
        response = operator_api.get(f"/api/microgrids/?{query}")
        assert response.status_code == 200, response.json()
        return [r["microgrid_id"] for r in response.json()["microgrids"]], response.json()

    found, body = ids("state=NO_CYCLE")
    assert found == [m.microgrid_id for m in grids[3:]] + [named.microgrid_id]
    assert body["count"] == 5
    # The counts ignore the state filter: they say what each state would show.
    assert body["counts"]["NO_CYCLE"] == 5 and body["counts"]["all"] == 8
    found, _ = ids("q=harbour")
    assert found == [named.microgrid_id]
    found, _ = ids("q=D-0002")
    assert found == [grids[1].microgrid_id]
    found, _ = ids("sort=-name&page_size=3")
    assert found == [named.microgrid_id, grids[6].microgrid_id, grids[5].microgrid_id]
    first, body = ids("page_size=3&page=1")
    second, _ = ids("page_size=3&page=2")
    third, _ = ids("page_size=3&page=3")
    assert body["pages"] == 3
    assert len(first) == 3 and len(second) == 3 and len(third) == 2
    assert first + second + third == sorted(m.microgrid_id for m in [*grids, named])
    found, _ = ids("page=9")
    assert found == []
    found, _ = ids("sort=-load&page_size=3")
    assert set(found) == {m.microgrid_id for m in grids[:3]}  # loads first, no-cycle last


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, field",
    [
        ("state=BROKEN", "state"),
        ("sort=sideways", "sort"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("page_size=501", "page_size"),
        ("breaches=maybe", "breaches"),
        ("enabled=perhaps", "enabled"),
        ("source_mode=GUESSED", "source_mode"),
    ],
)
def test_bad_filters_are_a_422_naming_the_field(operator_api, microgrid, query, field):
    response = operator_api.get(f"/api/microgrids/?{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "FIELD_INVALID"
    assert [e["field"] for e in body["errors"]] == [field]


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", [5, 50])
def test_the_list_costs_the_same_queries_at_any_page_size(
    operator_api, operator_client, small_topology, django_assert_max_num_queries, page_size
):
    for n in range(1, 13):
        m = make_microgrid(n, small_topology)
        if n % 2:
            cycle(m, grid_kw=900)
    with django_assert_max_num_queries(8):
        body = operator_api.get(f"/api/microgrids/?page_size={page_size}").json()
    assert len(body["microgrids"]) == min(page_size, 12)
    with django_assert_max_num_queries(10):
        response = operator_client.get(f"/manage/microgrids/?page_size={page_size}&sort=-load")
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_overview_page_shows_counts_load_and_pages(operator_client, microgrid, small_topology):
    for n in range(1, 4):
        make_microgrid(n, small_topology)
    cycle(microgrid, grid_kw=900)
    html = operator_client.get("/manage/microgrids/?page_size=25").content.decode()
    assert 'data-testid="fleet-counts"' in html
    assert "4</span> all" in html
    assert "MG.NORTH-1" in html and "North Depot" in html
    assert "kW ·" in html  # the root's load against its limit
    assert 'class="badge badge-bad"' in html  # the open breach
    page = operator_client.get("/manage/microgrids/?page_size=25&state=NO_CYCLE").content.decode()
    assert "MG.NORTH-1" not in page and "MG.F-0001" in page


@pytest.mark.django_db
def test_a_bad_filter_on_the_page_says_so_and_shows_the_fleet(operator_client, microgrid):
    response = operator_client.get("/manage/microgrids/?sort=sideways")
    assert response.status_code == 422
    html = response.content.decode()
    assert 'data-testid="fleet-error"' in html and "FIELD_INVALID" in html
    assert "MG.NORTH-1" in html


@pytest.mark.django_db
def test_the_forms_empty_any_options_are_no_filter(operator_client, microgrid):
    query = "q=north&state=&source_mode=&breaches=&sort=microgrid_id&page_size=50"
    assert operator_client.get(f"/manage/microgrids/?{query}").status_code == 200
    body = operator_client.get(f"/api/microgrids/?{query}").json()
    assert [r["microgrid_id"] for r in body["microgrids"]] == ["MG.NORTH-1"]


@pytest.mark.django_db
def test_the_fleet_lists_and_counts_only_the_microgrids_the_user_is_a_member_of(
    client, make_user, microgrid, small_topology
):
    other = make_microgrid(5, small_topology)
    cycle(other)
    client.force_login(make_user("operator", "member", microgrids=[microgrid.microgrid_id]))
    body = client.get("/api/microgrids/").json()
    assert [r["microgrid_id"] for r in body["microgrids"]] == ["MG.NORTH-1"]
    assert body["counts"]["all"] == 1 and body["counts"][other.fleet_state.outcome] == 0
    html = client.get("/manage/microgrids/").content.decode()
    assert "MG.NORTH-1" in html and other.microgrid_id not in html
    client.force_login(make_user("operator", "nobody-op", microgrids=[]))
    html = client.get("/manage/microgrids/").content.decode()
    assert 'data-testid="no-membership"' in html
