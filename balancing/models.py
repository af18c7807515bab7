"""Cycles (one document per run), the triggers they served, and breaches."""

import uuid
from datetime import UTC
from functools import lru_cache

from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from balancing import record
from balancing.choices import BreachStatus, Outcome, SourceMode, TriggerType
from microgrid.common.bulk import insert_rows
from microgrid.topology.models import Microgrid


class CycleRecordPart(models.Model):
    """Columns shared by the records of many cycles (balancing/record.py), named by their
    content: the same columns are stored once, and a digest never names other content."""

    digest = models.CharField(max_length=24, primary_key=True)
    data = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"cycle record part {self.digest}"


# Decoded parts by digest, per process (content-addressed: never stale). Bounded.
_parts: dict[str, dict[str, bytes]] = {}
_PARTS_KEPT = 256


def part_columns(digest: str | None) -> dict[str, bytes] | None:
    """A part's columns (from this process's cache, or one query)."""
    if digest is None:
        return None
    found = _parts.get(digest)
    if found is None:
        data = CycleRecordPart.objects.filter(pk=digest).values_list("data", flat=True).first()
        if data is None:
            raise ValueError(f"cycle record part {digest} is missing")
        found = _remember(digest, record.decode_part(bytes(data)))
    return found


def parts_columns(digests) -> dict[str, dict[str, bytes]]:
    """Several parts' columns, with one query for those not cached."""
    wanted = {d for d in digests if d is not None}
    missing = [d for d in wanted if d not in _parts]
    if missing:
        for digest, data in CycleRecordPart.objects.filter(pk__in=missing).values_list(
            "digest", "data"
        ):
            _remember(digest, record.decode_part(bytes(data)))
    return {d: _parts[d] for d in wanted if d in _parts}


def _remember(digest: str, columns: dict[str, bytes]) -> dict[str, bytes]:
    if len(_parts) >= _PARTS_KEPT:
        _parts.clear()
    _parts[digest] = columns
    return columns


# The columns a record takes values from (record format 2), in this order.
ROW_FIELDS = (
    "cycle_id",
    "started_at",
    "completed_at",
    "topology_version",
    "outcome",
    "source_mode",
    "reason_codes",
    "scope",
    "trigger_type",
)


def record_row(
    cycle_id,
    started_at,
    completed_at,
    topology_version,
    outcome,
    source_mode,
    reason_codes,
    scope,
    trigger_type,
) -> dict[str, dict]:
    """The top-level values of a cycle's document and snapshot that its row gives back
    (balancing/record.py, step 4), as the row reads back from the database."""
    from balancing.inputs import stamp

    return {
        "d": {
            "cycle_id": cycle_id,
            "started_at": started_at.astimezone(UTC).isoformat(),
            "completed_at": completed_at.astimezone(UTC).isoformat(),
            "topology_version": topology_version,
            "outcome": outcome,
            "source_mode": source_mode,
            "reason_codes": reason_codes,
            "scope": scope,
            "trigger": {"type": trigger_type},
        },
        "s": {"now": stamp(started_at), "topology_version": topology_version},
    }


def decode_record(data: bytes, digest: str | None, parts=None, row=None) -> tuple[dict, dict]:
    """(document, snapshot) of a stored record; `row` the values of ROW_FIELDS (a sequence or
    `record_row`'s dict) for records that take values from their row."""
    part = parts.get(digest) if parts is not None and digest else part_columns(digest)
    if row is not None and not isinstance(row, dict):
        row = record_row(*row)
    return record.decode(bytes(data), part, row=row)


# ---- cycle ids ----------------------------------------------------------------------------------

_ID_NAMESPACE = uuid.UUID("6f1d3c2a-9a57-4d0e-8f7b-2b8e4c1d5a90")  # balancing.services.stable_id's
_MARK = "c"  # the 13th digit of a cycle id of this form (a uuid5's is always "5")
_SEQ_DIGITS = 8
_HEX = frozenset("0123456789abcdef")


@lru_cache(maxsize=8192)
def cycle_id_prefix(microgrid_id: str) -> str:
    """The 24 digits every cycle id of a microgrid starts with (issue 18)."""
    digits = uuid.uuid5(_ID_NAMESPACE, f"cycle:{microgrid_id}").hex
    return digits[:12] + _MARK + digits[13:24]


def cycle_id_of(microgrid_id: str, seq: int) -> str:
    """A cycle's id: 32 hex digits, the microgrid's prefix then `seq` in 8 hex digits.

    Stable (the same microgrid and seq give the same id: a simulator run replayed from
    scratch writes the same artifacts) and globally unique like the uuid5 it replaced, and a
    cycle is found from its id by (microgrid, seq), without an index of the ids: a cycle
    moved into a block (balancing/blocks.py) has no row of its own. Ids of cycles stored
    before this form (uuid5 hex, whose 13th digit is "5") stay what they were."""
    return cycle_id_prefix(microgrid_id) + format(seq, f"0{_SEQ_DIGITS}x")


def cycle_seq_of(cycle_id: str) -> tuple[str, int] | None:
    """(prefix, seq) of an id of `cycle_id_of`'s form, or None for any other text."""
    if (
        not isinstance(cycle_id, str)
        or len(cycle_id) != 24 + _SEQ_DIGITS
        or cycle_id[12] != _MARK
        or not _HEX.issuperset(cycle_id)
    ):
        return None
    return cycle_id[:24], int(cycle_id[24:], 16)


class EqualityIndex(models.Index):
    """An index for equality lookups only: a hash index on PostgreSQL (4 bytes of hash per
    row instead of the key itself: a 32-digit id costs a btree about 75 bytes a row in a
    fleet's table), a plain index elsewhere."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor == "postgresql":
            using = " USING hash"
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class Cycle(models.Model):
    """One run of the balancing engine, stored whole: indexed columns plus one compact record
    of the document the API returns and the input snapshot replay reads (balancing/record.py).
    `document` and `snapshot` read and write it as dicts."""

    # Unique by derivation (stable_id of the microgrid and seq, which are unique together);
    # found by its hash index (EqualityIndex), not a unique btree and its LIKE twin.
    cycle_id = models.CharField(max_length=40)
    # No index of its own: cycle_seq_unique and cycle_mg_started lead with it.
    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="cycles", db_index=False
    )
    seq = models.PositiveIntegerField(help_text="1, 2, 3... per microgrid")
    trigger_type = models.CharField(max_length=20, choices=TriggerType.choices)
    scope = models.JSONField()
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField()
    topology_version = models.PositiveIntegerField()
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    source_mode = models.CharField(max_length=20, choices=SourceMode.choices)
    reason_codes = models.JSONField(default=list)
    vehicles_at_risk = models.PositiveIntegerField(
        default=0,
        help_text="chargers whose vehicle cannot finish by its departure even at full power",
    )
    record = models.BinaryField(
        editable=False,
        help_text="the cycle as the API returns it and every input replay_cycle needs: "
        "columns, shared columns in record_part, zlib (balancing/record.py)",
    )
    record_part = models.ForeignKey(
        CycleRecordPart,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # cycle_part below: a plain index (no LIKE twin for a digest)
    )

    class Meta:
        ordering = ["-started_at", "-seq"]
        constraints = [
            models.UniqueConstraint(fields=["microgrid", "seq"], name="cycle_seq_unique")
        ]
        indexes = [
            models.Index(fields=["microgrid", "-started_at"], name="cycle_mg_started"),
            EqualityIndex(fields=["cycle_id"], name="cycle_id_lookup"),
            models.Index(fields=["record_part"], name="cycle_part"),
            # Scheduled cycles are nearly all of them and are listed by time: the trigger
            # filter needs an index for the others only.
            models.Index(
                fields=["microgrid", "-started_at"],
                name="cycle_mg_unscheduled",
                condition=~models.Q(trigger_type="SCHEDULED"),
            ),
            models.Index(fields=["microgrid", "outcome"], name="cycle_mg_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} cycle {self.seq} ({self.outcome})"

    def save(self, *args, **kwargs):
        if self.in_block:
            raise ValueError("a cycle read from a block of compacted cycles is not saved")
        if self._pending:
            self._encode()
        super().save(*args, **kwargs)

    # ---- the record as dicts ----------------------------------------------------------------

    @property
    def in_block(self) -> bool:
        """Read from a block of compacted cycles (no row: nothing references it)."""
        return self.pk is None and self.served_trigger_list is not None

    _decoded: tuple[dict, dict] | None = None
    _pending: bool = False
    # The part the microgrid's previous cycle used, when the caller knows it (saves a query).
    base_part: str | None = None

    # A cycle read from a block (balancing/blocks.py) has no row: its parsed record text
    # and the triggers it served come with it, and it cannot be saved.
    _encoded = None
    served_trigger_list: list | None = None

    def _load(self) -> tuple[dict, dict]:
        if self._decoded is None:
            if self._encoded is not None:
                encoded, self._encoded = self._encoded, None
                self._decoded = record.decode_encoded(
                    encoded, part_columns(self.record_part_id), row=self._row()
                )
            elif not self.record:
                self._decoded = ({}, {})
            else:
                self._decoded = decode_record(self.record, self.record_part_id, row=self._row())
        return self._decoded

    @property
    def document(self) -> dict:
        return self._load()[0]

    @document.setter
    def document(self, value: dict) -> None:
        self._decoded = (value, self._load()[1])
        self._pending = True

    @property
    def snapshot(self) -> dict:
        return self._load()[1]

    @snapshot.setter
    def snapshot(self, value: dict) -> None:
        self._decoded = (self._load()[0], value)
        self._pending = True

    def _encode(self) -> None:
        document, snapshot = self._load()
        base = self.base_part
        # (A microgrid's first cycle, seq 1, has no previous cycle to look for.)
        if base is None and self.microgrid_id is not None and self.seq != 1:
            base = (
                Cycle.objects.filter(microgrid_id=self.microgrid_id, record_part__isnull=False)
                .exclude(pk=self.pk)
                .order_by("-seq")
                .values_list("record_part_id", flat=True)
                .first()
            )
        data, new_part = record.encode(document, snapshot, part_columns(base), row=self._row())
        if new_part is not None:
            blob = record.encode_part(new_part)
            digest = record.column_hash(blob)
            insert_rows([CycleRecordPart(digest=digest, data=blob)], ignore_conflicts=True)
            _remember(digest, new_part)
            base = digest
        self.record = data
        self.record_part_id = base
        self._pending = False

    def _row(self) -> dict[str, dict]:
        return record_row(*(getattr(self, f) for f in ROW_FIELDS))

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._decoded = None
        instance._pending = False
        return instance


class CycleBlock(models.Model):
    """Consecutive cycles of one microgrid, compacted after their quarter hour was aggregated
    (balancing/lifecycle.py `cycle_compact`): their rows' values as columns (`summary`) and
    their records compressed together (`records`), against the one part they all use.

    Why (spec 4.1, "Cycles in blocks"): a 50-charger cycle's own row, its indexes and its
    trigger cost more than its record; in a block they cost a sixtieth, and consecutive
    records compress against each other. Only cycles nothing references are compacted (no
    breach, delivery or other row names them), never a microgrid's newest; they are read
    through balancing/blocks.py like rows."""

    microgrid = models.ForeignKey(
        Microgrid, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    first_seq = models.PositiveIntegerField()
    last_seq = models.PositiveIntegerField()
    started_from = models.DateTimeField(help_text="started_at of its first cycle")
    started_to = models.DateTimeField(help_text="started_at of its last cycle")
    cycles = models.PositiveIntegerField()
    record_part = models.ForeignKey(
        CycleRecordPart,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    summary = models.BinaryField(
        editable=False, help_text="the cycles' row values as columns, zlib (balancing/blocks.py)"
    )
    records = models.BinaryField(
        editable=False, help_text="the cycles' record texts, compressed together"
    )

    class Meta:
        ordering = ["microgrid", "-first_seq"]
        constraints = [
            models.UniqueConstraint(fields=["microgrid", "first_seq"], name="cycle_block_seq")
        ]
        indexes = [
            models.Index(fields=["microgrid", "-started_to"], name="cycle_block_time"),
            models.Index(fields=["started_to"], name="cycle_block_prune"),
            models.Index(fields=["record_part"], name="cycle_block_part"),
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} cycles {self.first_seq}-{self.last_seq}"


class CycleTrigger(models.Model):
    """A request for a cycle; many may be served by one cycle (coalescing), none is lost."""

    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    trigger = models.JSONField()
    scope = models.JSONField()
    requested_at = models.DateTimeField()
    served_by = models.ForeignKey(
        Cycle, null=True, blank=True, on_delete=models.SET_NULL, related_name="triggers"
    )

    class Meta:
        # Only the triggers waiting for a cycle (a handful): the served ones, one per cycle, are
        # found by served_by's own index.
        indexes = [
            models.Index(
                fields=["microgrid", "requested_at"],
                name="trigger_waiting",
                condition=models.Q(served_by__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} {self.trigger.get('type')} at {self.requested_at.isoformat()}"


class Breach(models.Model):
    breach_id = models.CharField(max_length=40, unique=True)
    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="breaches")
    # A breach outlives its cycle's full record (CYCLE_RETENTION_DAYS): then it names none.
    cycle = models.ForeignKey(
        Cycle, null=True, blank=True, on_delete=models.SET_NULL, related_name="breaches"
    )
    node_id = models.CharField(max_length=64)
    measured_kw = models.FloatField()
    limit_kw = models.FloatField()
    excess_kw = models.FloatField()
    exceeded = models.JSONField()
    primary_reason_code = models.CharField(max_length=40)
    # A phase breach (BREACH_PHASE_CURRENT) names its phase (L1, L2, L3) and carries the
    # currents; its kW figures are that phase's. Empty for a breach of the node's kW limit.
    phase = models.CharField(max_length=2, blank=True, default="")
    measured_a = models.FloatField(null=True, blank=True)
    limit_a = models.FloatField(null=True, blank=True)
    excess_a = models.FloatField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=BreachStatus.choices, default=BreachStatus.OPEN
    )
    detected_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        Cycle, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "breaches"  # not Django's "Breachs"
        ordering = ["-detected_at", "node_id"]
        indexes = [models.Index(fields=["microgrid", "status"], name="breach_mg_status")]
        constraints = [
            # At most one open breach per node (and per phase for phase breaches): later
            # cycles update the open one.
            models.UniqueConstraint(
                fields=["microgrid", "node_id", "phase"],
                condition=models.Q(status="OPEN"),
                name="one_open_breach_per_node_phase",
            )
        ]

    def __str__(self) -> str:
        return f"{self.microgrid_id} {self.node_id} {self.primary_reason_code} ({self.status})"

    def to_dict(self) -> dict:
        d = {
            "breach_id": self.breach_id,
            "cycle_id": self.cycle.cycle_id if self.cycle_id else None,
            "node_id": self.node_id,
            "measured_kw": self.measured_kw,
            "limit_kw": self.limit_kw,
            "excess_kw": self.excess_kw,
            "exceeded": self.exceeded,
            "primary_reason_code": self.primary_reason_code,
            "status": self.status,
            "detected_at": self.detected_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }
        if self.phase:
            d.update(
                phase=self.phase,
                measured_a=self.measured_a,
                limit_a=self.limit_a,
                excess_a=self.excess_a,
            )
        return d


class CycleSchedule(models.Model):
    """When each microgrid's scheduled cycle was last enqueued (no history: a clock, not a fact)."""

    microgrid = models.OneToOneField(
        Microgrid, on_delete=models.CASCADE, related_name="cycle_schedule"
    )
    last_enqueued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.microgrid_id} last enqueued {self.last_enqueued_at}"

    @classmethod
    def claim_due(cls, now) -> list[tuple[str, int]]:
        """Mark every due microgrid as enqueued now and return (microgrid_id, interval) pairs.

        One transaction whatever the fleet size: the due schedule rows are read
        with FOR UPDATE SKIP LOCKED and claimed with one UPDATE, so two beat
        processes (or a restarted one, or two enqueue tasks on two workers)
        enqueue each due cycle once: the second skips the rows the first holds
        and, once the first has committed, no longer finds them due. On SQLite
        the IMMEDIATE transaction serialises the claims instead. Only the
        schedule rows are locked (`of=("self",)`), never the microgrid rows a
        running cycle holds.
        """
        from datetime import timedelta

        from django.db import transaction

        missing = Microgrid.objects.filter(enabled=True, cycle_schedule__isnull=True).values_list(
            "pk", flat=True
        )
        new = [cls(microgrid_id=pk) for pk in missing]
        if new:
            cls.objects.bulk_create(new, ignore_conflicts=True)
        # Only the rows that may be due are locked: at fleet scale locking every schedule row
        # every second cost more than the claim itself (5,000 row locks a tick, 14 ticks in 15
        # with nothing due). One condition per interval in use (usually one).
        intervals = (
            Microgrid.objects.filter(enabled=True)
            .order_by()
            .values_list("cycle_interval_s", flat=True)
            .distinct()
        )
        may_be_due = models.Q(last_enqueued_at__isnull=True)
        for interval in intervals:
            may_be_due |= models.Q(
                microgrid__cycle_interval_s=interval,
                last_enqueued_at__lte=now - timedelta(seconds=interval - 0.5),
            )
        with transaction.atomic():
            rows = list(
                cls.objects.select_for_update(of=("self",), skip_locked=True)
                .filter(may_be_due, microgrid__enabled=True)
                .order_by("microgrid__microgrid_id")
                .values_list(
                    "pk",
                    "microgrid__microgrid_id",
                    "microgrid__cycle_interval_s",
                    "last_enqueued_at",
                )
            )
            # Half a second of slack: beat ticks every second and must not skip a beat.
            due = [
                (pk, microgrid_id, interval)
                for pk, microgrid_id, interval, last in rows
                if last is None or last <= now - timedelta(seconds=interval - 0.5)
            ]
            if due:
                cls.objects.filter(pk__in=[pk for pk, _, _ in due]).update(last_enqueued_at=now)
        return [(microgrid_id, interval) for _, microgrid_id, interval in due]


class CycleAggregate(models.Model):
    """One Microgrid Node over one 15-minute bucket, summed over the cycles that started in it.

    What long-range charts read, and what is left of a cycle once its full record has
    passed CYCLE_RETENTION_DAYS (kept CYCLE_AGGREGATE_RETENTION_DAYS). Sums, not averages,
    so that buckets filled over several runs add up exactly; averages are sum / cycles.
    """

    microgrid = models.ForeignKey(Microgrid, on_delete=models.CASCADE, related_name="+")
    node_id = models.CharField(max_length=64)
    bucket_start = models.DateTimeField()
    cycles = models.PositiveIntegerField(default=0)
    load_kw_sum = models.FloatField(default=0.0, help_text="uncontrolled + allocated")
    load_kw_max = models.FloatField(null=True, blank=True)
    limit_kw_sum = models.FloatField(default=0.0, help_text="effective limit")
    limit_kw_min = models.FloatField(null=True, blank=True)
    allocated_kw_sum = models.FloatField(default=0.0)
    requested_kw_sum = models.FloatField(default=0.0, help_text="chargers of this node")
    reason_codes = models.JSONField(default=dict, help_text="code -> cycles that carried it")
    outcomes = models.JSONField(default=dict, help_text="cycle outcome -> cycles")

    class Meta:
        ordering = ["microgrid", "bucket_start", "node_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["microgrid", "node_id", "bucket_start"], name="cycle_aggregate_once"
            )
        ]
        indexes = [models.Index(fields=["bucket_start"], name="cycle_aggregate_time")]

    def __str__(self) -> str:
        return f"{self.microgrid_id} {self.node_id} {self.bucket_start.isoformat()}"


class CycleAggregateCursor(models.Model):
    """How far cycles have been aggregated: (started_at, pk) of the last one (one row)."""

    name = models.CharField(max_length=20, primary_key=True, default="cycles")
    started_at = models.DateTimeField()
    cycle_pk = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"aggregated up to {self.started_at.isoformat()} #{self.cycle_pk}"


class HeadroomHistory(models.Model):
    """Each node's uncontrolled load at the microgrid's recent cycles (the trailing hour), from
    which adaptive headroom is computed (balancing/headroom.py). One row per microgrid,
    rewritten by each cycle while its headroom mode is adaptive; derived data, no history."""

    microgrid = models.OneToOneField(
        Microgrid, on_delete=models.CASCADE, related_name="headroom_history"
    )
    samples = models.JSONField(default=dict, help_text="node_id -> [[epoch s, kW], ...]")

    def __str__(self) -> str:
        return f"{self.microgrid_id} headroom history"
