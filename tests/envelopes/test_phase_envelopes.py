"""Per-phase operating envelopes are enforced per phase (issue 19): a block in A, or a
per-phase block (ONE, TWO, THREE), becomes a current limit on its phase(s) besides the
whole-node kW it was converted to."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from balancing.services import cycle_request, trigger_of
from microgrid.limits.selectors import effective_limits
from microgrid.telemetry.services import telemetry_ingest
from microgrid.topology.selectors import topology_document
from microgrid.topology.services import topology_replace

from .conftest import block, forecast_body

H = timedelta(hours=1)


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def single_phase_bay(microgrid):
    """CH-01 single-phase on L1 and CH-02 single-phase on L2, both in grp-a."""
    doc = topology_document(microgrid)
    for asset in doc["assets"]:
        if asset["asset_id"] in ("CH-01", "CH-02"):
            asset.update(phases=1, phase_rotation="L1" if asset["asset_id"] == "CH-01" else "L2")
    topology_replace(
        microgrid=microgrid,
        base_version=doc["topology_version"],
        nodes=doc["nodes"],
        assets=doc["assets"],
    )
    microgrid.refresh_from_db()
    return microgrid


def _demand(microgrid, now):
    readings = [
        {"asset_id": a, "power_kw": 0, "observed_at": now.isoformat(), "connected": True,
         "requested_kw": 150}
        for a in ("CH-01", "CH-02", "CH-03")
    ] + [
        {"asset_id": "SITE", "power_kw": 0, "observed_at": now.isoformat()},
        {"asset_id": "PV-1", "power_kw": 0, "observed_at": now.isoformat()},
    ]  # fmt: skip
    telemetry_ingest(microgrid=microgrid, now=now, readings=readings)


@pytest.mark.django_db
def test_a_one_phase_envelope_in_amperes_limits_that_phase_only(
    single_phase_bay, bound, receive, now
):
    receive(
        forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 20, "A", "ONE")]),
        now=now,
    )
    limit = effective_limits(bound, now)["grp-a"]
    assert limit.current.phase_limits_a[0] == 20.0
    assert limit.current.phase_sources[0] == "OPERATING_ENVELOPE"
    assert limit.current.phase_limits_a[1] == float("inf")
    _demand(bound, now)
    doc = cycle_request(microgrid=bound, trigger=trigger_of("API")).cycle.document
    ch = {c["asset_id"]: c for c in doc["chargers"]}
    # L1: 20 A = 4.6 kW (its 4.1 kW minimum fits); L2 takes what the whole-node kW conversion
    # (20 A x 230 V x 3 = 13.8 kW) leaves.
    assert 4.5 <= ch["CH-01"]["allocated_kw"] <= 4.6
    assert ch["CH-01"]["reason_codes"] == ["PHASE_CURRENT_LIMIT"]
    assert ch["CH-01"]["binding"]["phase"] == "L1"
    assert ch["CH-01"]["binding"]["limit_source"] == "OPERATING_ENVELOPE"
    assert ch["CH-01"]["binding"]["limit_a"] == 20.0
    assert ch["CH-01"]["limit_a"] <= 20.0
    assert ch["CH-01"]["allocated_kw"] + ch["CH-02"]["allocated_kw"] <= 13.8
    assert ch["CH-02"]["allocated_kw"] >= 9.1
    assert ch["CH-02"]["reason_codes"] == ["OPERATING_ENVELOPE_LIMIT"]


@pytest.mark.django_db
def test_a_minimum_that_does_not_fit_a_phase_envelope_is_refused(
    single_phase_bay, bound, receive, now
):
    # CH-01 runs at 4.1 kW at least: 17.8 A on L1, more than a 16 A envelope on L1.
    receive(
        forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 16, "A", "ONE")]),
        now=now,
    )
    _demand(bound, now)
    doc = cycle_request(microgrid=bound, trigger=trigger_of("API")).cycle.document
    ch = {c["asset_id"]: c for c in doc["chargers"]}
    assert ch["CH-01"]["allocated_kw"] == 0.0
    assert ch["CH-01"]["reason_codes"] == ["MIN_POWER_UNSERVED"]


@pytest.mark.django_db
def test_the_active_limits_read_lists_the_phase_limits(
    single_phase_bay, bound, receive, operator_api, now
):
    receive(
        forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 3000, "W", "TWO")]),
        now=now,
    )
    body = operator_api.get("/api/microgrids/MG.NORTH-1/limits/active/").json()
    node = next(n for n in body["nodes"] if n["node_id"] == "grp-a")
    # 3 kW on L2 at 230 V: 13.043 A on L2 only
    assert node["phase_limits_a"] == [
        {"phase": "L2", "limit_a": 13.043, "limit_source": "OPERATING_ENVELOPE"}
    ]
    assert (node["effective_limit_a"], node["limit_a_source"]) == (13.043, "OPERATING_ENVELOPE")


@pytest.mark.django_db
def test_an_all_phase_envelope_in_kw_stays_a_kw_limit(microgrid, bound, receive, now):
    receive(forecast_body(group_id="GRP-G", blocks=[block(now - H, now + H, 100)]), now=now)
    assert effective_limits(bound, now)["grp-a"].current is None
