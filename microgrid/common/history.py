"""History rows written by the database: one INSERT ... SELECT for many changed rows.

django-simple-history writes a history row per saved instance, and its bulk helpers build
every row in Python first (about 25 values each, prepared one by one by the ORM). Where a
service changes many rows of one model at once, set-based (an OSCP forecast stores 96
envelopes and supersedes 96 more), the history of those rows is copied from the table
itself, exactly as simple-history would have written it: every tracked column, the given
history date, type and user, and the change reason a save would get (below).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import connection
from django.db.models import Model, QuerySet
from simple_history.models import HistoricalRecords

_OWN = {"history_id", "history_date", "history_change_reason", "history_type", "history_user"}


def record_history(
    rows: QuerySet, *, history_type: str, date: datetime, reason: str | None = None
) -> int:
    """Append one history row per row of `rows` (a queryset of a model with HistoricalRecords)
    as it is now in the database; `history_type` is "+" (created) or "~" (changed). The user
    is the signed-in user of the current request, as simple-history records it; `reason`, when
    given, is the rows' change reason (else what made the change, as for a save)."""
    if history_type not in ("+", "~"):
        raise ValueError(history_type)
    model: type[Model] = rows.model
    history = model.history.model  # type: ignore[attr-defined]
    tracked = [f.column for f in history._meta.concrete_fields if f.name not in _OWN and f.column]
    source = rows.order_by().values_list("pk", flat=True)
    inner_sql, inner_params = source.query.sql_with_params()
    qn = connection.ops.quote_name
    columns = ", ".join(qn(c) for c in tracked)
    sql = (
        f"INSERT INTO {qn(history._meta.db_table)} "
        f"({columns}, {qn('history_date')}, {qn('history_type')}, {qn('history_user_id')}, "
        f"{qn('history_change_reason')}) "
        f"SELECT {columns}, %s, %s, %s, %s FROM {qn(model._meta.db_table)} "
        f"WHERE {qn(model._meta.pk.column)} IN ({inner_sql}) ORDER BY {qn(model._meta.pk.column)}"
    )
    field = history._meta.get_field("history_date")
    user_id = _user_id()
    # The same reason a save would get (name_unattributed_change): what made the change.
    reason = reason or unattributed_reason(user_id) or None
    params = [
        field.get_db_prep_value(date, connection),
        history_type,
        user_id,
        reason,
        *inner_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _user_id() -> int | None:
    request = getattr(HistoricalRecords.context, "request", None)
    user = getattr(request, "user", None)
    return user.pk if user is not None and user.is_authenticated else None


# What made a change that no signed-in user made: "profile load: FILE", "balancing cycle"...
_change_source: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "change_source", default=None
)


@contextmanager
def change_source(reason: str) -> Iterator[None]:
    """History rows written inside get `reason` as their change reason (when none is set)."""
    token = _change_source.set(reason[:100])
    try:
        yield
    finally:
        _change_source.reset(token)


def unattributed_reason(user=None) -> str:
    """The change reason of a history row written by `user` (None: nobody signed in):
    the current change_source, "system (no signed-in user)" without one, "" for a user.
    For bulk writes, which send no signal (bulk_create_with_history's default reason)."""
    source = _change_source.get()
    if source:
        return source
    return "" if user is not None else "system (no signed-in user)"


def name_unattributed_change(sender, history_instance, **kwargs) -> None:
    """pre_create_historical_record: admin showed "Change reason: None" and no user for
    changes made by a profile load, a cycle or a task. Such a row says what made it: the
    current `change_source`, or "system" when no user and no source is known."""
    if history_instance.history_change_reason:
        return
    source = _change_source.get()
    if source:
        history_instance.history_change_reason = source
    elif (
        history_instance.history_user_id is None
        and getattr(history_instance, "history_user", None) is None
    ):
        history_instance.history_change_reason = "system (no signed-in user)"
