"""Reads that run for every microgrid every interval, compiled to SQL once per process.

Building and compiling a QuerySet costs about a millisecond of Python, more than PostgreSQL
spends answering a small indexed read, and a balancing cycle makes a dozen such reads for every
microgrid every interval (docs/performance.md, "Fleet"). A `PreparedRead` builds its QuerySet
once with stand-in values, keeps the SQL Django compiled for the database, and runs that SQL
again with the real values, turning the rows into what the QuerySet itself would have returned:
the same database converters, the same tuples, dicts or model instances. Nothing is cached but
the SQL: every call is one query, read in the caller's transaction, seen by query counters.

    _open_breaches = PreparedRead(
        lambda microgrid: Breach.objects.filter(microgrid_id=microgrid, status="OPEN"),
        microgrid=int,
    )
    rows = _open_breaches(microgrid=microgrid.pk)        # a list of Breach

Parameters are ints, strings or aware datetimes, each given by keyword. The QuerySet must be a
plain one: `values()`, `values_list()` (flat or not) or model instances (`select_related()` and
`select_for_update()` included) without annotations or `extra()`; anything else is refused when
it is first compiled, so that a prepared read can never return something its QuerySet would not.
A locking read, like its QuerySet, runs only inside a transaction.

Set-based reads for many microgrids at once (the scheduled cycles run in batches,
balancing/batch.py): a read declared with `batch_by="microgrid"` (its QuerySet filters
`<field>=microgrid` once, ANDed with the rest) may be answered, inside
`batched(microgrid=[pk, ...])`, from one query for every microgrid of the batch: the first
call for any of them runs the QuerySet with `<field> IN (pk, ...)` instead, and each
microgrid's rows (the same rows, in the same order, as its own query returns) are handed out
once; a second call for the same microgrid, or a call for one outside the batch, runs its
own query as usual. Reads with a slice (LIMIT) cannot be batched and are refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.db import connections, router
from django.db.models import QuerySet
from django.db.models.lookups import Exact, Lookup
from django.db.models.query import (
    FlatValuesListIterable,
    ModelIterable,
    ValuesIterable,
    ValuesListIterable,
    get_related_populators,
)
from django.db.transaction import TransactionManagementError

_KINDS = (int, str, datetime)
_counter = itertools.count(1)


def _stand_in(kind: type) -> Any:
    """A value no real parameter has, distinct for every parameter of every read."""
    n = next(_counter)
    if kind is int:
        return -(10**15) - n
    if kind is str:
        return f"\x1fprepared-read-{n}\x1f"
    return datetime(1901, 1, 1, 0, 0, n // 1_000_000 % 60, n % 1_000_000, tzinfo=UTC)


_BATCH_KEY = "_prepared_batch_key"


def _batch_lookup(where, stand_in) -> tuple[Any, int] | None:
    """(the node holding it, its index) of the `field = stand_in` lookup, only under ANDs."""
    if where.connector != "AND" or where.negated:
        return None
    for i, child in enumerate(where.children):
        if isinstance(child, Exact) and child.rhs == stand_in:
            return where, i
        if hasattr(child, "children"):
            found = _batch_lookup(child, stand_in)
            if found is not None:
                return found
    return None


class _AnyOf(Lookup):
    """`field = ANY(%s)` with the keys as one array parameter (PostgreSQL): the SQL does not
    depend on how many keys a batch has, so it is compiled once, like any prepared read."""

    lookup_name = "prepared_any"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs_sql} = ANY(%s)", [*lhs_params, self.rhs]


def _as_batch(read: PreparedRead, queryset: QuerySet, stand_in: Any, keys: list) -> Any:
    """The QuerySet for every key at once (`field IN keys`, or `field = ANY(keys)` when
    `keys` is the array stand-in), selecting the key too; returns the key's attribute name for
    a read of model instances (None otherwise: the key is the last column)."""
    query = queryset.query
    if query.low_mark or query.high_mark is not None:
        raise TypeError("a prepared read with a slice cannot be batched")
    found = _batch_lookup(query.where, stand_in)
    if found is None:
        raise TypeError(f"the QuerySet does not filter {read.batch_by} once with AND")
    node, i = found
    lhs = node.children[i].lhs
    if isinstance(keys, _KeysStandIn):
        node.children[i] = _AnyOf(lhs, keys)
    else:
        node.children[i] = lhs.get_lookup("in")(lhs, keys)
    if queryset._iterable_class is ModelIterable:
        if lhs.alias != query.get_initial_alias():
            raise TypeError("a batched read of model instances filters its own table")
        return lhs.target.attname
    query.add_annotation(lhs, _BATCH_KEY)
    return None


class _Compiled:
    def __init__(self, read: PreparedRead, connection, many: list | None = None) -> None:
        stand_ins = {name: _stand_in(kind) for name, kind in read.params.items()}
        queryset = read.build(**stand_ins)
        if not isinstance(queryset, QuerySet):
            raise TypeError("a prepared read builds a QuerySet")
        self.key_attname = None
        self.keys_slot = None
        if many is not None:
            queryset = queryset._chain()
            self.key_attname = _as_batch(read, queryset, stand_ins.pop(read.batch_by), many)
        self.iterable = queryset._iterable_class
        if self.iterable not in (
            ModelIterable,
            ValuesIterable,
            ValuesListIterable,
            FlatValuesListIterable,
        ):
            raise TypeError(f"a prepared read cannot return {self.iterable.__name__} rows")
        query = queryset.query
        if query.extra_select:
            raise TypeError("a prepared read has no extra()")
        self.db = connection.alias
        self.compiler = query.get_compiler(connection=connection)
        sql, params = self.compiler.as_sql()
        self.sql = sql
        self.params = list(params)
        self.slots: list[tuple[int, str, type]] = []
        adapt = connection.ops.adapt_datetimefield_value
        for i, value in enumerate(self.params):
            if value is many and isinstance(many, _KeysStandIn):
                self.keys_slot = i
            for name, stand_in in stand_ins.items():
                kind = read.params[name]
                if value == stand_in or (kind is datetime and value == adapt(stand_in)):
                    self.slots.append((i, name, kind))
        missing = set(stand_ins) - {name for _, name, _ in self.slots}
        if missing:
            raise TypeError(f"the QuerySet does not use {sorted(missing)}")
        self.locking = bool(query.select_for_update)
        if self.iterable is ModelIterable:
            klass_info = self.compiler.klass_info
            if self.compiler.annotation_col_map or queryset._known_related_objects:
                raise TypeError("a prepared read of model instances has no annotations")
            fields = klass_info["select_fields"]
            self.model = klass_info["model"]
            self.start, self.end = fields[0], fields[-1] + 1
            self.init_list = [
                f[0].target.attname for f in self.compiler.select[self.start : self.end]
            ]
            # select_related() rows are filled in as ModelIterable does.
            self.populators = get_related_populators(klass_info, self.compiler.select, self.db)
        elif self.iterable is ValuesIterable:
            if query.selected:
                self.names = list(query.selected)
            else:
                self.names = [*query.values_select, *query.annotation_select]
        self.col_count = self.compiler.col_count
        self.trim = bool(getattr(self.compiler, "has_extra_select", False))
        self.batched = many is not None

    def run(self, connection, values: dict[str, Any]) -> list[Any]:
        rows = self._rows(connection, values)
        if self.batched:
            raise TypeError("a batched read is run with run_many")
        return rows

    def run_many(self, connection, values: dict[str, Any], keys: list) -> dict[Any, list[Any]]:
        """Each key's rows, in the order of the one result."""
        groups: dict[Any, list[Any]] = {key: [] for key in keys}
        rows = self._rows(connection, values, keys)
        if self.key_attname is not None:
            for obj in rows:
                groups[getattr(obj, self.key_attname)].append(obj)
        elif self.iterable is ValuesIterable:
            for row in rows:
                groups[row.pop(_BATCH_KEY)].append(row)
        elif self.iterable is FlatValuesListIterable:
            for row in rows:
                groups[row[-1]].append(row[0])
        else:
            for row in rows:
                groups[row[-1]].append(row[:-1])
        return groups

    def _rows(self, connection, values: dict[str, Any], keys: list | None = None) -> list[Any]:
        if self.locking and connection.get_autocommit():
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        params = list(self.params)
        adapt = connection.ops.adapt_datetimefield_value
        for i, name, kind in self.slots:
            value = values[name]
            params[i] = adapt(value) if kind is datetime else value
        if self.keys_slot is not None:
            params[self.keys_slot] = list(keys)
        with connection.cursor() as cursor:
            _fast_timestamps(connection, cursor)
            cursor.execute(self.sql, params)
            fetched = cursor.fetchall()
        if self.trim:
            fetched = [row[: self.col_count] for row in fetched]
        rows = self.compiler.results_iter(results=[fetched])
        if self.iterable is ModelIterable:
            out = []
            for row in rows:
                obj = self.model.from_db(self.db, self.init_list, row[self.start : self.end])
                for populator in self.populators:
                    populator.populate(row, obj)
                out.append(obj)
            return out
        if self.iterable is ValuesIterable:
            names = self.names
            return [dict(zip(names, row, strict=False)) for row in rows]
        if self.iterable is FlatValuesListIterable and not self.batched:
            return [row[0] for row in rows]
        return [tuple(row) for row in rows]


def _fast_timestamps(connection, cursor) -> None:
    """On PostgreSQL in UTC, read timestamptz with psycopg's own C loader on this cursor.

    Django registers a Python subclass of psycopg's pure-Python loader (to set the tzinfo), so
    every timestamp is parsed in Python: 4,000 per 2,000-charger cycle, 15 ms of its 25 ms
    read. On a UTC connection psycopg's loader gives the same values with the same
    `timezone.utc` (the test suite compares them), so the prepared reads use it."""
    if connection.vendor != "postgresql" or connection.timezone_name != "UTC":
        return
    loader = _c_timestamptz_loader()
    if loader is not None:
        cursor.cursor.adapters.register_loader("timestamptz", loader)


@functools.cache
def _c_timestamptz_loader():
    import psycopg
    from psycopg.pq import Format

    if psycopg.pq.__impl__ not in ("c", "binary"):
        return None
    return psycopg.adapters.get_loader(psycopg.postgres.types["timestamptz"].oid, Format.TEXT)


class _KeysStandIn(list):
    """Where the keys of a batch go in a batched read's SQL compiled once (PostgreSQL)."""

    def __eq__(self, other) -> bool:
        return self is other

    __hash__ = object.__hash__


class _Batch:
    def __init__(self, keys: Iterable[Any]) -> None:
        self.keys = list(dict.fromkeys(keys))
        self.wanted = set(self.keys)
        self.served: dict[tuple, dict[Any, list[Any]]] = {}


_batches: contextvars.ContextVar[dict[str, _Batch] | None] = contextvars.ContextVar(
    "prepared_read_batches", default=None
)


@contextlib.contextmanager
def batched(**keys: Iterable[Any]) -> Iterator[None]:
    """Within it, reads declared `batch_by=<name>` answer every listed value from one query
    (see the module's docstring), e.g. `with batched(microgrid=[1, 2, 3]): ...`."""
    token = _batches.set({name: _Batch(values) for name, values in keys.items()})
    try:
        yield
    finally:
        _batches.reset(token)


class PreparedRead:
    """A read-only QuerySet, built once per database, run with new parameter values."""

    def __init__(
        self, build: Callable[..., QuerySet], *, batch_by: str | None = None, **params: type
    ) -> None:
        for name, kind in params.items():
            if kind not in _KINDS:
                raise TypeError(f"parameter {name} must be int, str or datetime")
        if batch_by is not None and batch_by not in params:
            raise TypeError(f"batch_by names no parameter: {batch_by}")
        self.build = build
        self.params = params
        self.batch_by = batch_by
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def __call__(self, *, using: str | None = None, **values: Any) -> list[Any]:
        if set(values) != set(self.params):
            raise TypeError(f"expected the parameters {sorted(self.params)}")
        for name, value in values.items():
            kind = self.params[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise TypeError(f"{name} must be a {kind.__name__}")
            if kind is datetime and value.tzinfo is None:
                raise ValueError(f"{name} must be an aware datetime")
        alias = using or router.db_for_read(self._model())
        connection = connections[alias]
        if self.batch_by is not None:
            batches = _batches.get()
            batch = batches.get(self.batch_by) if batches else None
            if batch is not None and values[self.batch_by] in batch.wanted:
                rows = self._from_batch(batch, connection, values)
                if rows is not None:
                    return rows
        key = (alias, connection.vendor)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(self, connection)
        return compiled.run(connection, values)

    def _from_batch(self, batch: _Batch, connection, values: dict[str, Any]) -> list | None:
        """This key's rows from the batch's one query (run at the first call), handed out
        once: None when they were (whoever asks again reads again)."""
        rest = tuple(sorted((k, v) for k, v in values.items() if k != self.batch_by))
        cache_key = (id(self), connection.alias, rest)
        groups = batch.served.get(cache_key)
        if groups is None:
            if connection.vendor == "postgresql":  # `= ANY(%s)`: compiled once per process
                key = (connection.alias, connection.vendor, "many")
                many = self._compiled.get(key)
                if many is None:
                    many = self._compiled[key] = _Compiled(self, connection, _KeysStandIn())
            else:
                many = _Compiled(self, connection, many=batch.keys)
            groups = batch.served[cache_key] = many.run_many(connection, values, batch.keys)
        return groups.pop(values[self.batch_by], None)

    def _model(self):
        model = getattr(self, "_model_cls", None)
        if model is None:
            stand_ins = {name: _stand_in(kind) for name, kind in self.params.items()}
            model = self._model_cls = self.build(**stand_ins).model
        return model
