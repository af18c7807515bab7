from django.db import models


class AliasScope(models.TextChoices):
    MICROGRID = "MICROGRID"
    NODE = "NODE"
    ASSET = "ASSET"


class ResolutionFailure(models.TextChoices):
    """Why a circuit id does not resolve (the `reason` of CIRCUIT_ALIAS_NOT_RESOLVABLE)."""

    UNKNOWN_CIRCUIT = "UNKNOWN_CIRCUIT", "No such circuit"
    NO_ALIAS = "NO_ALIAS", "No active alias"
    AMBIGUOUS = "AMBIGUOUS", "More than one active alias"
    TARGET_MISSING = "TARGET_MISSING", "The alias names a target that does not exist"


# Why one alias does not resolve its circuit, on the pages and in admin.
INACTIVE = "INACTIVE"
ALIAS_PROBLEM_LABELS = {
    INACTIVE: "Deactivated",
    ResolutionFailure.AMBIGUOUS: "The circuit has another active alias",
    ResolutionFailure.TARGET_MISSING: "Its target does not exist",
}
