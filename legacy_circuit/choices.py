from django.db import models


class AliasScope(models.TextChoices):
    MICROGRID = "MICROGRID"
    NODE = "NODE"
    ASSET = "ASSET"


class ResolutionFailure(models.TextChoices):
    UNKNOWN_CIRCUIT = "UNKNOWN_CIRCUIT"
    NO_ALIAS = "NO_ALIAS"
    AMBIGUOUS = "AMBIGUOUS"
    TARGET_MISSING = "TARGET_MISSING"
