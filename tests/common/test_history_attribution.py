"""Admin history says who or what made a change: a profile load, the system, a user."""

from pathlib import Path

import pytest
from django.core.management import call_command

from balancing.models import Breach
from microgrid.topology.models import Microgrid, MicrogridNode

DEMO = Path(__file__).resolve().parents[2] / "simulator" / "profiles" / "demo_depot.yaml"


@pytest.mark.django_db
def test_a_profile_load_is_named_as_the_change_reason():
    call_command("load_profile", str(DEMO))
    rows = MicrogridNode.history.filter(microgrid__microgrid_id="MG.DEMO-1")
    assert rows.exists()
    assert set(rows.values_list("history_change_reason", flat=True)) == {
        "profile load: demo_depot.yaml"
    }


@pytest.mark.django_db
def test_a_change_without_user_or_source_is_the_systems(empty_microgrid):
    empty_microgrid.name = "Renamed"
    empty_microgrid.save()
    latest = Microgrid.history.filter(id=empty_microgrid.pk).first()
    assert latest.history_change_reason == "system (no signed-in user)"


@pytest.mark.django_db
def test_admin_history_names_the_system_and_shows_utc(support_client, empty_microgrid):
    html = support_client.get(
        f"/admin/topology/microgrid/{empty_microgrid.pk}/history/"
    ).content.decode()
    assert "Deleted user" not in html and "the system" in html and " UTC</time>" in html
    assert Breach._meta.verbose_name_plural == "breaches"
