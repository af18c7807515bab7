"""Operating envelopes received over OSCP 2.0, the peers that send them, and their audit.

- `OscpPeer`: a capacity provider; its token is stored hashed.
- `OscpGroupBinding`: one OSCP group of a peer -> one scope of one microgrid.
- `OscpMessage`: every accepted message, stored once as received (append-only;
  also what makes a repeated X-Request-ID a no-op).
- `OperatingEnvelope`: one forecasted block of one message, as a capacity
  limit on a scope for a window. The stored `state` is RECEIVED, WITHDRAWN or
  SUPERSEDED; PENDING / ACTIVE / EXPIRED are derived from the clock when read.
- `EnvelopeTransition`, `PeerModeChange`: what the beat task and the
  heartbeat path saw happen (append-only audit).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from microgrid.common.fields import MAX_KW
from microgrid.envelopes.choices import (
    CapacityUnit,
    Direction,
    EnvelopeState,
    ForecastType,
    MessageType,
    ModeCause,
    OutboundState,
    OutboundType,
    PeerMode,
    Phase,
    ScopeType,
    SegmentState,
    TransitionKind,
)
from microgrid.topology.models import Microgrid, MicrogridNode

MAX_CAPACITY_KW = MAX_KW


class OscpPeer(models.Model):
    name = models.CharField(max_length=64, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(
        max_length=8, editable=False, help_text="First characters of the token, to recognise it."
    )
    heartbeat_interval_s = models.PositiveIntegerField(
        default=60,
        help_text="How often the peer is expected to send heartbeats; a handshake keeps the "
        "peer online for this long until its first heartbeat.",
    )
    active = models.BooleanField(
        default=True, help_text="An inactive peer's token is refused (401)."
    )
    # Heartbeat bookkeeping changes through QuerySet.update(): every heartbeat
    # is in OscpMessage and every switch in PeerModeChange, so a history row per
    # heartbeat would only repeat them.
    offline_mode_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="From the last heartbeat: the peer is offline from this instant on unless "
        "another heartbeat arrives first.",
    )
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_handshake_at = models.DateTimeField(null=True, blank=True)
    required_behaviour = models.JSONField(
        null=True, blank=True, help_text="As the peer's last handshake sent it."
    )
    # Registration (OSCP 2.0 section 2.6.1): the token the CP gave us and where it listens.
    cp_base_url = models.URLField(
        "CP base URL",
        max_length=300,
        blank=True,
        default="",
        help_text="The capacity provider's OSCP 2.0 base URL, e.g. https://cp.example/oscp/cp/2.0",
    )
    cp_token = models.CharField(
        "CP token",
        max_length=256,
        blank=True,
        default="",
        help_text="The token the CP gave us: sent as 'Authorization: Token ...' to the CP.",
    )
    # After an inbound register this product hands the CP a new token; the old one stays
    # valid until the new one is first used (so a lost register answer locks nobody out).
    next_token_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    registered_at = models.DateTimeField(null=True, blank=True)
    handshake_heartbeat_interval_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="heartbeat_interval of the CP's last handshake: how often we send heartbeats "
        "and the interval offline detection uses (else heartbeat_interval_s).",
    )
    measurement_interval_s = models.PositiveIntegerField(
        default=900, help_text="How often update_group_measurements is sent per bound group."
    )
    next_heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords(
        excluded_fields=["token_hash", "next_token_hash", "cp_token", "next_heartbeat_at"]
    )

    class Meta:
        verbose_name = "OSCP peer"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(heartbeat_interval_s__gte=1), name="oscp_peer_interval_positive"
            ),
            models.CheckConstraint(
                condition=Q(measurement_interval_s__gte=1),
                name="oscp_peer_measurement_interval_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def offline_at(self, at: datetime) -> bool:
        """Offline when `at` is past the last heartbeat's offline_mode_at."""
        return self.offline_mode_at is not None and at >= self.offline_mode_at

    @property
    def interval_s(self) -> int:
        """The heartbeat interval in force: the CP's handshake's, else the admin's."""
        return self.handshake_heartbeat_interval_s or self.heartbeat_interval_s

    @property
    def connected(self) -> bool:
        """Outbound messages can be sent: the CP's base URL and token are known."""
        return bool(self.active and self.cp_base_url and self.cp_token)


class OscpGroupBinding(models.Model):
    """An OSCP group of one peer maps to exactly one scope of one microgrid."""

    peer = models.ForeignKey(OscpPeer, on_delete=models.CASCADE, related_name="groups")
    group_id = models.CharField(max_length=64)
    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="oscp_group_bindings"
    )
    scope_type = models.CharField(max_length=10, choices=ScopeType.choices)
    # RESTRICT: the topology validator refuses removing a bound node
    # (NODE_IN_USE) before the database would.
    node = models.ForeignKey(
        MicrogridNode,
        null=True,
        blank=True,
        on_delete=models.RESTRICT,
        related_name="oscp_group_bindings",
        verbose_name="Microgrid Node",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # Outbound measurement bookkeeping (QuerySet.update(): the outbox is its audit).
    measurement_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    measured_until = models.DateTimeField(null=True, blank=True, editable=False)
    measured_wh = models.FloatField(default=0, editable=False)
    history = HistoricalRecords(
        excluded_fields=["measurement_started_at", "measured_until", "measured_wh"]
    )

    class Meta:
        verbose_name = "OSCP group binding"
        ordering = ["peer__name", "group_id"]
        constraints = [
            models.UniqueConstraint(fields=["peer", "group_id"], name="oscp_group_once_per_peer"),
            models.CheckConstraint(
                condition=(Q(scope_type=ScopeType.NODE) & Q(node__isnull=False))
                | (Q(scope_type=ScopeType.MICROGRID) & Q(node__isnull=True)),
                name="oscp_binding_scope_matches_node",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.peer_id}/{self.group_id} -> {self.microgrid_id}"

    def scope_dict(self) -> dict:
        if self.scope_type == ScopeType.NODE:
            return {"type": "NODE", "node_id": self.node.node_id}
        return {"type": "MICROGRID"}


class OscpMessage(models.Model):
    """One accepted OSCP message, exactly as received (append-only, no history of its own)."""

    peer = models.ForeignKey(OscpPeer, on_delete=models.PROTECT, related_name="messages")
    message_type = models.CharField(max_length=32, choices=MessageType.choices)
    request_id = models.CharField("X-Request-ID", max_length=128)
    correlation_id = models.CharField("X-Correlation-ID", max_length=128, blank=True, default="")
    microgrid = models.ForeignKey(
        Microgrid,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="oscp_messages",
        help_text="For a forecast: the microgrid its group is bound to.",
    )
    group_id = models.CharField(max_length=64, blank=True, default="")
    body = models.TextField(
        help_text="The raw body as received (unknown fields included; a register's tokens "
        "masked; segments: the assembled message)."
    )
    body_hash = models.CharField(
        max_length=64, default="", help_text="SHA-256 of the body's canonical JSON."
    )
    segments = models.PositiveSmallIntegerField(
        default=0, help_text="How many segments it was assembled from (0: not segmented)."
    )
    notes = models.JSONField(
        default=list, blank=True, help_text="What was read tolerantly (e.g. a time without offset)."
    )
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "OSCP message"
        ordering = ["-received_at", "-pk"]
        constraints = [
            # The replay key: a repeated X-Request-ID of one peer and message type is the
            # same message. Segments have their own key (OscpSegment).
            models.UniqueConstraint(
                fields=["peer", "message_type", "request_id"],
                condition=Q(segments=0),
                name="oscp_request_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.peer_id} {self.message_type} {self.request_id}"


class OperatingEnvelope(models.Model):
    """One forecasted block: a capacity limit on a scope for [valid_from, valid_until)."""

    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="operating_envelopes"
    )
    number = models.PositiveIntegerField(help_text="Numbers the envelope_id within its microgrid.")
    envelope_id = models.CharField(max_length=64)
    # The scope as bound when the message arrived; text, so that the envelope
    # stays readable after its Microgrid Node or binding is gone.
    scope_type = models.CharField(max_length=10, choices=ScopeType.choices)
    node_id = models.CharField("Microgrid Node", max_length=64, blank=True, default="")
    direction = models.CharField(max_length=6, choices=Direction.choices)
    forecast_type = models.CharField(max_length=24, choices=ForecastType.choices)
    capacity = models.FloatField(help_text="As received, in `unit`.")
    unit = models.CharField(max_length=3, choices=CapacityUnit.choices)
    phase = models.CharField(max_length=7, choices=Phase.choices)
    capacity_kw = models.FloatField("effective capacity (kW)")
    capacity_note = models.CharField(
        "effective-capacity explanation",
        max_length=300,
        blank=True,
        default="",
        help_text="How capacity_kw follows from the block (unit, phase, node figures).",
    )
    # For a capacity in A: the node figures it was converted with.
    voltage_v = models.FloatField(null=True, blank=True)
    phases = models.PositiveSmallIntegerField(null=True, blank=True)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    state = models.CharField(
        max_length=10, choices=EnvelopeState.choices, default=EnvelopeState.RECEIVED
    )
    peer = models.ForeignKey(OscpPeer, on_delete=models.PROTECT, related_name="envelopes")
    group_id = models.CharField(max_length=64)
    message = models.ForeignKey(OscpMessage, on_delete=models.PROTECT, related_name="envelopes")
    block_index = models.PositiveIntegerField(help_text="Position in the message's blocks.")
    received_at = models.DateTimeField()
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )
    superseded_at = models.DateTimeField(null=True, blank=True)
    # A partial revision supersedes only the time it covers: what is left of a superseded
    # envelope outside the new blocks lives on as parts, each pointing at its origin.
    split_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parts",
        help_text="The superseded envelope this one is the uncovered remainder of.",
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    withdraw_reason = models.CharField(max_length=500, blank=True, default="")
    withdrawn_by_message = models.ForeignKey(
        OscpMessage,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="withdrawn_envelopes",
        help_text="The peer's message that ended it (an empty forecasted_blocks).",
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "operating envelope"
        ordering = ["microgrid_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["microgrid", "number"], name="envelope_number_once"),
            models.UniqueConstraint(fields=["microgrid", "envelope_id"], name="envelope_id_once"),
            models.CheckConstraint(
                condition=Q(valid_until__gt=F("valid_from")), name="envelope_window_not_empty"
            ),
            models.CheckConstraint(
                condition=Q(capacity_kw__gte=0) & Q(capacity_kw__lte=MAX_CAPACITY_KW),
                name="envelope_capacity_kw_range",
            ),
            models.CheckConstraint(
                condition=(Q(scope_type=ScopeType.NODE) & ~Q(node_id=""))
                | (Q(scope_type=ScopeType.MICROGRID) & Q(node_id="")),
                name="envelope_scope_matches_node",
            ),
            models.CheckConstraint(
                condition=Q(state__in=EnvelopeState.values), name="envelope_state_valid"
            ),
            models.CheckConstraint(
                condition=~Q(state=EnvelopeState.SUPERSEDED) | Q(superseded_at__isnull=False),
                name="envelope_superseded_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(state=EnvelopeState.WITHDRAWN) | Q(withdrawn_at__isnull=False),
                name="envelope_withdrawn_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["microgrid", "state", "valid_until"], name="envelope_live"),
            models.Index(fields=["peer", "group_id", "forecast_type"], name="envelope_group"),
            models.Index(fields=["state", "valid_from"], name="envelope_starts"),
            models.Index(fields=["state", "valid_until"], name="envelope_ends"),
        ]

    def __str__(self) -> str:
        return f"{self.envelope_id} {self.forecast_type} {self.capacity_kw} kW"

    def scope_dict(self) -> dict:
        if self.scope_type == ScopeType.NODE:
            return {"type": "NODE", "node_id": self.node_id}
        return {"type": "MICROGRID"}


class EnvelopeTransition(models.Model):
    """An envelope became ACTIVE or EXPIRED after it was received (beat task; append-only)."""

    envelope = models.ForeignKey(
        OperatingEnvelope, on_delete=models.CASCADE, related_name="transitions"
    )
    transition = models.CharField(max_length=9, choices=TransitionKind.choices)
    at = models.DateTimeField(help_text="The window boundary: valid_from or valid_until.")
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["envelope", "transition"], name="envelope_transition_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.envelope_id} {self.transition} at {self.at.isoformat()}"


class PeerModeChange(models.Model):
    """A peer went offline (its offline_mode_at passed) or came back (append-only)."""

    peer = models.ForeignKey(OscpPeer, on_delete=models.CASCADE, related_name="mode_changes")
    mode = models.CharField(max_length=7, choices=PeerMode.choices)
    cause = models.CharField(max_length=16, choices=ModeCause.choices)
    at = models.DateTimeField()
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["peer", "mode", "at"], name="peer_mode_change_once"),
        ]

    def __str__(self) -> str:
        return f"{self.peer_id} {self.mode} at {self.at.isoformat()}"


class OscpSegment(models.Model):
    """One segment of a segmented message (X-Segment-Index / X-Segment-Count, one
    X-Correlation-ID): kept until every segment of its set arrived (then applied as one
    message) or the set timed out (then DROPPED). Append-only apart from its state."""

    peer = models.ForeignKey(OscpPeer, on_delete=models.CASCADE, related_name="segments")
    message_type = models.CharField(max_length=32, choices=MessageType.choices)
    correlation_id = models.CharField("X-Correlation-ID", max_length=128)
    index = models.PositiveSmallIntegerField("X-Segment-Index")
    count = models.PositiveSmallIntegerField("X-Segment-Count")
    request_id = models.CharField("X-Request-ID", max_length=128)
    body = models.TextField()
    body_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField()
    state = models.CharField(
        max_length=9, choices=SegmentState.choices, default=SegmentState.PENDING
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    message = models.ForeignKey(
        OscpMessage,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="segment_rows",
        help_text="The message the set was assembled into.",
    )

    class Meta:
        verbose_name = "OSCP segment"
        ordering = ["-received_at", "correlation_id", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["peer", "message_type", "correlation_id", "index"],
                condition=~Q(state=SegmentState.DROPPED),
                name="oscp_segment_once",
            ),
        ]
        indexes = [models.Index(fields=["state", "received_at"], name="oscp_segment_pending")]

    def __str__(self) -> str:
        return f"{self.peer_id} {self.correlation_id} {self.index}/{self.count}"


class OscpOutbound(models.Model):
    """One message to a CP, with its delivery: the outbox (retries with backoff, expiry by
    type) and the audit of every message sent (attempts, status code, sent at)."""

    peer = models.ForeignKey(OscpPeer, on_delete=models.CASCADE, related_name="outbound")
    message_type = models.CharField(max_length=32, choices=OutboundType.choices)
    method = models.CharField(max_length=6, default="POST")
    request_id = models.CharField("X-Request-ID", max_length=128, unique=True)
    correlation_id = models.CharField("X-Correlation-ID", max_length=128, blank=True, default="")
    group_id = models.CharField(max_length=64, blank=True, default="")
    body = models.TextField(help_text="The JSON body sent (a register's token masked).")
    secret = models.CharField(
        max_length=256, blank=True, default="", help_text="A register's new token (not shown)."
    )
    dedupe_key = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="Sent at most once per key (compliance errors: per envelope and cause).",
    )
    state = models.CharField(
        max_length=9, choices=OutboundState.choices, default=OutboundState.PENDING
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OSCP outbound message"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["peer", "dedupe_key"],
                condition=~Q(dedupe_key=""),
                name="oscp_outbound_once_per_key",
            ),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="oscp_outbound_due")]

    def __str__(self) -> str:
        return f"{self.peer_id} {self.message_type} {self.request_id} {self.state}"
