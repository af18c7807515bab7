from django.db import models


class Protocol(models.TextChoices):
    OCPP16 = "ocpp1.6"
    OCPP201 = "ocpp2.0.1"


class AuthRefusal(models.TextChoices):
    UNKNOWN_STATION = "UNKNOWN_STATION"
    NO_CREDENTIALS = "NO_CREDENTIALS"
    WRONG_PASSWORD = "WRONG_PASSWORD"
    USER_MISMATCH = "USER_MISMATCH"  # Basic auth user is not the station id of the URL
    NO_SUBPROTOCOL = "NO_SUBPROTOCOL"


# Connector / EVSE states in which a vehicle is plugged in (1.6 and 2.0.1 names).
PLUGGED_IN = frozenset(
    {"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Occupied"}
)
