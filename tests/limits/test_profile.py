"""`load_profile` with a `limits:` section: checked whole, applied through the services, idempotent."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from microgrid.common.errors import DomainError, sort_errors
from microgrid.limits.api.serializers import policy_input
from microgrid.limits.models import LimitPolicy
from microgrid.limits.selectors import policy_list
from microgrid.limits.services import limit_policy_create
from microgrid.topology.models import Microgrid
from simulator.loader import check_profile, load_profile

ROOT = Path(__file__).resolve().parents[2]

PROFILE = {
    "depot": {"depot_id": "DEPOT-N", "name": "North Depot", "timezone": "Europe/Amsterdam"},
    "microgrid": {"microgrid_id": "MG-N", "name": "North Depot microgrid"},
    "nodes": [
        {
            "node_id": "grid",
            "parent_id": None,
            "kind": "GRID_CONNECTION",
            "name": "Grid",
            "physical_rating_kw": 800,
        },
        {
            "node_id": "sb-1",
            "parent_id": "grid",
            "kind": "SWITCHBOARD",
            "name": "Board 1",
            "physical_rating_kw": 400,
        },
        {
            "node_id": "grp-a",
            "parent_id": "sb-1",
            "kind": "CHARGER_GROUP",
            "name": "Bay A",
            "physical_rating_kw": 250,
        },
    ],
    "assets": [],
    "limits": [
        {"scope": "MICROGRID", "limit_kw": 700},
        {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350},
        {
            "scope": "NODE",
            "node_id": "sb-1",
            "limit_kw": 200,
            "schedule": {
                "days": ["MON", "TUE", "WED", "THU", "FRI"],
                "start": "17:00",
                "end": "21:00",
            },
        },
    ],
}


def profile(**changes):
    data = yaml.safe_load(yaml.safe_dump(PROFILE))
    data.update(changes)
    return data


def stored():
    microgrid = Microgrid.objects.get(microgrid_id="MG-N")
    return [
        (p.policy_id, p.scope, p.node_id, p.limit_kw, p.schedule and p.schedule.as_dict(), p.source)
        for p in policy_list(microgrid)
    ]


def history_rows():
    return LimitPolicy.history.count()


@pytest.mark.django_db
def test_a_profile_loads_its_limits_as_simulator_policies():
    load_profile(profile())
    assert stored() == [
        ("LP-1", "MICROGRID", None, 700.0, None, "SIMULATOR"),
        ("LP-2", "NODE", "sb-1", 350.0, None, "SIMULATOR"),
        (
            "LP-3",
            "NODE",
            "sb-1",
            200.0,
            {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "17:00", "end": "21:00"},
            "SIMULATOR",
        ),
    ]


@pytest.mark.django_db
def test_loading_the_same_profile_twice_changes_nothing():
    load_profile(profile())
    before, history = stored(), history_rows()
    load_profile(profile())
    assert stored() == before
    assert history_rows() == history


@pytest.mark.django_db
def test_a_changed_limit_is_updated_in_place_and_a_dropped_one_deleted():
    load_profile(profile())
    changed = profile()
    changed["limits"][1]["limit_kw"] = 300
    del changed["limits"][0]
    load_profile(changed)
    assert [(p[0], p[3]) for p in stored()] == [("LP-2", 300.0), ("LP-3", 200.0)]


@pytest.mark.django_db
def test_a_profile_replaces_manual_policies_but_keeps_legacy_tou_ones():
    load_profile(profile(limits=[]))
    microgrid = Microgrid.objects.get(microgrid_id="MG-N")
    limit_policy_create(
        microgrid=microgrid, **policy_input({"scope": "NODE", "node_id": "grp-a", "limit_kw": 100})
    )
    limit_policy_create(
        microgrid=microgrid,
        **policy_input(
            {
                "scope": "NODE",
                "node_id": "grp-a",
                "limit_kw": 90,
                "schedule": {"days": ["SAT"], "start": "08:00", "end": "12:00"},
                "source": "LEGACY_TOU",
            }
        ),
    )
    load_profile(profile())
    assert [(p[0], p[2], p[5]) for p in stored()] == [
        ("LP-3", None, "SIMULATOR"),
        ("LP-4", "sb-1", "SIMULATOR"),
        ("LP-5", "sb-1", "SIMULATOR"),
        ("LP-2", "grp-a", "LEGACY_TOU"),
    ]


@pytest.mark.django_db
def test_a_source_given_in_the_profile_is_kept():
    data = profile(
        limits=[
            {
                "scope": "MICROGRID",
                "limit_kw": 700,
                "source": "LEGACY_TOU",
                "schedule": {"days": ["SUN"], "start": "00:00", "end": "23:59"},
            }
        ]
    )
    load_profile(data)
    load_profile(data)
    assert [(p[0], p[5]) for p in stored()] == [("LP-1", "LEGACY_TOU")]


def codes(errors):
    return [(e.code, e.node_id, e.field) for e in sort_errors(errors)]


def test_the_check_reports_the_guardrail_overlaps_duplicates_and_unknown_nodes_without_writing():
    bad = profile(
        limits=[
            {"scope": "MICROGRID", "limit_kw": 900},
            {"scope": "NODE", "node_id": "sb-1", "limit_kw": 350},
            {"scope": "NODE", "node_id": "sb-1", "limit_kw": 300},
            {
                "scope": "NODE",
                "node_id": "grp-a",
                "limit_kw": 100,
                "schedule": {"days": ["MON"], "start": "10:00", "end": "12:00"},
            },
            {
                "scope": "NODE",
                "node_id": "grp-a",
                "limit_kw": 100,
                "schedule": {"days": ["MON"], "start": "11:00", "end": "13:00"},
            },
            {"scope": "NODE", "node_id": "ghost", "limit_kw": 10},
            {"scope": "NODE", "node_id": "grp-a", "limit_kw": "high", "colour": "red"},
            "not a policy",
        ]
    )
    assert codes(check_profile(bad)) == [
        ("FIELD_INVALID", None, "limits[7]"),
        ("FIELD_INVALID", "grp-a", "limits[6].colour"),
        ("FIELD_INVALID", "grp-a", "limits[6].limit_kw"),
        ("LIMIT_ALREADY_EXISTS", "sb-1", "limits[2].schedule"),
        ("LIMIT_EXCEEDS_PHYSICAL_RATING", "grid", "limits[0].limit_kw"),
        ("LIMIT_SCHEDULE_OVERLAP", "grp-a", "limits[4].schedule"),
        ("NODE_NOT_FOUND", "ghost", "limits[5].node_id"),
    ]


def test_limits_must_be_a_list():
    assert codes(check_profile(profile(limits={"scope": "MICROGRID"}))) == [
        ("FIELD_INVALID", None, "limits")
    ]


@pytest.mark.django_db
def test_an_invalid_limits_section_changes_nothing():
    load_profile(profile())
    before, history = stored(), history_rows()
    bad = profile()
    bad["limits"][1]["limit_kw"] = 401
    bad["nodes"][2]["name"] = "Bay A renamed"
    with pytest.raises(DomainError) as info:
        load_profile(bad)
    assert info.value.errors[0].code == "LIMIT_EXCEEDS_PHYSICAL_RATING"
    assert stored() == before and history_rows() == history
    assert Microgrid.objects.get(microgrid_id="MG-N").topology_version == 1


@pytest.mark.django_db
def test_a_conflict_with_stored_legacy_policies_rolls_the_whole_load_back():
    load_profile(profile(limits=[]))
    microgrid = Microgrid.objects.get(microgrid_id="MG-N")
    limit_policy_create(
        microgrid=microgrid,
        **policy_input(
            {
                "scope": "NODE",
                "node_id": "sb-1",
                "limit_kw": 90,
                "schedule": {"days": ["MON"], "start": "18:00", "end": "19:00"},
                "source": "LEGACY_TOU",
            }
        ),
    )
    changed = profile()
    changed["nodes"][2]["name"] = "Bay A renamed"
    with pytest.raises(DomainError) as info:
        load_profile(changed)
    assert info.value.code == "LIMIT_SCHEDULE_OVERLAP"
    assert Microgrid.objects.get(microgrid_id="MG-N").topology_version == 1
    assert [p[5] for p in stored()] == ["LEGACY_TOU"]


def test_load_profile_exits_2_listing_limit_problems(tmp_path):
    bad = profile()
    bad["limits"][1]["limit_kw"] = 401
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = subprocess.run(
        [sys.executable, "manage.py", "load_profile", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
            "PATH": "/usr/bin:/bin",
            "MICROGRID_VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 2, result.stderr
    assert "LIMIT_EXCEEDS_PHYSICAL_RATING node_id=sb-1 field=limits[1].limit_kw" in result.stderr


@pytest.mark.django_db
def test_the_management_command_loads_limits(tmp_path):
    path = tmp_path / "depot.yaml"
    path.write_text(yaml.safe_dump(profile()))
    call_command("load_profile", str(path))
    assert len(stored()) == 3
