"""Telemetry ingest: a batch validated whole at the edge is stored set-based.

`telemetry.readings.readings_input` validates a batch (a batch with any
invalid reading is refused whole, TELEMETRY_INVALID with one error per bad
reading, and stores nothing); `telemetry_store` takes its typed readings. A repeated reading (same asset and
observed_at) is stored once; an older reading never replaces a newer one as
the asset's latest. The work is a handful of statements whatever the batch size (one multi-row INSERT
per 1,000 readings, one lock read and one multi-row upsert of the latest readings), and
proportional to the batch, not to the depot: only the batch's assets are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from microgrid.common import partitions
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.telemetry.choices import EnergySource
from microgrid.telemetry.models import ChargerSession, LatestReading, TelemetryReading
from microgrid.telemetry.readings import Reading, readings_input
from microgrid.telemetry.selectors import LATEST_READING_FIELDS
from microgrid.topology.models import Asset, Microgrid


def telemetry_store(
    *, microgrid: Microgrid, readings: Sequence[Reading], now: datetime | None = None
) -> int:
    """Store a validated batch (`telemetry.readings.readings_input`); returns how many
    readings it held."""
    now = now or timezone.now()
    if not readings:
        return 0
    with transaction.atomic():
        _insert_readings(microgrid, list(readings), now)
        _advance_latest(microgrid, list(readings), now)
    return len(readings)


def telemetry_ingest(*, microgrid: Microgrid, readings: Any, now: datetime | None = None) -> int:
    """Validate and store a batch from an in-process producer (the simulator, the OCPP gateway,
    the demo feed): the same checks as the API's, then `telemetry_store`."""
    now = now or timezone.now()
    return telemetry_store(
        microgrid=microgrid, readings=readings_input(microgrid, readings, now=now), now=now
    )


# Rows per statement: 1,000 rows x 11 columns stays under SQLite's 32,766 parameters.
_CHUNK = 1000


_PG_TYPES = {
    "microgrid_id": "bigint",
    "asset_id": "bigint",
    "power_kw": "double precision",
    "requested_kw": "double precision",
    "current_l1_a": "double precision",
    "current_l2_a": "double precision",
    "current_l3_a": "double precision",
    "observed_at": "timestamptz",
    "received_at": "timestamptz",
    "plugged_in_at": "timestamptz",
    "session_energy_kwh": "double precision",
    "updated_at": "timestamptz",
    "connected": "boolean",
}


def _insert_many(table: str, columns: tuple[str, ...], rows: list[tuple], suffix: str) -> None:
    """One statement for all rows, written as SQL: no model instances are built (Django's
    bulk_create costs tens of microseconds per object before the statement).

    PostgreSQL gets one array per column (`INSERT ... SELECT * FROM unnest(...)`): a handful
    of parameters whatever the batch, where a VALUES list of 3,500 placeholders cost psycopg
    more time to parse than PostgreSQL spent on the insert. Elsewhere, one multi-row VALUES
    per 1,000 rows (under SQLite's 32,766 parameters)."""
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{_PG_TYPES[c]}[]" for c in columns)
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
                + suffix,
                [list(col) for col in zip(*rows, strict=True)],
            )
            return
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for i in range(0, len(rows), _CHUNK):
            chunk = rows[i : i + _CHUNK]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                + ", ".join([one] * len(chunk))
                + " "
                + suffix,
                [value for row in chunk for value in row],
            )


def _locked_latest(pks: list[int]) -> list[tuple]:
    """The latest-reading rows of these assets, locked in asset order."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(_LATEST_COLUMNS)} FROM {LatestReading._meta.db_table} "
                "WHERE asset_id = ANY(%s) ORDER BY asset_id FOR UPDATE",
                [pks],
            )
            return cursor.fetchall()
    return list(
        LatestReading.objects.select_for_update()
        .filter(asset_id__in=pks)
        .order_by("asset_id")
        .values_list(*_LATEST_COLUMNS)
    )


def _insert_readings(microgrid: Microgrid, readings: list[Reading], now: datetime) -> None:
    """The batch into the log, one statement; a repeated reading (same asset and observed_at)
    is stored once (ON CONFLICT DO NOTHING on the unique constraint)."""
    adapt = connection.ops.adapt_datetimefield_value
    received = adapt(now)
    _insert_many(
        TelemetryReading._meta.db_table,
        (
            "microgrid_id",
            "asset_id",
            "power_kw",
            "observed_at",
            "received_at",
            "connected",
            "requested_kw",
            "current_l1_a",
            "current_l2_a",
            "current_l3_a",
        ),
        [
            (
                microgrid.pk,
                r.asset_pk,
                r.power_kw,
                adapt(r.observed_at),
                received,
                r.connected,
                r.requested_kw,
                *(r.current_a or _NO_CURRENTS),
            )
            for r in readings
        ],
        "ON CONFLICT DO NOTHING",
    )


_NO_CURRENTS = (None, None, None)
_LATEST_COLUMNS = ("asset_id", *LATEST_READING_FIELDS)


def _advance_latest(microgrid: Microgrid, readings: list[Reading], now: datetime) -> None:
    """Move each asset's latest reading forward: lock the rows (in asset order, so concurrent
    batches queue instead of losing an update or deadlocking), fold the batch's readings in
    time order, write the changed rows back in one upsert."""
    by_asset: dict[int, list[Reading]] = {}
    for r in readings:
        by_asset.setdefault(r.asset_pk, []).append(r)
    pks = sorted(by_asset)
    table = LatestReading._meta.db_table
    current = {row[0]: list(row) for row in _locked_latest(pks)}
    missing = [pk for pk in pks if pk not in current]
    if missing:
        # First readings of these assets: create their rows, then lock them like the others.
        _insert_many(
            table,
            ("microgrid_id", "asset_id", "updated_at"),
            [(microgrid.pk, pk, connection.ops.adapt_datetimefield_value(now)) for pk in missing],
            "ON CONFLICT DO NOTHING",
        )
        for row in _locked_latest(missing):
            current[row[0]] = list(row)
    changed = []
    # A reading covers at most the staleness window before it: a charger that was silent for
    # hours is not credited with hours of its new power.
    max_gap_s = float(microgrid.telemetry_stale_after_s)
    for pk in pks:
        row = current[pk]
        _, power, observed, connected, requested, plugged, energy, *currents = row
        state_changed = False
        for r in sorted(by_asset[pk], key=lambda x: x.observed_at):
            if observed is not None and r.observed_at <= observed:
                continue  # older than what we have: history only
            if r.connected:
                if not connected:
                    plugged = r.observed_at
                    energy = 0.0
                # power_kw is the average since the previous reading (spec 3.5, sessions): the
                # energy of (previous, this] belongs to this connection.
                if observed is not None:
                    gap = min((r.observed_at - observed).total_seconds(), max_gap_s)
                    energy = (energy or 0.0) + r.power_kw * gap / 3600.0
            else:
                plugged = None
                energy = None
            power, observed, connected, requested = (
                r.power_kw,
                r.observed_at,
                r.connected,
                r.requested_kw,
            )
            # A reading without currents says nothing about them: the latest has none then.
            currents = list(r.current_a or _NO_CURRENTS)
            state_changed = True
        if state_changed:
            changed.append((pk, power, observed, connected, requested, plugged, energy, *currents))
    if not changed:
        return
    adapt = connection.ops.adapt_datetimefield_value
    updated = adapt(now)
    columns = ("microgrid_id", *_LATEST_COLUMNS, "updated_at")
    _insert_many(
        table,
        columns,
        [
            (
                microgrid.pk,
                pk,
                power,
                adapt(observed),
                connected,
                requested,
                adapt(plugged) if plugged is not None else None,
                energy,
                l1,
                l2,
                l3,
                updated,
            )
            for pk, power, observed, connected, requested, plugged, energy, l1, l2, l3 in changed
        ],
        "ON CONFLICT (asset_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("asset_id",)),
    )


def telemetry_maintain(*, now: datetime) -> dict[str, int]:
    """The hourly retention run: on PostgreSQL, where readings are partitioned by day
    (microgrid/common/partitions.py), create the next TELEMETRY_PARTITION_DAYS_AHEAD days'
    partitions and drop the days wholly past TELEMETRY_RETENTION_HOURS; then delete what is
    left past it row by row (the first hours of the oldest kept day, rows of the default
    partition; every row on SQLite)."""
    table = TelemetryReading._meta.db_table
    older_than = now - timedelta(hours=settings.TELEMETRY_RETENTION_HOURS)
    today = now.astimezone(UTC).date()
    created = partitions.ensure_days(
        connection, table, today, today + timedelta(days=settings.TELEMETRY_PARTITION_DAYS_AHEAD)
    )
    dropped = partitions.drop_days_before(connection, table, older_than)
    return {
        "days_created": len(created),
        "days_dropped": len(dropped),
        "deleted": telemetry_prune(older_than=older_than),
    }


def telemetry_prune(*, older_than: datetime, batch: int = 50_000, batches: int = 20) -> int:
    """Drop readings past the retention window (the latest per asset lives on in LatestReading):
    `batch` rows per statement, each its own short transaction (no long lock, no huge undo), at
    most `batches` statements per run (the hourly beat task comes back for the rest)."""
    deleted = 0
    for _ in range(batches):
        pks = list(
            TelemetryReading.objects.filter(observed_at__lt=older_than)
            .order_by()
            .values_list("pk", flat=True)[:batch]
        )
        if not pks:
            return deleted
        TelemetryReading.objects.filter(pk__in=pks).delete()
        deleted += len(pks)
    return deleted


# ---- charger sessions (spec 4.3, "Departures") --------------------------------------------------

# How far ahead a departure may lie: a week covers a long weekend on a depot; a date beyond it
# is a typing error, not a plan.
MAX_DEPARTURE_AHEAD = timedelta(days=7)


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


def charger_session_put(
    *,
    asset: Asset,
    departure_at: datetime,
    energy_needed_kwh: float | None = None,
    target_soc_percent: float | None = None,
    arrival_soc_percent: float | None = None,
    battery_capacity_kwh: float | None = None,
    user=None,
    now: datetime | None = None,
) -> ChargerSession:
    """Set what is known of the vehicle on `asset` now (idempotent: the same values change
    nothing and write no history). The charger must be connected: the session belongs to its
    current connection (409 CHARGER_NOT_CONNECTED otherwise); a departure must lie ahead,
    within a week (422 FIELD_INVALID)."""
    now = now or timezone.now()
    if departure_at <= now:
        raise DomainError.from_errors(
            [ErrorItem("FIELD_INVALID", "departure_at must be in the future", field="departure_at")]
        )
    if departure_at > now + MAX_DEPARTURE_AHEAD:
        raise DomainError.from_errors(
            [
                ErrorItem(
                    "FIELD_INVALID",
                    "departure_at must be at most 7 days ahead",
                    field="departure_at",
                )
            ]
        )
    energy_source = None
    if energy_needed_kwh is not None:
        energy_source = EnergySource.ENERGY
    elif target_soc_percent is not None:
        energy_needed_kwh = round(
            (target_soc_percent - (arrival_soc_percent or 0.0)) / 100.0 * battery_capacity_kwh, 3
        )
        energy_source = EnergySource.TARGET_SOC
    with transaction.atomic():
        latest = (
            LatestReading.objects.select_for_update()
            .filter(asset=asset)
            .values("connected", "plugged_in_at")
            .first()
        )
        if not latest or not latest["connected"] or latest["plugged_in_at"] is None:
            raise DomainError(
                "CHARGER_NOT_CONNECTED",
                f"Charger {asset.asset_id!r} has no vehicle connected: a session belongs to a "
                "connection",
                {"asset_id": asset.asset_id},
            )
        values = {
            "plugged_in_at": latest["plugged_in_at"],
            "departure_at": departure_at,
            "energy_needed_kwh": energy_needed_kwh,
            "energy_source": energy_source,
            "target_soc_percent": target_soc_percent,
            "arrival_soc_percent": arrival_soc_percent,
            "battery_capacity_kwh": battery_capacity_kwh,
        }
        session = ChargerSession.objects.select_for_update().filter(asset=asset).first()
        if session is not None and all(getattr(session, k) == v for k, v in values.items()):
            return session
        if session is None:
            session = ChargerSession(microgrid_id=asset.microgrid_id, asset=asset)
        for key, value in values.items():
            setattr(session, key, value)
        session.updated_at = now
        session.updated_by = _user(user)
        session._history_user = _user(user)
        session.save()
    return session


def charger_session_delete(*, asset: Asset, user=None) -> None:
    """Forget the charger's session (idempotent; the history keeps it): cycles go back to the
    group's default dwell, or to no departure."""
    with transaction.atomic():
        session = ChargerSession.objects.select_for_update().filter(asset=asset).first()
        if session is not None:
            session._history_user = _user(user)
            session.delete()
