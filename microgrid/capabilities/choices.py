from django.db import models


class CapabilityType(models.TextChoices):
    """What an external controller may own for a scope (spec 3.4), in the spec's order."""

    LOAD_MANAGEMENT = "LOAD_MANAGEMENT", "Load management"
    ENERGY_STORAGE = "ENERGY_STORAGE", "Energy storage"
    DEMAND_RESPONSE = "DEMAND_RESPONSE", "Demand response"
    ON_SITE_GENERATION = "ON_SITE_GENERATION", "On-site generation"


class ScopeType(models.TextChoices):
    MICROGRID = "MICROGRID", "Whole microgrid"
    NODE = "NODE", "Microgrid Node subtree"


class CapabilityState(models.TextChoices):
    AVAILABLE = "AVAILABLE", "Available"
    DEGRADED = "DEGRADED", "Degraded"
    UNAVAILABLE = "UNAVAILABLE", "Unavailable"


class BindingEnd(models.TextChoices):
    """How an active binding ended."""

    RELEASED = "RELEASED", "Released"
    TRANSFERRED = "TRANSFERRED", "Transferred to another source"
