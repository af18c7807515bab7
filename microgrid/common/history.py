"""History rows written by the database: one INSERT ... SELECT for many changed rows.

django-simple-history writes a history row per saved instance, and its bulk helpers build
every row in Python first (about 25 values each, prepared one by one by the ORM). Where a
service changes many rows of one model at once, set-based (an OSCP forecast stores 96
envelopes and supersedes 96 more), the history of those rows is copied from the table
itself, exactly as simple-history would have written it: every tracked column, the given
history date, type and user, no change reason.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Model, QuerySet
from simple_history.models import HistoricalRecords

_OWN = {"history_id", "history_date", "history_change_reason", "history_type", "history_user"}


def record_history(rows: QuerySet, *, history_type: str, date: datetime) -> int:
    """Append one history row per row of `rows` (a queryset of a model with HistoricalRecords)
    as it is now in the database; `history_type` is "+" (created) or "~" (changed). The user
    is the signed-in user of the current request, as simple-history records it."""
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
        f"SELECT {columns}, %s, %s, %s, NULL FROM {qn(model._meta.db_table)} "
        f"WHERE {qn(model._meta.pk.column)} IN ({inner_sql}) ORDER BY {qn(model._meta.pk.column)}"
    )
    field = history._meta.get_field("history_date")
    params = [field.get_db_prep_value(date, connection), history_type, _user_id(), *inner_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _user_id() -> int | None:
    request = getattr(HistoricalRecords.context, "request", None)
    user = getattr(request, "user", None)
    return user.pk if user is not None and user.is_authenticated else None
