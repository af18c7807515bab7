from django.db import models

from balancing.codes import BREACH_LABELS, REASON_LABELS


class TriggerType(models.TextChoices):
    SCHEDULED = "SCHEDULED"
    API = "API"
    LEGACY_ALIAS = "LEGACY_ALIAS"
    TOU_TRANSITION = "TOU_TRANSITION"
    ENVELOPE_CHANGE = "ENVELOPE_CHANGE"
    LIMIT_CHANGE = "LIMIT_CHANGE"
    CAPABILITY_CHANGE = "CAPABILITY_CHANGE"
    SESSION_CHANGE = "SESSION_CHANGE"
    SIMULATOR = "SIMULATOR"
    MANUAL = "MANUAL"  # "Rebalance now" on a Manage page, with the user


class Outcome(models.TextChoices):
    OK = "OK"
    CONSTRAINED = "CONSTRAINED"
    FAILSAFE = "FAILSAFE"


class SourceMode(models.TextChoices):
    MEASURED = "MEASURED"
    FALLBACK_DERIVED = "FALLBACK_DERIVED"
    FAILSAFE = "FAILSAFE"


class BreachStatus(models.TextChoices):
    OPEN = "OPEN"
    RESOLVED = "RESOLVED"


# Plain-language labels shown next to the verbatim codes on the pages: the reason and breach
# labels live with their codes (balancing/codes.py), the modes and outcomes here.
CODE_LABELS = {
    **REASON_LABELS,
    "MEASURED": "All inputs measured and fresh",
    "FALLBACK_DERIVED": "Some inputs replaced by fallback values",
    "FAILSAFE": "Fail safe: an input had no fallback",
    "OK": "Every charger got what it asked for",
    "CONSTRAINED": "A limit held some chargers back",
    **BREACH_LABELS,
}
