"""Rows of one model written with one statement whose SQL does not depend on how many.

`bulk_create` compiles an INSERT with a placeholder per value (a batch of 25 cycles is 375),
and psycopg parses a statement of more than 50 parameters again every time it is sent: for
the writes every batch of scheduled cycles makes (balancing/batch.py) that cost more than
PostgreSQL's executing them. On PostgreSQL `insert_rows` sends one array per column instead,

    INSERT INTO t (c1, ..., cn) SELECT * FROM unnest(%s::type1[], ..., %s::typen[])
        [ON CONFLICT (...) DO UPDATE SET ... = EXCLUDED....] [RETURNING pk]

its SQL built once per model and process from the model's concrete fields (a field added to
the model is written too), each value prepared by its field as `bulk_create` prepares it
(`pre_save`, then `get_db_prep_save`), and the new primary keys set on the objects as
`bulk_create` sets them. On other databases it is `bulk_create` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections, router
from django.db.models import Model

_compiled: dict[tuple, tuple[str, list, object | None]] = {}


def _statement(model: type[Model], connection, unique_fields, update_fields, ignore_conflicts):
    key = (
        model,
        connection.alias,
        tuple(unique_fields or ()),
        tuple(update_fields or ()),
        ignore_conflicts,
    )
    found = _compiled.get(key)
    if found is not None:
        return found
    opts = model._meta
    pk = opts.pk
    returning = pk if pk.db_returning else None
    fields = [f for f in opts.concrete_fields if f is not returning]
    if any(f.db_returning for f in fields):
        raise TypeError(f"insert_rows cannot write {opts.label}: a field the database fills")
    qn = connection.ops.quote_name
    arrays = ", ".join(f"%s::{f.cast_db_type(connection)}[]" for f in fields)
    sql = (
        f"INSERT INTO {qn(opts.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"SELECT * FROM unnest({arrays})"
    )
    if update_fields:
        target = ", ".join(qn(opts.get_field(name).column) for name in unique_fields)
        sets = ", ".join(
            f"{qn(c)} = EXCLUDED.{qn(c)}" for c in (opts.get_field(n).column for n in update_fields)
        )
        sql += f" ON CONFLICT ({target}) DO UPDATE SET {sets}"
    elif ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning is not None:
        sql += f" RETURNING {qn(returning.column)}"
    found = _compiled[key] = (sql, fields, returning)
    return found


def _returns_key(objs: Sequence[Model]) -> bool:
    return bool(objs) and type(objs[0])._meta.pk.db_returning


def insert_rows(
    objs: Sequence[Model],
    *,
    unique_fields: Sequence[str] = (),
    update_fields: Sequence[str] = (),
    ignore_conflicts: bool = False,
) -> None:
    """Insert `objs` (new instances of one model) with one statement; with `update_fields`,
    a row whose `unique_fields` exist already is updated instead (`bulk_create`'s
    `update_conflicts`); with `ignore_conflicts`, it is left as it is. Sets each new
    object's primary key, as `bulk_create` does (not with `ignore_conflicts`)."""
    if ignore_conflicts and (update_fields or _returns_key(objs)):
        raise ValueError("ignore_conflicts is for rows whose key the caller gives")
    if not objs:
        return
    model = type(objs[0])
    pk = model._meta.pk
    for obj in objs:
        if type(obj) is not model:
            raise TypeError("insert_rows writes objects of one model")
        if pk.db_returning and obj.pk is not None:
            raise ValueError("insert_rows writes new objects (no primary key yet)")
    alias = router.db_for_write(model)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        model._default_manager.using(alias).bulk_create(
            objs,
            ignore_conflicts=ignore_conflicts,
            update_conflicts=bool(update_fields),
            unique_fields=list(unique_fields) or None,
            update_fields=list(update_fields) or None,
        )
        return
    sql, fields, returning = _statement(
        model, connection, unique_fields, update_fields, ignore_conflicts
    )
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="insert_rows")
    columns = [
        [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs] for f in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, columns)
        keys = [row[0] for row in cursor.fetchall()] if returning is not None else None
    for i, obj in enumerate(objs):
        if keys is not None:
            setattr(obj, returning.attname, keys[i])
        obj._state.adding = False
        obj._state.db = alias
