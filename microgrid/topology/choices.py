from django.db import models


class NodeKind(models.TextChoices):
    GRID_CONNECTION = "GRID_CONNECTION", "Grid connection"
    SWITCHBOARD = "SWITCHBOARD", "Switchboard"
    FEEDER = "FEEDER", "Feeder"
    CHARGER_GROUP = "CHARGER_GROUP", "Charger group"


class HeadroomMode(models.TextChoices):
    """How much of each node's budget a cycle keeps back for its uncontrolled load to rise
    before the next cycle (spec 4.3, "Headroom")."""

    OFF = "off", "Off: the whole budget is allocated"
    STATIC = "static", "Static: a fixed margin per node"
    ADAPTIVE = "adaptive", "Adaptive: from the node's recent rises, never below the static one"


class AssetKind(models.TextChoices):
    CHARGER = "CHARGER", "Charger"
    SITE_LOAD = "SITE_LOAD", "Site load"
    PV = "PV", "PV"
    BATTERY = "BATTERY", "Battery"
    METER = "METER", "Meter"


class PhaseRotation(models.TextChoices):
    """How a charger's phases sit on its node's phases (OCPP's names). A single-phase charger
    names the grid phase it is wired to; a three-phase one which grid phase its L1, L2, L3 are."""

    L1 = "L1", "L1"
    L2 = "L2", "L2"
    L3 = "L3", "L3"
    L1L2L3 = "L1L2L3", "L1L2L3 (no rotation)"
    L2L3L1 = "L2L3L1", "L2L3L1"
    L3L1L2 = "L3L1L2", "L3L1L2"


SINGLE_PHASE_ROTATIONS = ("L1", "L2", "L3")
THREE_PHASE_ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2")
DEFAULT_ROTATION = {1: "L1", 3: "L1L2L3"}

# The fields each asset kind carries beyond asset_id, node_id, kind and name,
# in the order the API shows them.
ASSET_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    AssetKind.CHARGER: (
        "max_power_kw",
        "min_power_kw",
        "priority",
        "failsafe_power_kw",
        "phases",
        "phase_rotation",
        "min_current_a",
        "max_current_a",
        "station_id",
        "evse_id",
    ),
    AssetKind.SITE_LOAD: ("rated_power_kw", "fallback_kw"),
    AssetKind.BATTERY: ("rated_power_kw", "fallback_kw"),
    AssetKind.PV: ("rated_power_kw",),
    AssetKind.METER: (),
}
# Every asset field beyond asset_id, node_id, kind and name, each once, in the API's order
# (the columns the topology reads and writes).
ASSET_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(name for fields in ASSET_KIND_FIELDS.values() for name in fields)
)
# A node's fields beyond node_id and parent_id, in the API's order.
NODE_FIELDS: tuple[str, ...] = (
    "kind",
    "name",
    "physical_rating_kw",
    "voltage_v",
    "phases",
    "rating_a",
    "max_unbalance_a",
)
