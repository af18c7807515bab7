from django.db import models


class ForecastType(models.TextChoices):
    """OSCP 2.0 CapacityForecastType, as received."""

    CONSUMPTION = "CONSUMPTION"
    GENERATION = "GENERATION"
    FALLBACK_CONSUMPTION = "FALLBACK_CONSUMPTION"
    FALLBACK_GENERATION = "FALLBACK_GENERATION"
    OPTIMUM = "OPTIMUM"


FALLBACK_TYPES = frozenset({ForecastType.FALLBACK_CONSUMPTION, ForecastType.FALLBACK_GENERATION})
NORMAL_TYPES = frozenset({ForecastType.CONSUMPTION, ForecastType.GENERATION})


class Direction(models.TextChoices):
    IMPORT = "IMPORT", "Import (consumption)"
    EXPORT = "EXPORT", "Export (generation)"


DIRECTION_OF = {
    ForecastType.CONSUMPTION: Direction.IMPORT,
    ForecastType.FALLBACK_CONSUMPTION: Direction.IMPORT,
    ForecastType.OPTIMUM: Direction.IMPORT,
    ForecastType.GENERATION: Direction.EXPORT,
    ForecastType.FALLBACK_GENERATION: Direction.EXPORT,
}


class CapacityUnit(models.TextChoices):
    A = "A", "ampere per phase"
    W = "W", "watt"
    KW = "KW", "kilowatt"
    WH = "WH", "watt-hour over the block (average power)"
    KWH = "KWH", "kilowatt-hour over the block (average power)"


ENERGY_UNITS = frozenset({CapacityUnit.WH, CapacityUnit.KWH})


class Phase(models.TextChoices):
    """OSCP 2.0 PhaseIndicator, stored as received. ONE / TWO / THREE are per-phase values."""

    ONE = "ONE"
    TWO = "TWO"
    THREE = "THREE"
    ALL = "ALL"
    UNKNOWN = "UNKNOWN"


PER_PHASE = frozenset({Phase.ONE, Phase.TWO, Phase.THREE})


class ScopeType(models.TextChoices):
    MICROGRID = "MICROGRID", "Microgrid"
    NODE = "NODE", "Microgrid Node"


class EnvelopeState(models.TextChoices):
    """The stored lifecycle; PENDING / ACTIVE / EXPIRED are derived from the clock."""

    RECEIVED = "RECEIVED"
    WITHDRAWN = "WITHDRAWN"
    SUPERSEDED = "SUPERSEDED"


class EnvelopeStatus(models.TextChoices):
    PENDING = "PENDING", "Not yet in its window"
    ACTIVE = "ACTIVE", "In its window"
    EXPIRED = "EXPIRED", "Its window has ended"
    WITHDRAWN = "WITHDRAWN", "Withdrawn by support staff"
    SUPERSEDED = "SUPERSEDED", "Replaced by a newer forecast"


class Enforcement(models.TextChoices):
    """What an envelope does right now (derived, like the status)."""

    ENFORCED = "ENFORCED", "Applied: part of the effective limit"
    EXPORT_SHOWN = "EXPORT_SHOWN", "Export envelope: shown, no export is controlled"
    OPTIMUM_SHOWN = "OPTIMUM_SHOWN", "OPTIMUM forecast: shown, never enforced"
    FALLBACK_STANDBY = "FALLBACK_STANDBY", "Fallback: applies only while its peer is offline"
    REPLACED_BY_FALLBACK = (
        "REPLACED_BY_FALLBACK",
        "Its peer is offline: the fallback envelopes apply instead",
    )
    NOT_ACTIVE = "NOT_ACTIVE", "Not in force (see status)"


class MessageType(models.TextChoices):
    """Inbound OSCP messages (CP -> this product)."""

    REGISTER = "REGISTER", "Register (POST)"
    REGISTER_UPDATE = "REGISTER_UPDATE", "Register (PUT)"
    UNREGISTER = "UNREGISTER", "Register (DELETE)"
    HANDSHAKE = "HANDSHAKE", "Handshake"
    HEARTBEAT = "HEARTBEAT", "Heartbeat"
    UPDATE_GROUP_CAPACITY_FORECAST = (
        "UPDATE_GROUP_CAPACITY_FORECAST",
        "UpdateGroupCapacityForecast",
    )


class OutboundType(models.TextChoices):
    """Outbound OSCP messages (this product -> CP), with their CP endpoint paths."""

    REGISTER = "REGISTER", "register"
    HANDSHAKE_ACKNOWLEDGEMENT = "HANDSHAKE_ACKNOWLEDGEMENT", "handshake_acknowledgement"
    HEARTBEAT = "HEARTBEAT", "heartbeat"
    UPDATE_GROUP_MEASUREMENTS = "UPDATE_GROUP_MEASUREMENTS", "update_group_measurements"
    GROUP_CAPACITY_COMPLIANCE_ERROR = (
        "GROUP_CAPACITY_COMPLIANCE_ERROR",
        "group_capacity_compliance_error",
    )


class OutboundState(models.TextChoices):
    PENDING = "PENDING", "Waiting to be sent (or to be retried)"
    SENT = "SENT", "Accepted by the CP (2xx)"
    FAILED = "FAILED", "Refused by the CP (4xx): not retried"
    EXPIRED = "EXPIRED", "Not delivered before it stopped being worth sending"
    CANCELLED = "CANCELLED", "Cancelled: the peer unregistered or lost its CP connection"


class SegmentState(models.TextChoices):
    PENDING = "PENDING", "Waiting for the other segments"
    ASSEMBLED = "ASSEMBLED", "All segments arrived: applied as one message"
    DROPPED = "DROPPED", "Not all segments arrived in time: dropped"


class MeasurementConfiguration(models.TextChoices):
    CONTINUOUS = "CONTINUOUS"
    INTERMITTENT = "INTERMITTENT"


class TransitionKind(models.TextChoices):
    ACTIVATED = "ACTIVATED", "Became active"
    EXPIRED = "EXPIRED", "Expired"


class PeerMode(models.TextChoices):
    OFFLINE = "OFFLINE", "Peer went offline"
    ONLINE = "ONLINE", "Peer back online"


class ModeCause(models.TextChoices):
    HEARTBEAT_LAPSED = "HEARTBEAT_LAPSED", "No heartbeat before offline_mode_at"
    HEARTBEAT = "HEARTBEAT", "Heartbeat"
    HANDSHAKE = "HANDSHAKE", "Handshake"
