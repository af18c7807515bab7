"""Tables partitioned by time on PostgreSQL (issue 18): old rows leave by dropping a partition.

A partitioned table has one partition per UTC day (`<table>_pYYYYMMDD`, the days from
00:00 to 00:00) and a DEFAULT partition (`<table>_default`) for rows of a day that has no
partition yet (a clock far ahead, a simulator's own dates, a maintenance task that did not
run): an insert never fails for want of a partition. The maintenance tasks create the days
ahead (`ensure_days`; rows of that day already in the default partition are moved into it)
and drop whole days once past retention (`drop_days_before`); the rows left in the default
partition go by the tasks' bounded DELETEs as on any table.

What partitioning imposes, and how it is met: a primary key or unique constraint must
include the partition key, so the table's keys become (id, <time>) and (..., <time>); ids
still come from the table's one identity sequence, so `id` stays unique, which is what the
models use. A foreign key into a partitioned table must name a unique key that includes the
partition key (PostgreSQL 12 and later), which a reference by id alone cannot: so no table
may refer to a partitioned one in the database, and `partition_table` refuses if one does.
The day partitions copy the table's CHECK constraints (ATTACH requires them). SQLite keeps plain tables: every function here does nothing there.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

DAY = timedelta(days=1)
_NAME = re.compile(r"_p(\d{8})$")


def _postgres(connection) -> bool:
    return connection.vendor == "postgresql"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _day_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def _bound(day: date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'"


def is_partitioned(connection, table: str) -> bool:
    if not _postgres(connection):
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return bool(row) and row[0] == "p"


def days(connection, table: str) -> list[date]:
    """The days that have a partition, oldest first."""
    if not is_partitioned(connection, table):
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [table],
        )
        names = [name for (name,) in cursor.fetchall()]
    found = []
    for name in names:
        m = _NAME.search(name)
        if m and name == _day_name(table, datetime.strptime(m.group(1), "%Y%m%d").date()):
            found.append(datetime.strptime(m.group(1), "%Y%m%d").date())
    return sorted(found)


def _with_key(definition: str, column: str) -> str:
    """A PRIMARY KEY / UNIQUE definition '... (a, b)...' with the partition key added."""
    head, cols, tail = re.match(r"^(.*?\()([^)]*)(\).*)$", definition, re.S).groups()
    names = [c.strip().strip('"') for c in cols.split(",")]
    if column in names:
        return definition
    return f"{head}{cols}, {_q(column)}{tail}"


def partition_table(
    schema_editor, table: str, column: str, *, now: datetime, behind: int, ahead: int
) -> None:
    """Turn `table` into a table partitioned by day on `column` (PostgreSQL; no-op elsewhere
    or when it already is): a new partitioned table with the same columns, defaults and
    identity, days from `behind` days before `now` to `ahead` days after it plus the
    default partition, every row copied, then the old table dropped and the new one given
    its name, its constraints (keys with the partition key added) and its indexes, under
    the names they had. One transaction (the migration's)."""
    connection = schema_editor.connection
    if not _postgres(connection) or is_partitioned(connection, table):
        return
    new, default_new = f"{table}__partitioned", f"{table}__default"
    with connection.cursor() as cursor:
        # Writers wait (and then fail, the table being gone) rather than write rows the copy
        # would not see; readers go on until the swap.
        cursor.execute(f"LOCK TABLE {_q(table)} IN EXCLUSIVE MODE")
        cursor.execute(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint "
            "WHERE confrelid = to_regclass(%s) AND contype = 'f'",
            [table],
        )
        referring = cursor.fetchall()
        if referring:
            raise RuntimeError(
                f"{table} cannot be partitioned while foreign keys point into it: {referring}"
            )
        cursor.execute(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = to_regclass(%s) AND contype IN ('p', 'u', 'f', 'c') "
            "ORDER BY contype DESC, conname",
            [table],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = %s ORDER BY indexname",
            [table],
        )
        owned = {name for name, _, _ in constraints}
        indexes = [(name, d) for name, d in cursor.fetchall() if name not in owned]
        cursor.execute(
            f"CREATE TABLE {_q(new)} (LIKE {_q(table)} INCLUDING DEFAULTS INCLUDING IDENTITY) "
            f"PARTITION BY RANGE ({_q(column)})"
        )
        cursor.execute(f"CREATE TABLE {_q(default_new)} PARTITION OF {_q(new)} DEFAULT")
        cursor.execute(f"INSERT INTO {_q(new)} SELECT * FROM {_q(table)}")
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {_q(table)}), false)",
            [new],
        )
        cursor.execute(f"DROP TABLE {_q(table)}")
        cursor.execute(f"ALTER TABLE {_q(new)} RENAME TO {_q(table)}")
        cursor.execute(f"ALTER TABLE {_q(default_new)} RENAME TO {_q(table + '_default')}")
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        sequence = cursor.fetchone()[0]
        if sequence:
            cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {_q(table + '_id_seq')}")
        for name, kind, definition in constraints:
            if kind in ("p", "u"):
                definition = _with_key(definition, column)
            cursor.execute(f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(name)} {definition}")
        for _, definition in indexes:
            if definition.startswith("CREATE UNIQUE"):
                definition = _with_key(definition, column)
            cursor.execute(definition)
    start = now.astimezone(UTC).date() - timedelta(days=behind)
    ensure_days(connection, table, start, now.astimezone(UTC).date() + timedelta(days=ahead))


def ensure_days(connection, table: str, first: date, last: date) -> list[date]:
    """Create the partitions of the days first..last that have none; rows of such a day
    already in the default partition move into it. Returns the days created."""
    if not is_partitioned(connection, table):
        return []
    have = set(days(connection, table))
    made = []
    day = first
    while day <= last:
        if day not in have:
            _add_day(connection, table, day)
            made.append(day)
        day += DAY
    return made


def _add_day(connection, table: str, day: date) -> None:
    from django.db import transaction

    name, default = _day_name(table, day), f"{table}_default"
    lo, hi = _bound(day), _bound(day + DAY)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        # ALTER TABLE refuses while this transaction has deferred checks pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # CHECK constraints too: ATTACH refuses a child missing one of the parent's.
        cursor.execute(
            f"CREATE TABLE {_q(name)} (LIKE {_q(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        # Rows of that day that came before its partition (ATTACH refuses while the default
        # partition holds any).
        cursor.execute(
            f"WITH moved AS (DELETE FROM {_q(default)} WHERE {{c}} >= {lo} AND {{c}} < {hi} "
            f"RETURNING *) INSERT INTO {_q(name)} SELECT * FROM moved".replace(
                "{c}", _q(_partition_key(connection, table))
            )
        )
        cursor.execute(
            f"ALTER TABLE {_q(table)} ATTACH PARTITION {_q(name)} FOR VALUES FROM ({lo}) TO ({hi})"
        )


def _partition_key(connection, table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE p.partrelid = to_regclass(%s)",
            [table],
        )
        return cursor.fetchone()[0]


def drop_days_before(connection, table: str, cutoff: datetime) -> list[date]:
    """Detach and drop every day partition that ends at or before `cutoff`; returns those days.
    The caller has made sure nothing still needs their rows."""
    limit = cutoff.astimezone(UTC)
    gone = []
    for day in days(connection, table):
        if datetime(day.year, day.month, day.day, tzinfo=UTC) + DAY > limit:
            break
        name = _day_name(table, day)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {_q(table)} DETACH PARTITION {_q(name)}")
            cursor.execute(f"DROP TABLE {_q(name)}")
        gone.append(day)
    return gone
