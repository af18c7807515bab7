"""The stored form of a cycle: its document and input snapshot as one compact record.

Why this form (spec 4.1, "Stored form"): a 2,000-charger cycle is a 0.5 MB
document and a 0.6 MB snapshot of JSON, almost all of it one object per
charger. Stored as jsonb (compressed by TOAST) that was about 50 bytes per
charger-cycle and 80 ms per insert. Three steps bring it to the figures of
docs/performance.md, each exactly reversible, so the API still answers the
document it always did, byte for byte, and replay reads the same snapshot:

1. Columns. A list of objects that all have the same keys in the same order
   (chargers, nodes, loads, scope budgets) is stored as one list per key.
   A column of lists or objects (reason codes, bindings) is stored as its
   distinct values and one index per row; a column of timestamps as integer
   microseconds from the column's first value (only when every value prints
   back to the very same text). Anything else is stored as it is, so fields
   added later (a `dispatch` section, new per-charger fields) are kept
   without a change here.
2. Shared columns. A column that is the same in the microgrid's previous
   cycle (asset and node ids, ratings, priorities: everything that changes
   only with the topology) is not stored again: the record names it by its
   place in a part, a set of columns stored once and shared by the cycles that use it.
   A new part is written when a cycle shares less than half of its column
   bytes with the last one (the first cycle, a topology change).
3. Compression. The record is orjson text compressed with zlib (level 1:
   the text is already columnar, higher levels gain little and cost more).

`encode(...)` and `decode(...)` are pure; `balancing.models.Cycle` calls them.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

FORMAT = 1
_LEVEL = 1
_MIN_SHARED = 24  # bytes: smaller columns are cheaper inline than named
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$")

# Markers of the encoded form (keys that no cycle document uses).
TABLE = "\x00t"  # {TABLE: [keys], "c": [column, ...]}
DISTINCT = "\x00d"  # {DISTINCT: [values], "i": [index per row]}
VALUES = "\x00v"  # {VALUES: [value per row]}: objects or lists, all different
TIMES = "\x00s"  # {TIMES: first value (µs since epoch), "o": [offset or None]}
ESCAPED = "\x00e"  # {ESCAPED: [[key, value], ...]}: an object with a key like these markers
SHARED = "\x00p"  # {SHARED: n}: the column is the part's n-th (by digest order)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# ---- columns ---------------------------------------------------------------------------------


_NONE = type(None)
_SCALARS = {str, int, float, bool, _NONE}


def _as_times(column: list[Any], types: set[type]) -> dict[str, Any] | None:
    if str not in types or not types <= {str, _NONE}:
        return None
    micros = []
    memo: dict[str, int] = {}
    for v in column:
        if v is None:
            micros.append(None)
            continue
        m = memo.get(v)
        if m is None:
            if not _TS.match(v):
                return None
            stamp = datetime.fromisoformat(v)
            if stamp.isoformat() != v:
                return None
            delta = stamp - _EPOCH
            m = memo[v] = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        micros.append(m)
    first = next(m for m in micros if m is not None)
    return {TIMES: first, "o": [None if m is None else m - first for m in micros]}


def _from_times(encoded: dict[str, Any]) -> list[str | None]:
    first = encoded[TIMES]
    memo: dict[int, str] = {}
    out: list[str | None] = []
    for o in encoded["o"]:
        if o is None:
            out.append(None)
            continue
        text = memo.get(o)
        if text is None:
            text = memo[o] = (_EPOCH + timedelta(microseconds=first + o)).isoformat()
        out.append(text)
    return out


def _column(values: list[Any]) -> Any:
    """A column: scalars as a list, times as offsets, anything else as VALUES or DISTINCT."""
    types = set(map(type, values))
    if types <= _SCALARS:
        times = _as_times(values, types)
        return times if times is not None else values
    distinct: dict[bytes, int] = {}
    index = [distinct.setdefault(_dumps(v), len(distinct)) for v in values]
    if len(distinct) < len(values):
        return {DISTINCT: [_encode_value(orjson.loads(b)) for b in distinct], "i": index}
    return {VALUES: [_encode_value(v) for v in values]}


def _uncolumn(encoded: Any) -> list[Any]:
    if isinstance(encoded, list):
        return encoded
    if DISTINCT in encoded:
        # Each row gets its own copy: a caller may change one row's value.
        distinct = [_dumps(_decode_value(v)) for v in encoded[DISTINCT]]
        loads = orjson.loads
        return [loads(distinct[i]) for i in encoded["i"]]
    if TIMES in encoded:
        return _from_times(encoded)
    return [_decode_value(v) for v in encoded[VALUES]]


def _is_table(value: list[Any]) -> bool:
    if len(value) < 2 or not all(isinstance(row, dict) for row in value):
        return False
    keys = list(value[0])
    return bool(keys) and all(list(row) == keys for row in value)


def _encode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if any(k[:1] == "\x00" for k in value):
            return {ESCAPED: [[k, _encode_value(v)] for k, v in value.items()]}
        return {k: _encode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        if _is_table(value):
            keys = list(value[0])
            return {TABLE: keys, "c": [_column([row[k] for row in value]) for k in keys]}
        return [_encode_value(v) for v in value]
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if TABLE in value:
            keys = value[TABLE]
            columns = [_uncolumn(c) for c in value["c"]]
            return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]
        if ESCAPED in value:
            return {k: _decode_value(v) for k, v in value[ESCAPED]}
        return {k: _decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


# ---- shared columns ----------------------------------------------------------------------------


def _columns(value: Any, out: list[list[Any]]) -> None:
    """Every table's column list in an encoded value, depth first (where a part can serve).
    Scalar columns (plain lists) hold no tables and are not walked."""
    if isinstance(value, dict):
        if TABLE in value:
            out.append(value["c"])
            for column in value["c"]:
                if isinstance(column, dict):
                    _columns(column.get(DISTINCT) or column.get(VALUES), out)
            return
        for v in value[ESCAPED] if ESCAPED in value else value.values():
            _columns(v, out)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict | list):
                _columns(v, out)


def column_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def part_columns(encoded: Any) -> dict[str, bytes]:
    """The columns of an encoded record worth sharing, by hash."""
    found: list[list[Any]] = []
    _columns(encoded, found)
    out = {}
    for columns in found:
        for column in columns:
            data = _dumps(column)
            if len(data) >= _MIN_SHARED:
                out[column_hash(data)] = data
    return out


def _share(encoded: Any, part: dict[str, bytes]) -> tuple[Any, int]:
    """Replace each table column found in `part` by its hash; returns the bytes shared."""
    shared = 0
    found: list[list[Any]] = []
    _columns(encoded, found)
    # A column is named by its place among the part's digests (a small number compresses;
    # a digest does not).
    place = {digest: i for i, digest in enumerate(sorted(part))}
    for columns in found:
        for i, column in enumerate(columns):
            data = _dumps(column)
            if len(data) < _MIN_SHARED:
                continue
            digest = column_hash(data)
            if digest in place:
                columns[i] = {SHARED: place[digest]}
                shared += len(data)
    return encoded, shared


def _unshare(encoded: Any, part: dict[str, bytes] | None) -> Any:
    found: list[list[Any]] = []
    _columns(encoded, found)
    digests = sorted(part) if part else []
    for columns in found:
        for i, column in enumerate(columns):
            if isinstance(column, dict) and SHARED in column:
                at = column[SHARED]
                if isinstance(at, str) and part and at in part:
                    at = digests.index(at)  # the first records named the digest itself
                if not isinstance(at, int) or not 0 <= at < len(digests):
                    raise ValueError("a cycle record names a part column that is not there")
                columns[i] = orjson.loads(part[digests[at]])
    return encoded


# ---- records ---------------------------------------------------------------------------------


def encode_part(columns: dict[str, bytes]) -> bytes:
    return zlib.compress(
        _dumps({k: orjson.Fragment(v) for k, v in sorted(columns.items())}), _LEVEL
    )


def decode_part(data: bytes) -> dict[str, bytes]:
    return {k: _dumps(v) for k, v in orjson.loads(zlib.decompress(data)).items()}


def encode(
    document: dict[str, Any], snapshot: dict[str, Any], part: dict[str, bytes] | None
) -> tuple[bytes, dict[str, bytes] | None]:
    """(record, new part or None): the record uses `part`, or the new part when the
    cycle shares less than half of its column bytes with `part`."""
    encoded = _encode_value({"v": FORMAT, "d": document, "s": snapshot})
    mine = part_columns(encoded)
    total = sum(len(v) for v in mine.values())
    reuse = sum(len(v) for k, v in mine.items() if part and k in part)
    new_part = None
    if total and reuse * 2 < total:
        new_part = part = mine
    encoded, _ = _share(encoded, part or {})
    return zlib.compress(_dumps(encoded), _LEVEL), new_part


def decode(record: bytes, part: dict[str, bytes] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    encoded = _unshare(orjson.loads(zlib.decompress(record)), part)
    value = _decode_value(encoded)
    if value.get("v") != FORMAT:
        raise ValueError(f"unknown cycle record format {value.get('v')!r}")
    return value["d"], value["s"]
