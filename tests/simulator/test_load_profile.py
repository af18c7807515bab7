"""`load_profile` goes through the same services and validator as the API."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from microgrid.telemetry.models import SessionDefault
from microgrid.topology.models import Asset, Microgrid, MicrogridNode
from simulator.loader import check_profile, load_profile, read_profile

DEMO = Path(__file__).resolve().parents[2] / "simulator" / "profiles" / "demo_depot.yaml"


@pytest.mark.django_db
def test_demo_profile_loads_the_demo_depot():
    call_command("load_profile", str(DEMO))
    microgrid = Microgrid.objects.get(microgrid_id="MG.DEMO-1")
    assert microgrid.topology_version == 1
    assert MicrogridNode.objects.filter(microgrid=microgrid).count() == 7
    assert Asset.objects.filter(microgrid=microgrid, kind="CHARGER").count() == 24


@pytest.mark.django_db
def test_loading_the_same_file_again_changes_nothing():
    call_command("load_profile", str(DEMO))
    call_command("load_profile", str(DEMO))
    assert Microgrid.objects.get(microgrid_id="MG.DEMO-1").topology_version == 1


@pytest.mark.django_db
def test_a_changed_file_is_one_topology_save(tmp_path):
    call_command("load_profile", str(DEMO))
    changed = tmp_path / "demo.yaml"
    changed.write_text(DEMO.read_text().replace("name: Bay D,", "name: Bay D (new),"))
    call_command("load_profile", str(changed))
    microgrid = Microgrid.objects.get(microgrid_id="MG.DEMO-1")
    assert microgrid.topology_version == 2
    assert MicrogridNode.objects.get(microgrid=microgrid, node_id="grp-d").name == "Bay D (new)"


def test_an_invalid_profile_exits_2_listing_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "depot: {depot_id: D1, name: D}\n"
        "microgrid: {microgrid_id: M1, name: M}\n"
        "nodes:\n"
        "  - {node_id: grid, parent_id: null, kind: GRID_CONNECTION, name: G, physical_rating_kw: 100}\n"
        "  - {node_id: a, parent_id: b, kind: FEEDER, name: A, physical_rating_kw: 10}\n"
        "  - {node_id: b, parent_id: a, kind: FEEDER, name: B, physical_rating_kw: 10}\n"
        "assets:\n"
        "  - {asset_id: C1, node_id: zz, kind: CHARGER, name: C, max_power_kw: 10}\n"
        "surprise: {}\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "manage.py", "load_profile", str(bad)],
        cwd=root,
        capture_output=True,
        text=True,
        env={
            "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
            "PATH": "/usr/bin:/bin",
            "MICROGRID_VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 2, result.stderr
    assert "ASSET_NODE_NOT_FOUND asset_id=C1" in result.stderr
    assert "TOPOLOGY_CYCLE node_id=a" in result.stderr
    assert "PROFILE_INVALID field=surprise" in result.stderr


@pytest.mark.django_db
def test_demo_feed_sends_live_telemetry_for_the_demo_depot():
    from microgrid.telemetry.models import LatestReading

    call_command("load_profile", str(DEMO))
    call_command("demo_feed", "--ticks", "2", "--every", "0")
    microgrid = Microgrid.objects.get(microgrid_id="MG.DEMO-1")
    assert LatestReading.objects.filter(microgrid=microgrid, asset__kind="CHARGER").count() == 24
    assert LatestReading.objects.filter(microgrid=microgrid, asset__asset_id="SITE").exists()


@pytest.mark.django_db
def test_keep_existing_leaves_an_operators_edits_and_says_so(tmp_path, capsys):
    """`make run` loads the demo with --keep-existing: a restart must not revert edits."""
    call_command("load_profile", str(DEMO))
    changed = tmp_path / "demo.yaml"
    changed.write_text(DEMO.read_text().replace("name: Bay D,", "name: Bay D (new),"))
    call_command("load_profile", str(changed))  # stands in for an operator's edit: version 2
    capsys.readouterr()
    call_command("load_profile", "--keep-existing", str(DEMO))
    microgrid = Microgrid.objects.get(microgrid_id="MG.DEMO-1")
    assert microgrid.topology_version == 2
    assert MicrogridNode.objects.get(microgrid=microgrid, node_id="grp-d").name == "Bay D (new)"
    out = capsys.readouterr().out
    assert "already exists" in out and "NOT reloaded" in out and "make demo-reset" in out


SESSION_DEFAULTS = [
    {"node_id": "grp-a", "default_dwell_s": 5400, "default_energy_kwh": 60},
    {"node_id": "grp-b", "default_dwell_s": 14400},
]


@pytest.mark.django_db
def test_session_defaults_are_set_from_the_profile_and_a_reload_changes_nothing():
    profile = read_profile(DEMO)
    profile["session_defaults"] = SESSION_DEFAULTS
    load_profile(profile)
    rows = SessionDefault.objects.order_by("node_id")
    assert [(d.node_id, d.default_dwell_s, d.default_energy_kwh) for d in rows] == [
        ("grp-a", 5400, 60.0),
        ("grp-b", 14400, None),
    ]
    history = SessionDefault.history.count()
    load_profile(profile)
    assert SessionDefault.history.count() == history
    profile["session_defaults"] = [{"node_id": "grp-a", "default_dwell_s": 3600}]
    load_profile(profile)
    assert SessionDefault.objects.get(node_id="grp-a").default_dwell_s == 3600
    assert SessionDefault.objects.count() == 2  # a default the profile no longer lists stays


@pytest.mark.parametrize(
    "entry, code, field",
    [
        ({"node_id": "nowhere", "default_dwell_s": 3600}, "NODE_NOT_FOUND", "node_id"),
        ({"node_id": "sb-1", "default_dwell_s": 3600}, "FIELD_INVALID", "node_id"),
        ({"node_id": "grp-a", "default_dwell_s": 30}, "FIELD_INVALID", "default_dwell_s"),
        ({"node_id": "grp-a", "default_dwell_s": 90.5}, "FIELD_INVALID", "default_dwell_s"),
        ({"node_id": "grp-a", "default_dwell_s": 700000}, "FIELD_INVALID", "default_dwell_s"),
        (
            {"node_id": "grp-a", "default_dwell_s": 3600, "default_energy_kwh": 0},
            "FIELD_INVALID",
            "default_energy_kwh",
        ),
        (
            {"node_id": "grp-a", "default_dwell_s": 3600, "default_energy_kwh": "lots"},
            "FIELD_INVALID",
            "default_energy_kwh",
        ),
        ({"node_id": "grp-a", "default_dwell_s": 3600, "soc": 80}, "PROFILE_INVALID", "soc"),
    ],
)
def test_bad_session_defaults_refuse_the_profile_naming_the_field(entry, code, field):
    profile = read_profile(DEMO)
    profile["session_defaults"] = [{"node_id": "grp-c", "default_dwell_s": 3600}, entry]
    problems = [(e.code, e.field) for e in check_profile(profile)]
    assert problems == [(code, f"session_defaults[1].{field}")]


def test_a_charger_group_may_have_one_session_default():
    profile = read_profile(DEMO)
    profile["session_defaults"] = [
        {"node_id": "grp-a", "default_dwell_s": 3600},
        {"node_id": "grp-a", "default_dwell_s": 7200},
    ]
    problems = [(e.code, e.field) for e in check_profile(profile)]
    assert problems == [("FIELD_INVALID", "session_defaults[1].node_id")]
