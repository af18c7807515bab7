"""A small microgrid with per-phase data (issue 19): a 3 x 32 A feeder with chargers on it."""

from __future__ import annotations

import copy

import pytest

PHASE_TOPOLOGY = {
    "nodes": [
        {
            "node_id": "grid",
            "parent_id": None,
            "kind": "GRID_CONNECTION",
            "name": "Grid",
            "physical_rating_kw": 200,
            "rating_a": 250,
        },
        {
            "node_id": "feeder",
            "parent_id": "grid",
            "kind": "FEEDER",
            "name": "Feeder 3 x 32 A",
            "physical_rating_kw": 22,
            "rating_a": 32,
        },
    ],
    "assets": [
        {
            "asset_id": "CH-1",
            "node_id": "feeder",
            "kind": "CHARGER",
            "name": "Charger 1",
            "max_power_kw": 7.4,
            "phases": 1,
            "phase_rotation": "L1",
            "min_current_a": 6,
            "max_current_a": 32,
        },
        {
            "asset_id": "CH-2",
            "node_id": "feeder",
            "kind": "CHARGER",
            "name": "Charger 2",
            "max_power_kw": 7.4,
            "phases": 1,
            "phase_rotation": "L2",
        },
        {
            "asset_id": "CH-3",
            "node_id": "feeder",
            "kind": "CHARGER",
            "name": "Charger 3",
            "max_power_kw": 22,
            "phase_rotation": "L2L3L1",
        },
        {"asset_id": "M-F", "node_id": "feeder", "kind": "METER", "name": "Feeder meter"},
    ],
}


@pytest.fixture
def phase_topology():
    return copy.deepcopy(PHASE_TOPOLOGY)


@pytest.fixture
def phase_microgrid(empty_microgrid, phase_topology):
    from microgrid.topology.services import topology_replace

    topology_replace(
        microgrid=empty_microgrid,
        base_version=0,
        nodes=phase_topology["nodes"],
        assets=phase_topology["assets"],
    )
    empty_microgrid.refresh_from_db()
    return empty_microgrid
