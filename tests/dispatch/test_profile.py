"""A depot profile's `dispatch:` section sets the microgrid's dispatch settings through the
same check and service as admin."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from dispatch.models import DispatchConfig
from tests.simulator.test_load_profile import DEMO


def _profile(tmp_path, section: str):
    path = tmp_path / "depot.yaml"
    path.write_text(DEMO.read_text() + section)
    return path


@pytest.mark.django_db
def test_a_profiles_dispatch_section_sets_the_webhook(tmp_path):
    section = "\ndispatch:\n  webhook: {url: 'https://hooks.example/x', secret: s3cret}\n"
    section += "  deadband_kw: 1.5\n"
    call_command("load_profile", str(_profile(tmp_path, section)))
    config = DispatchConfig.objects.get(microgrid__microgrid_id="MG.DEMO-1")
    assert (config.webhook_url, config.webhook_secret) == ("https://hooks.example/x", "s3cret")
    assert (config.deadband_kw, config.refresh_s) == (1.5, 30)


@pytest.mark.django_db
def test_a_bad_dispatch_section_is_refused_and_writes_nothing(tmp_path, capsys):
    section = "\ndispatch:\n  deadband_kw: -1\n"
    with pytest.raises(SystemExit) as exc:
        call_command("load_profile", str(_profile(tmp_path, section)))
    assert exc.value.code == 2
    assert "FIELD_INVALID field=dispatch.deadband_kw" in capsys.readouterr().err
    assert not DispatchConfig.objects.exists()
