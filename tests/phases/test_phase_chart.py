"""The cycle detail page's phase chart (issue 19): each phase's current as the cycle planned it
against the node's current limit, where per-phase data exists (balancing.charts.phase_load)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from balancing.charts import phase_load
from balancing.services import cycle_request
from microgrid.telemetry.services import telemetry_ingest


def _charger(asset_id, now, current_a, requested_kw=7.4):
    return {
        "asset_id": asset_id,
        "power_kw": 7.0,
        "observed_at": now.isoformat(),
        "connected": True,
        "requested_kw": requested_kw,
        "current_a": current_a,
    }


@pytest.mark.django_db
def test_the_phases_of_the_feeder_carry_what_the_cycle_set_against_its_32_a(
    client, make_user, phase_microgrid
):
    now = timezone.now().replace(microsecond=0)
    # CH-1 on L1, CH-2 on L2, CH-3's single-phase EV on the node's L2 (rotation L2L3L1)
    telemetry_ingest(
        microgrid=phase_microgrid,
        now=now,
        readings=[
            _charger("CH-1", now, [10.0, 0, 0]),
            _charger("CH-2", now, [0, 10.0, 0]),
            _charger("CH-3", now, [16.0, 0.2, 0.1], requested_kw=22),
        ],
    )
    cycle = cycle_request(microgrid=phase_microgrid, trigger={"type": "API"}).cycle
    doc = cycle.document
    chargers = {c["asset_id"]: c for c in doc["chargers"]}
    nodes = {n.node_id: n for n in phase_load(cycle.snapshot["engine"], doc)}
    assert set(nodes) == {"grid", "feeder"}  # both have a rating_a
    feeder = {b.phase: b for b in nodes["feeder"].bars}
    assert nodes["feeder"].source == "PHYSICAL_RATING"
    assert [feeder[p].limit_a for p in ("L1", "L2", "L3")] == [32.0, 32.0, 32.0]
    kw_to_a = 1000.0 / 230.0
    assert feeder["L1"].current_a == round(chargers["CH-1"]["allocated_kw"] * kw_to_a, 1)
    # L2 full: CH-2 and CH-3's EV share it
    l2 = (chargers["CH-2"]["allocated_kw"] + chargers["CH-3"]["allocated_kw"]) * kw_to_a
    assert feeder["L2"].current_a == round(l2, 1)
    assert 31.0 <= feeder["L2"].current_a <= 32.0
    assert feeder["L3"].current_a == 0.0
    # the grid connection carries the same currents (nothing else below it)
    assert [b.current_a for b in nodes["grid"].bars] == [feeder[p].current_a for p in feeder]
    client.force_login(make_user("operator"))
    page = client.get(f"/manage/microgrids/MG.NORTH-1/cycles/{cycle.cycle_id}/").content.decode()
    assert 'data-testid="phase-load"' in page
    assert f"{feeder['L2'].current_a} / 32.0 A" in page
    assert 'aria-label="L3: 0.0 A of 32.0 A"' in page


@pytest.mark.django_db
def test_without_per_phase_data_there_is_no_phase_chart(client, make_user, microgrid):
    cycle = cycle_request(microgrid=microgrid, trigger={"type": "API"}).cycle
    assert phase_load(cycle.snapshot["engine"], cycle.document) == []
    client.force_login(make_user("operator"))
    page = client.get(f"/manage/microgrids/MG.NORTH-1/cycles/{cycle.cycle_id}/").content.decode()
    assert 'data-testid="phase-load"' not in page
