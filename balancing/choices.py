from django.db import models


class TriggerType(models.TextChoices):
    SCHEDULED = "SCHEDULED"
    API = "API"
    LEGACY_ALIAS = "LEGACY_ALIAS"
    TOU_TRANSITION = "TOU_TRANSITION"
    ENVELOPE_CHANGE = "ENVELOPE_CHANGE"
    LIMIT_CHANGE = "LIMIT_CHANGE"
    CAPABILITY_CHANGE = "CAPABILITY_CHANGE"
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


# Plain-language labels shown next to the verbatim codes on the pages.
CODE_LABELS = {
    "FAILSAFE_TELEMETRY_UNAVAILABLE": "Fallback needed but not configured: fail safe",
    "TELEMETRY_FALLBACK": "A stale or missing reading was replaced by its fallback",
    "EXTERNAL_CONTROL": "Delegated to an external controller",
    "OPERATING_ENVELOPE_LIMIT": "Bound by an operating envelope",
    "MICROGRID_LIMIT": "Bound by the microgrid aggregate cap",
    "TOU_LIMIT": "Bound by an active scheduled cap",
    "NODE_LIMIT": "Bound by a Node Limit",
    "PHYSICAL_RATING": "Bound by a physical rating",
    "MIN_POWER_UNSERVED": "No room for the charger's minimum: set to 0",
    "ASSET_MAX_POWER": "Charger at its own maximum",
    "DEMAND_MET": "Charger got all it asked for",
    "MEASURED": "All inputs measured and fresh",
    "FALLBACK_DERIVED": "Some inputs replaced by fallback values",
    "FAILSAFE": "Fail safe: an input had no fallback",
    "OK": "Every charger got what it asked for",
    "CONSTRAINED": "A limit held some chargers back",
    "BREACH_PHYSICAL_RATING": "Measured above the physical rating",
    "BREACH_OPERATING_ENVELOPE": "Measured above an operating envelope",
    "BREACH_MICROGRID_LIMIT": "Measured above the microgrid cap",
    "BREACH_TOU_LIMIT": "Measured above a scheduled cap",
    "BREACH_NODE_LIMIT": "Measured above a Node Limit",
}
