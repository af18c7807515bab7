from django.db import models

from balancing.choices import Outcome


class FleetState(models.TextChoices):
    """What the overview groups microgrids by: the latest cycle's outcome, or none yet."""

    OK = "OK", "OK"
    CONSTRAINED = "CONSTRAINED", "Constrained"
    FAILSAFE = "FAILSAFE", "Fail safe"
    NO_CYCLE = "NO_CYCLE", "No cycle yet"


# Every cycle outcome is a fleet state (checked once, at import).
assert set(Outcome.values) <= set(FleetState.values), "FleetState must name every Outcome"
