"""`make run`'s live feed seeds every page through the real services: an OSCP envelope, a
capability status, legacy alias usage and a breach that opens and resolves (simulator.live).

The feed is driven tick by tick on a moved clock (the simulator's clock seam), with a
scheduled cycle after each tick standing in for the Celery beat of `make run`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from balancing.models import Breach
from balancing.services import cycle_request, trigger_of
from legacy_circuit.models import AliasUsage
from microgrid.capabilities.models import CapabilityBinding
from microgrid.envelopes.models import OperatingEnvelope
from microgrid.limits.models import LimitPolicy
from microgrid.topology.models import Microgrid
from simulator.clock import SimClock, simulated_time
from simulator.live import LiveFeed
from simulator.loader import read_profile
from simulator.scenario import parse_scenario

pytestmark = pytest.mark.django_db(transaction=True)

DEMO = Path(__file__).resolve().parents[2] / "simulator" / "profiles" / "demo_depot.yaml"
SPEED = 10.0


def test_one_pass_of_the_demo_feed_seeds_envelope_capability_alias_usage_and_a_breach(
    operator_client,
):
    call_command("load_profile", str(DEMO))
    raw = read_profile(DEMO)
    scenario, errors = parse_scenario(raw["scenario"], raw)
    assert not errors
    microgrid = Microgrid.objects.select_related("depot").get(microgrid_id="MG.DEMO-1")
    # From now on (the profile load's cycle is older than every tick's, as on the wall clock).
    clock = SimClock(timezone.now().replace(microsecond=0) + timedelta(seconds=1))
    warnings: list[str] = []
    with simulated_time(clock):
        feed = LiveFeed(
            scenario=scenario,
            profile=raw,
            microgrid=microgrid,
            speed=SPEED,
            run="test",
            warn=warnings.append,
        )
        real = 0.0
        # A pass and the start of the next: 5 real seconds (50 scenario seconds) a tick.
        for t in [*range(0, 3000, 50), 0, 50]:
            clock.set(real)
            feed.tick(float(t), clock.now())
            cycle_request(microgrid=microgrid, trigger=trigger_of("SCHEDULED"))
            real += 5.0
        feed.close()

    assert warnings == []
    assert [(r.kind, status) for r, status, _ in feed.answers if status >= 400] == []
    # Every request of the first pass was made, and the second pass's first one again.
    assert len(feed.answers) == 8 + 1  # at 0, 60, 120, 600 (two), 1140, 1200, 1800; 0
    assert feed.answers[-1][0].kind == "OSCP_HEARTBEAT" and feed.answers[-1][1] == 204

    envelope = OperatingEnvelope.objects.get(microgrid=microgrid)
    assert envelope.capacity_kw == 300.0
    # On the wall clock: the block [1500, 2700) scenario seconds is 150 s to 270 s real.
    assert (envelope.valid_from - clock.start).total_seconds() == pytest.approx(150, abs=1)
    assert (envelope.valid_until - clock.start).total_seconds() == pytest.approx(270, abs=1)

    binding = CapabilityBinding.objects.get(microgrid=microgrid)
    assert binding.source_device_id == "plc-d" and binding.active

    usage = AliasUsage.objects.filter(microgrid_id="MG.DEMO-1").order_by("at")
    assert [(u.circuit_id, u.status_code) for u in usage] == [("CIR-201", 200), ("CIR-202", 200)]

    breach = (
        Breach.objects.filter(microgrid=microgrid, primary_reason_code="BREACH_OPERATING_ENVELOPE")
        .order_by("detected_at")
        .first()
    )
    assert breach.node_id == "grid" and breach.status == "RESOLVED"
    # the chargers draw far more than the envelope (half as much again) when it cuts in
    assert breach.limit_kw == 300.0 and breach.measured_kw > 450
    assert 150 <= (breach.detected_at - clock.start).total_seconds() < 200
    assert breach.resolved_at > breach.detected_at

    # The pages a new operator opens show them.
    base = "/manage/microgrids/MG.DEMO-1"
    assert envelope.envelope_id in operator_client.get(f"{base}/envelopes/").content.decode()
    assert "plc-d" in operator_client.get(f"{base}/capabilities/").content.decode()
    assert breach.breach_id in operator_client.get(f"{base}/breaches/").content.decode()
    assert "CIR-202" in operator_client.get("/manage/legacy/alias-usage/").content.decode()

    # Every time on these pages is on the depot's clock with its zone named, UTC only on
    # hover ({% depot_time %}): no page shows a bare UTC time or a "(UTC)" column.
    policy = LimitPolicy.objects.filter(microgrid=microgrid).order_by("policy_id").first()
    pages = {
        "card": f"{base}/",
        "breaches": f"{base}/breaches/",
        "breach": f"{base}/breaches/{breach.breach_id}/",
        "cycle": f"{base}/cycles/{breach.cycle.cycle_id}/",
        "capabilities": f"{base}/capabilities/",
        "limit edit": f"{base}/limits/{policy.policy_id}/",
        "envelopes": f"{base}/envelopes/",
        "envelope": f"{base}/envelopes/{envelope.envelope_id}/",
        "alias usage": "/manage/legacy/alias-usage/",
    }
    for name, url in pages.items():
        response = operator_client.get(url)
        assert response.status_code == 200, name
        html = response.content.decode()
        assert re.search(
            r'<time datetime="[^"]+" title="[^"]+ UTC">.{0,80}? CES?T</span></time>', html
        ), name
        shown = re.sub(r'title="[^"]*"', "", html)
        assert not re.search(r"\d{2}:\d{2}(:\d{2})? UTC|\(UTC\)", shown), (name, url)
