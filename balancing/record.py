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

Format 2 (issue 18, the fleet's small cycles) adds three steps, each reversible:

4. Row values. A top-level value of the document or snapshot that the
   cycle's row holds too (cycle id, start and end times, outcome, source mode,
   reason codes, topology version, a one-key scope or trigger) is stored as
   the marker ROW when the row gives back the very same value, and put back
   from the row on read (`row=`).
5. Template. A new part also keeps the whole encoded text of the cycle that
   wrote it, and the records that use the part are compressed with the
   part's columns and that text as zlib's preset dictionary: what a steady
   depot repeats (node limits, the keys, the codes, a column that changed
   in a few places) costs a back-reference instead of its bytes. A record
   compressed so says so in its zlib header (FDICT), so records of format 1
   read as they did. The part is not renewed while the topology holds: a
   50-charger depot's records stop growing after about five cycles (a tenth
   of the requests and every reading time change each cycle), at about half
   of what they cost without the dictionary, and a new part costs as much
   as five records.
6. Times. The snapshot's UTC stamps ("...Z", microseconds) are stored as
   offsets like the document's; a column whose offsets are all whole
   milliseconds (or seconds) stores them in that unit ("u").

`encode(...)` and `decode(...)` are pure; `balancing.models.Cycle` calls them.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

FORMAT = 2
_FORMATS = (1, 2)
_LEVEL = 1
# Small records compress at a higher level: the cost is microseconds, the gain a tenth.
_SMALL = 64 * 1024
_SMALL_LEVEL = 6
_MIN_SHARED = 24  # bytes: smaller columns are cheaper inline than named
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$")
_TZ = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

# Markers of the encoded form (keys that no cycle document uses).
TABLE = "\x00t"  # {TABLE: [keys], "c": [column, ...]}
DISTINCT = "\x00d"  # {DISTINCT: [values], "i": [index per row]}
VALUES = "\x00v"  # {VALUES: [value per row]}: objects or lists, all different
TIMES = "\x00s"  # {TIMES: first value (µs since epoch), "o": [offset or None]}
ESCAPED = "\x00e"  # {ESCAPED: [[key, value], ...]}: an object with a key like these markers
SHARED = "\x00p"  # {SHARED: n}: the column is the part's n-th (by digest order)
ROW = "\x00r"  # a top-level value the cycle's row gives back (format 2)
TEMPLATE = "\x00z"  # a part's template: the encoded text of the cycle that wrote it
_UNITS = (1_000_000, 1000)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# ---- columns ---------------------------------------------------------------------------------


_NONE = type(None)
_SCALARS = {str, int, float, bool, _NONE}


def _as_times(column: list[Any], types: set[type]) -> dict[str, Any] | None:
    """Timestamps as offsets, when every value prints back to the same text: all in
    isoformat with +00:00, or all in the snapshot's fixed form with microseconds and Z."""
    if str not in types or not types <= {str, _NONE}:
        return None
    first_text = next(v for v in column if v is not None)
    zulu = first_text.endswith("Z")
    pattern = _TZ if zulu else _TS
    micros = []
    memo: dict[str, int] = {}
    for v in column:
        if v is None:
            micros.append(None)
            continue
        m = memo.get(v)
        if m is None:
            if not pattern.match(v):
                return None
            stamp = datetime.fromisoformat(v[:-1] + "+00:00" if zulu else v)
            if _print(stamp, zulu) != v:
                return None
            delta = stamp - _EPOCH
            m = memo[v] = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        micros.append(m)
    first = next(m for m in micros if m is not None)
    offsets = [None if m is None else m - first for m in micros]
    out: dict[str, Any] = {TIMES: first}
    if zulu:
        out["z"] = 1
    for unit in _UNITS:
        if all(o is None or o % unit == 0 for o in offsets):
            out["u"] = unit
            offsets = [None if o is None else o // unit for o in offsets]
            break
    out["o"] = offsets
    return out


def _print(stamp: datetime, zulu: bool) -> str:
    if zulu:
        return stamp.isoformat(timespec="microseconds")[:-6] + "Z"
    return stamp.isoformat()


def _from_times(encoded: dict[str, Any]) -> list[str | None]:
    first = encoded[TIMES]
    unit = encoded.get("u", 1)
    zulu = bool(encoded.get("z"))
    memo: dict[int, str] = {}
    out: list[str | None] = []
    for o in encoded["o"]:
        if o is None:
            out.append(None)
            continue
        text = memo.get(o)
        if text is None:
            text = memo[o] = _print(_EPOCH + timedelta(microseconds=first + o * unit), zulu)
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


_MIN_TOP = 256  # bytes: a whole top-level value shared (format 2), e.g. the snapshot's limits


def _top_values(encoded: Any) -> list[tuple[dict[str, Any], str]]:
    """(container, key) of the document's and snapshot's top-level objects and lists that
    hold no table (those share column by column): shared whole when unchanged (format 2)."""
    out = []
    if not isinstance(encoded, dict):
        return out
    for section in ("d", "s"):
        container = encoded.get(section)
        if not isinstance(container, dict) or ESCAPED in container or TABLE in container:
            continue
        for key, value in container.items():
            if not isinstance(value, dict | list) or (isinstance(value, dict) and SHARED in value):
                continue
            found: list[list[Any]] = []
            _columns(value, found)
            if not found and not (isinstance(value, dict) and TABLE in value):
                out.append((container, key))
    return out


def part_columns(encoded: Any) -> dict[str, bytes]:
    """The columns (and table-free top-level values) of an encoded record worth sharing, by
    hash."""
    found: list[list[Any]] = []
    _columns(encoded, found)
    out = {}
    for container, key in _top_values(encoded):
        data = _dumps(container[key])
        if len(data) >= _MIN_TOP:
            out[column_hash(data)] = data
    for columns in found:
        for column in columns:
            data = _dumps(column)
            if len(data) >= _MIN_SHARED:
                out[column_hash(data)] = data
    return out


def _shareable(encoded: Any) -> list[tuple[Any, Any, bytes, str]]:
    """(container, key or index, printed value, digest) of every value of an encoded record
    that `part_columns` counts, in `_share`'s order: the table-free top-level values, then the
    table columns depth first. A column is printed before any column inside it is replaced,
    so each text is the one `_share` would print."""
    out = []
    for container, key in _top_values(encoded):
        data = _dumps(container[key])
        if len(data) >= _MIN_TOP:
            out.append((container, key, data, column_hash(data)))
    found: list[list[Any]] = []
    _columns(encoded, found)
    for columns in found:
        for i, column in enumerate(columns):
            data = _dumps(column)
            if len(data) >= _MIN_SHARED:
                out.append((columns, i, data, column_hash(data)))
    return out


def _digests(part: dict[str, bytes]) -> list[str]:
    """A part's column digests in the order records name them (its template is no column)."""
    return sorted(k for k in part if k != TEMPLATE)


def _share(encoded: Any, part: dict[str, bytes]) -> tuple[Any, int]:
    """Replace each table column found in `part` by its hash; returns the bytes shared."""
    shared = 0
    found: list[list[Any]] = []
    _columns(encoded, found)
    # A column is named by its place among the part's digests (a small number compresses;
    # a digest does not).
    place = {digest: i for i, digest in enumerate(_digests(part))}
    for container, key in _top_values(encoded):
        data = _dumps(container[key])
        if len(data) >= _MIN_TOP and column_hash(data) in place:
            container[key] = {SHARED: place[column_hash(data)]}
            shared += len(data)
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
    digests = _digests(part) if part else []
    if isinstance(encoded, dict) and encoded.get("v", 1) >= 2:
        for section in ("d", "s"):
            container = encoded.get(section)
            if not isinstance(container, dict) or ESCAPED in container:
                continue
            for key, value in container.items():
                if isinstance(value, dict) and len(value) == 1 and SHARED in value:
                    at = value[SHARED]
                    if not isinstance(at, int) or not 0 <= at < len(digests):
                        raise ValueError("a cycle record names a part value that is not there")
                    container[key] = orjson.loads(part[digests[at]])
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
        _dumps(
            {
                k: v.decode() if k == TEMPLATE else orjson.Fragment(v)
                for k, v in sorted(columns.items())
            }
        ),
        _LEVEL,
    )


def decode_part(data: bytes) -> dict[str, bytes]:
    return {
        k: v.encode() if k == TEMPLATE else _dumps(v)
        for k, v in orjson.loads(zlib.decompress(data)).items()
    }


def _mark_row(value: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    """`value` with each top-level entry the row gives back exactly replaced by ROW."""
    if not row:
        return value
    out = {}
    for k, v in value.items():
        if k in row and _dumps(row[k]) == _dumps(v) and (not isinstance(v, dict) or len(v) <= 1):
            out[k] = ROW
        else:
            out[k] = v
    return out


def _unmark_row(value: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    if not any(v == ROW for v in value.values()):
        return value
    if row is None:
        raise ValueError("a cycle record takes values from its row: pass row=")
    out = {}
    for k, v in value.items():
        if v == ROW:
            if k not in row:
                raise ValueError(f"a cycle record takes {k!r} from its row, which lacks it")
            v = row[k]
        out[k] = v
    return out


_WINDOW = 32 * 1024  # what of a preset dictionary deflate can refer to


def _dictionary(part: dict[str, bytes] | None) -> bytes | None:
    """zlib's preset dictionary for the records of a part: its columns, then its template
    (last, nearest: the text a record most resembles), at most deflate's window."""
    if not part or TEMPLATE not in part:
        return None
    data = b"".join(part[d] for d in _digests(part)) + part[TEMPLATE]
    return data[-_WINDOW:]


def _compress(text: bytes, part: dict[str, bytes] | None) -> bytes:
    level = _SMALL_LEVEL if len(text) <= _SMALL else _LEVEL
    zdict = _dictionary(part)
    if zdict is None:
        return zlib.compress(text, level)
    z = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=zdict)
    return z.compress(text) + z.flush()


def _decompress(data: bytes, part: dict[str, bytes] | None) -> bytes:
    if len(data) > 1 and data[1] & 0x20:  # FDICT: compressed against the part's dictionary
        zdict = _dictionary(part)
        if zdict is None:
            raise ValueError("a cycle record needs its part's template, which is not there")
        z = zlib.decompressobj(zdict=zdict)
        return z.decompress(data) + z.flush()
    return zlib.decompress(data)


def encode(
    document: dict[str, Any],
    snapshot: dict[str, Any],
    part: dict[str, bytes] | None,
    *,
    row: dict[str, dict[str, Any]] | None = None,
) -> tuple[bytes, dict[str, bytes] | None]:
    """(record, new part or None): the record uses `part`, or a new part when the cycle
    shares less than half of its column bytes with `part` or `part` has no template. `row` ({"d": {...}, "s": {...}}) holds the
    top-level values of the document and snapshot that the cycle's row gives back."""
    row = row or {}
    encoded = _encode_value(
        {
            "v": FORMAT,
            "d": _mark_row(document, row.get("d")),
            "s": _mark_row(snapshot, row.get("s")),
        }
    )
    # Each value worth sharing is found, printed and hashed once, for choosing the part and
    # for naming the part's values (what `part_columns` then `_share` would each do again).
    slots = _shareable(encoded)
    mine = {digest: data for _, _, data, digest in slots}
    total = sum(len(v) for v in mine.values())
    reuse = sum(len(v) for k, v in mine.items() if part and k in part)
    new_part = None
    if part is None or TEMPLATE not in part or (total and reuse * 2 < total):
        new_part = part = dict(mine)
    place = {digest: i for i, digest in enumerate(_digests(part))}
    for container, key, _, digest in slots:
        at = place.get(digest)
        if at is not None:
            container[key] = {SHARED: at}
    text = _dumps(encoded)
    if new_part is not None:
        new_part[TEMPLATE] = text
    return _compress(text, part), new_part


def text_of(record: bytes, part: dict[str, bytes] | None) -> bytes:
    """A record's encoded text (what `decode` reads; what a block of cycles stores)."""
    return _decompress(record, part)


def dictionary(part: dict[str, bytes] | None) -> bytes | None:
    """The preset dictionary of a part's records (None without a template)."""
    return _dictionary(part)


def decode(
    record: bytes, part: dict[str, bytes] | None, *, row: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    return decode_encoded(orjson.loads(_decompress(record, part)), part, row=row)


def decode_encoded(
    encoded: Any, part: dict[str, bytes] | None, *, row: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`decode` of a record's parsed text (`text_of`), which it consumes."""
    encoded = _unshare(encoded, part)
    value = _decode_value(encoded)
    if value.get("v") not in _FORMATS:
        raise ValueError(f"unknown cycle record format {value.get('v')!r}")
    row = row or {}
    return _unmark_row(value["d"], row.get("d")), _unmark_row(value["s"], row.get("s"))
