"""Unit conversion: A with the node's voltage and phases, W / 1000, KW as is, WH and KWH as
average power over the block, per-phase blocks enforced conservatively on the whole node."""

from __future__ import annotations

from datetime import timedelta

import pytest

from microgrid.envelopes.models import OperatingEnvelope
from microgrid.envelopes.oscp import Block, capacity_kw

from .conftest import T0, block, forecast_body

H = timedelta(hours=1)


def one(unit, capacity, *, voltage_v=None, phases=None, phase="ALL", hours=1):
    b = Block(index=0, capacity=capacity, phase=phase, unit=unit, start=T0, end=T0 + hours * H)
    return capacity_kw(b, voltage_v=voltage_v, phases=phases)[0]


def test_the_conversion_rules():
    assert one("KW", 250.5) == 250.5
    assert one("W", 250500) == 250.5
    assert one("W", 1) == 0.001
    assert one("A", 16, voltage_v=230, phases=3) == 11.04  # 16 x 230 x 3 / 1000
    assert one("A", 32, voltage_v=230, phases=1) == 7.36
    assert one("A", 0, voltage_v=230, phases=3) == 0.0
    # energy over the block is its average power
    assert one("KWH", 50, hours=0.25) == 200.0
    assert one("WH", 50000, hours=0.5) == 100.0
    # a one-phase value holds on every phase of the node: x phases
    assert one("W", 10000, phase="ONE", voltage_v=230, phases=3) == 30.0
    assert one("A", 16, phase="TWO", voltage_v=230, phases=3) == 11.04
    assert one("KWH", 5, phase="THREE", phases=3, hours=0.5) == 30.0


def test_every_conversion_explains_itself():
    b = Block(index=0, capacity=10000, phase="ONE", unit="W", start=T0, end=T0 + H)
    kw, note = capacity_kw(b, voltage_v=230, phases=3)
    assert kw == 30.0
    assert "phase ONE" in note and "x 3 phases = 30 kW" in note and "whole node" in note
    b = Block(index=0, capacity=30, phase="ALL", unit="KWH", start=T0, end=T0 + H / 2)
    assert capacity_kw(b, voltage_v=None, phases=None) == (
        60.0,
        "30 KWH over 0.5 h (average power) = 60 kW",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("unit", "capacity", "group_id", "kw", "conversion"),
    [
        ("KW", 120, "GRP-N", 120.0, None),
        ("W", 120000, "GRP-N", 120.0, None),
        # a MICROGRID scope converts with the root (grid: 230 V, 3 phases)
        ("A", 100, "GRP-N", 69.0, (230.0, 3)),
        # a NODE scope with that node's own figures (grp-a: 400 V line-to-neutral, 1 phase)
        ("A", 100, "GRP-G", 40.0, (400.0, 1)),
    ],
)
def test_received_capacities_are_converted_with_the_scope_node(
    bound, receive, small_topology, unit, capacity, group_id, kw, conversion
):
    from microgrid.topology.services import topology_replace

    for node in small_topology["nodes"]:
        if node["node_id"] == "grp-a":
            node.update(voltage_v=400, phases=1)
    topology_replace(microgrid=bound, base_version=1, **small_topology)
    receive(forecast_body(group_id=group_id, blocks=[block(T0, T0 + H, capacity, unit=unit)]))
    envelope = OperatingEnvelope.objects.get()
    assert (envelope.capacity, envelope.unit) == (float(capacity), unit)
    assert envelope.capacity_kw == kw
    assert (
        (envelope.voltage_v, envelope.phases) if envelope.voltage_v is not None else None
    ) == conversion


@pytest.mark.django_db
def test_per_phase_blocks_in_one_window_are_kept_per_phase_and_the_smallest_binds(
    bound, receive, support_api
):
    from microgrid.limits.selectors import effective_limits

    receive(
        forecast_body(
            blocks=[
                block(T0, T0 + H, 40000, unit="W", phase="ONE"),
                block(T0, T0 + H, 30000, unit="W", phase="TWO"),
                block(T0, T0 + H, 50000, unit="W", phase="THREE"),
                block(T0 + H, T0 + 2 * H, 16, unit="A", phase="ALL"),
            ]
        )
    )
    rows = list(OperatingEnvelope.objects.order_by("number").values_list("phase", "capacity_kw"))
    assert rows == [("ONE", 120.0), ("TWO", 90.0), ("THREE", 150.0), ("ALL", 11.04)]
    # the smallest per-phase value (30 kW on TWO) x 3 phases binds the root
    root = effective_limits(bound, T0)["grid"]
    assert (root.effective_limit_kw, root.limit_source) == (90.0, "OPERATING_ENVELOPE")
    doc = support_api.get("/api/microgrids/MG.NORTH-1/operating-envelopes/OE-2/").json()
    assert doc["phase"] == "TWO" and doc["capacity_kw"] == 90.0
    assert "30 kW on one phase" in doc["capacity_explanation"]
    assert "x 3 phases = 90 kW" in doc["capacity_explanation"]


@pytest.mark.django_db
def test_a_revision_of_one_phase_leaves_the_other_phases_in_force(bound, receive):
    receive(
        forecast_body(
            blocks=[
                block(T0, T0 + H, 40, unit="KW", phase="ONE"),
                block(T0, T0 + H, 30, unit="KW", phase="TWO"),
            ]
        )
    )
    receipt = receive(forecast_body(blocks=[block(T0, T0 + H, 35, unit="KW", phase="TWO")]))
    assert receipt.superseded == ["OE-2"]
    live = OperatingEnvelope.objects.filter(state="RECEIVED").order_by("number")
    assert [(e.phase, e.capacity_kw) for e in live] == [("ONE", 120.0), ("TWO", 105.0)]


@pytest.mark.django_db
def test_energy_blocks_are_average_power_over_their_window(bound, receive):
    receive(
        forecast_body(
            blocks=[
                block(T0, T0 + H / 4, 50, unit="KWH"),
                block(T0 + H / 4, T0 + H / 2, 25000, unit="WH"),
            ]
        )
    )
    rows = list(OperatingEnvelope.objects.order_by("number").values_list("unit", "capacity_kw"))
    assert rows == [("KWH", 200.0), ("WH", 100.0)]


@pytest.mark.django_db
def test_amperes_for_a_microgrid_without_a_root_are_refused(empty_microgrid, peer, receive):
    from microgrid.common.errors import DomainError
    from microgrid.envelopes.services import oscp_group_binding_save

    oscp_group_binding_save(
        peer=peer, group_id="GRP-E", microgrid=empty_microgrid, scope={"type": "MICROGRID"}
    )
    with pytest.raises(DomainError) as caught:
        receive(forecast_body(group_id="GRP-E", blocks=[block(T0, T0 + H, 16, unit="A")]))
    assert (caught.value.code, caught.value.status) == ("OSCP_MESSAGE_INVALID", 400)
    assert caught.value.errors[0].field == "forecasted_blocks[0].unit"
    assert not OperatingEnvelope.objects.exists()
    # kW needs no node to convert with
    receive(forecast_body(group_id="GRP-E", blocks=[block(T0, T0 + H, 16, unit="KW")]))
    assert OperatingEnvelope.objects.get().capacity_kw == 16.0
