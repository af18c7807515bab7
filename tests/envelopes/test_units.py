"""Unit conversion: A with the node's voltage and phases, W / 1000, KW as is."""

from __future__ import annotations

from datetime import timedelta

import pytest

from microgrid.envelopes.models import OperatingEnvelope
from microgrid.envelopes.oscp import Block, capacity_kw

from .conftest import T0, block, forecast_body

H = timedelta(hours=1)


def one(unit, capacity, *, voltage_v=None, phases=None):
    b = Block(index=0, capacity=capacity, phase="ALL", unit=unit, start=T0, end=T0 + H)
    return capacity_kw(b, voltage_v=voltage_v, phases=phases)


def test_the_conversion_rules():
    assert one("KW", 250.5) == 250.5
    assert one("W", 250500) == 250.5
    assert one("W", 1) == 0.001
    assert one("A", 16, voltage_v=230, phases=3) == 11.04  # 16 x 230 x 3 / 1000
    assert one("A", 32, voltage_v=230, phases=1) == 7.36
    assert one("A", 0, voltage_v=230, phases=3) == 0.0


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
def test_the_phase_is_stored_as_received_and_does_not_change_the_conversion(bound, receive):
    receive(
        forecast_body(
            blocks=[
                block(T0, T0 + H, 16, unit="A", phase="ONE"),
                block(T0 + H, T0 + 2 * H, 16, unit="A", phase="ALL"),
            ]
        )
    )
    rows = list(OperatingEnvelope.objects.order_by("number").values_list("phase", "capacity_kw"))
    assert rows == [("ONE", 11.04), ("ALL", 11.04)]


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
