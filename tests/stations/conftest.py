"""Stations tests: chargers name their station and EVSE through the topology, as in use."""

from __future__ import annotations

import pytest


def map_chargers(microgrid, mapping: dict[str, tuple[str, int] | None]) -> None:
    """Save the topology with these chargers' (station_id, evse_id) (None: off OCPP)."""
    from microgrid.topology.selectors import topology_document
    from microgrid.topology.services import topology_replace

    microgrid.refresh_from_db()
    document = topology_document(microgrid)
    for asset in document["assets"]:
        if asset["asset_id"] in mapping:
            station_evse = mapping[asset["asset_id"]]
            asset["station_id"], asset["evse_id"] = station_evse or (None, None)
    topology_replace(
        microgrid=microgrid,
        base_version=microgrid.topology_version,
        nodes=document["nodes"],
        assets=document["assets"],
    )
    microgrid.refresh_from_db()


@pytest.fixture
def mapped():
    return map_chargers
