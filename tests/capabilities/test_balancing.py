"""The effect of LOAD_MANAGEMENT bindings on cycles: one budget for an externally controlled
scope while its source says AVAILABLE and is fresh; control comes back when it is not."""

import pytest

from balancing.services import cycle_request, trigger_of
from microgrid.capabilities.services import capability_binding_release
from microgrid.telemetry.services import telemetry_ingest
from tests.capabilities.conftest import MICROGRID, at, node


@pytest.fixture
def telemetry(microgrid):
    """Fresh readings at a time: every charger connected and asking for 150 kW."""

    def ingest(when):
        readings = [
            {"asset_id": "SITE", "power_kw": 100, "observed_at": when.isoformat()},
            {"asset_id": "PV-1", "power_kw": 0, "observed_at": when.isoformat()},
        ] + [
            {
                "asset_id": asset_id,
                "power_kw": 0,
                "observed_at": when.isoformat(),
                "connected": True,
                "requested_kw": 150,
            }
            for asset_id in ("CH-01", "CH-02", "CH-03")
        ]
        telemetry_ingest(microgrid=microgrid, now=when, readings=readings)

    return ingest


@pytest.fixture
def cycle(microgrid, telemetry):
    def run(when):
        telemetry(when)
        return cycle_request(
            microgrid=microgrid, trigger=trigger_of("API"), now=lambda: when
        ).cycle.document

    return run


def nodes(doc):
    return {n["node_id"]: n for n in doc["nodes"]}


def chargers(doc):
    return {c["asset_id"]: c for c in doc["chargers"]}


def under_external_control(doc):
    return [n["node_id"] for n in doc["nodes"] if "EXTERNAL_CONTROL" in n["reason_codes"]]


@pytest.mark.django_db
def test_an_available_scoped_source_gets_one_budget_and_no_points_inside_it(
    microgrid, bind, report, cycle
):
    bind("plc-a", node("grp-a"))
    report("plc-a", node("grp-a"), "AVAILABLE", observed_at=at(0))
    doc = cycle(at(5))
    assert under_external_control(doc) == ["grp-a"]
    grp_a = nodes(doc)["grp-a"]
    assert grp_a["budget_kw"] == 250.0  # its rating: the chargers inside could use all of it
    ch = chargers(doc)
    for asset_id in ("CH-01", "CH-02"):
        assert ch[asset_id]["allocated_kw"] is None
        assert ch[asset_id]["reason_codes"] == ["EXTERNAL_CONTROL"]
        assert "valid_until" not in ch[asset_id]
    # Outside the scope the product still sets points.
    assert ch["CH-03"]["allocated_kw"] == 150.0
    assert doc["scope_budgets"] == [
        {
            "scope": node("grp-a"),
            "budget_kw": 250.0,
            "valid_until": doc["scope_budgets"][0]["valid_until"],
            "binding_id": "CB-1",
            "source_device_id": "plc-a",
        }
    ]
    assert "EXTERNAL_CONTROL" in doc["reason_codes"]


@pytest.mark.django_db
def test_the_cycle_snapshot_records_which_binding_held_control(microgrid, bind, report, cycle):
    from balancing.models import Cycle

    bind("plc-a", node("grp-a"))
    report("plc-a", node("grp-a"), "AVAILABLE", event_ref="ev-1", observed_at=at(0))
    doc = cycle(at(5))
    snapshot = Cycle.objects.get(cycle_id=doc["cycle_id"]).snapshot
    assert snapshot["external"]["grp-a"]["binding_id"] == "CB-1"
    assert snapshot["external"]["grp-a"]["source_device_id"] == "plc-a"
    assert snapshot["external"]["grp-a"]["state"] == "AVAILABLE"
    assert snapshot["external"]["grp-a"]["observed_at"] == at(0).isoformat()


@pytest.mark.django_db
def test_a_whole_microgrid_binding_puts_the_root_under_external_control(
    microgrid, bind, report, cycle
):
    bind("ems", MICROGRID)
    report("ems", MICROGRID, "AVAILABLE", observed_at=at(0))
    doc = cycle(at(1))
    assert under_external_control(doc) == ["grid"]
    assert all(c["allocated_kw"] is None for c in doc["chargers"])
    assert [b["scope"] for b in doc["scope_budgets"]] == [MICROGRID]
    assert doc["scope_budgets"][0]["budget_kw"] == nodes(doc)["grid"]["budget_kw"]


@pytest.mark.django_db
def test_the_product_takes_control_back_when_the_source_reports_unavailable(
    microgrid, bind, report, cycle
):
    bind("plc-a", node("grp-a"))
    report("plc-a", node("grp-a"), "AVAILABLE", event_ref="ev-1", observed_at=at(0))
    assert under_external_control(cycle(at(5))) == ["grp-a"]
    report("plc-a", node("grp-a"), "UNAVAILABLE", event_ref="ev-2", observed_at=at(10))
    doc = cycle(at(15))
    assert under_external_control(doc) == []
    assert nodes(doc)["grp-a"].get("budget_kw") is None
    assert doc["scope_budgets"] == []
    ch = chargers(doc)
    assert ch["CH-01"]["allocated_kw"] == 125.0
    assert ch["CH-01"]["reason_codes"] == ["PHYSICAL_RATING"]


@pytest.mark.django_db
def test_the_product_takes_control_back_when_the_status_goes_stale(microgrid, bind, report, cycle):
    assert microgrid.telemetry_stale_after_s == 60
    bind("plc-a", node("grp-a"))
    report("plc-a", node("grp-a"), "AVAILABLE", observed_at=at(0))
    assert under_external_control(cycle(at(60))) == ["grp-a"]  # 60 s old: still fresh
    doc = cycle(at(61))
    assert under_external_control(doc) == []
    assert all(c["allocated_kw"] is not None for c in doc["chargers"])
    # A fresh AVAILABLE hands it back to the source.
    report("plc-a", node("grp-a"), "AVAILABLE", event_ref="later", observed_at=at(70))
    assert under_external_control(cycle(at(75))) == ["grp-a"]


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["DEGRADED", "UNAVAILABLE"])
def test_a_source_that_is_not_available_leaves_the_product_in_control(
    microgrid, bind, report, cycle, state
):
    bind("plc-a", node("grp-a"))
    report("plc-a", node("grp-a"), state, observed_at=at(0))
    assert under_external_control(cycle(at(5))) == []


@pytest.mark.django_db
def test_a_binding_without_status_or_released_leaves_the_product_in_control(
    microgrid, bind, report, cycle
):
    bind("plc-a", node("grp-a"))
    assert under_external_control(cycle(at(5))) == []
    report("plc-a", node("grp-a"), "AVAILABLE", observed_at=at(6))
    assert under_external_control(cycle(at(7))) == ["grp-a"]
    capability_binding_release(microgrid=microgrid, binding_id="CB-1", now=at(8))
    assert under_external_control(cycle(at(9))) == []


@pytest.mark.django_db
def test_only_load_management_hands_over_control(microgrid, bind, report, cycle):
    bind("bms", node("grp-a"), "ENERGY_STORAGE")
    report("bms", node("grp-a"), "AVAILABLE", observed_at=at(0), capability_type="ENERGY_STORAGE")
    assert under_external_control(cycle(at(5))) == []


@pytest.mark.django_db
def test_two_disjoint_sources_each_get_their_own_budget(microgrid, bind, report, cycle):
    bind("plc-a", node("grp-a"))
    bind("plc-b", node("grp-b"))
    report("plc-a", node("grp-a"), observed_at=at(0))
    report("plc-b", node("grp-b"), observed_at=at(0))
    doc = cycle(at(5))
    assert under_external_control(doc) == ["grp-a", "grp-b"]
    assert [(b["scope"]["node_id"], b["source_device_id"]) for b in doc["scope_budgets"]] == [
        ("grp-a", "plc-a"),
        ("grp-b", "plc-b"),
    ]
    # Together they never get more than sb-1 (400 kW) allows.
    assert sum(b["budget_kw"] for b in doc["scope_budgets"]) <= 400.0
