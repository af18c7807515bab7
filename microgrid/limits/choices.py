from django.db import models


class LimitScope(models.TextChoices):
    NODE = "NODE", "Node Limit"
    MICROGRID = "MICROGRID", "Microgrid limit"


class LimitSource(models.TextChoices):
    MANUAL = "MANUAL", "Manual"
    LEGACY_TOU = "LEGACY_TOU", "Legacy TOU"
    SIMULATOR = "SIMULATOR", "Simulator"


class ConstraintSource(models.TextChoices):
    """What gives a node its effective limit (spec 3.2), in the spec's tie order."""

    OPERATING_ENVELOPE = "OPERATING_ENVELOPE", "Operating envelope"
    MICROGRID_LIMIT = "MICROGRID_LIMIT", "Microgrid limit"
    TOU_LIMIT = "TOU_LIMIT", "Scheduled (TOU) limit"
    NODE_LIMIT = "NODE_LIMIT", "Node Limit"
    PHYSICAL_RATING = "PHYSICAL_RATING", "Physical rating"


class TransitionKind(models.TextChoices):
    START = "START", "Schedule started"
    END = "END", "Schedule ended"
