from django.db import models


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING"  # written with the cycle, not yet handed to a channel
    SENT = "SENT"  # handed to a channel, no answer yet
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"  # the receiver refused it: not retried
    FAILED = "FAILED"  # no usable answer: retried with backoff while valid
    EXPIRED = "EXPIRED"  # valid_until passed before it could be delivered
    SUPERSEDED = "SUPERSEDED"  # a newer cycle's setpoint for the same target exists
    UNCHANGED = "UNCHANGED"  # within the deadband of the last accepted one: not sent


# Statuses a delivery may still leave: the worker's and the sweep's business.
OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.FAILED)
# Statuses a newer cycle's setpoint replaces (SENT is in flight: its answer is still recorded).
SUPERSEDABLE = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
# Statuses the card calls out.
TROUBLE = (DeliveryStatus.FAILED, DeliveryStatus.REJECTED, DeliveryStatus.EXPIRED)


class TargetType(models.TextChoices):
    CHARGER = "CHARGER"
    SCOPE = "SCOPE"  # a scope budget for an external controller


class Channel(models.TextChoices):
    PULL = "PULL"  # no push channel: GET /api/microgrids/{id}/setpoints/ only
    WEBHOOK = "WEBHOOK"
    SIMULATOR = "SIMULATOR"
    OCPP = "OCPP"


# Channels whose deliveries the Celery task never claims: nobody pushes PULL ones, and OCPP
# gateways claim those of the stations they hold.
NOT_BY_WORKER = (Channel.PULL, Channel.OCPP)
# Channels whose setpoints travel packed, one message per cycle answered for all of them and
# renewing what the receiver holds (`DeliveryBatch`); the others have a `Delivery` per charger.
BATCHED = (Channel.WEBHOOK, Channel.SIMULATOR)
