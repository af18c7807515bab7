"""Choices of the telemetry app."""

from django.db import models


class EnergySource(models.TextChoices):
    """Where a session's energy need came from."""

    ENERGY = "ENERGY", "energy_needed_kwh as sent"
    TARGET_SOC = "TARGET_SOC", "From the target and arrival SoC and the battery capacity"


class SessionOrigin(models.TextChoices):
    """Where a cycle's departure for a charger came from."""

    API = "API", "The integration API"
    DEFAULT_DWELL = "DEFAULT_DWELL", "The charger group's default dwell"
