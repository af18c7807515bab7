"""Blocks of compacted cycles: how they are packed, and how every reader finds a cycle
wherever it lives (its row, or a block), so that no reader cares which.

A block (`CycleBlock`) holds consecutive cycles of one microgrid that all use one record
part: `summary` is their row values as columns (seq, times, codes, scope, the triggers
each served), zlib at level 9 (a few hundred bytes); `records` is their record texts
(balancing/record.py, step 1 to 6 before compression) as one JSON list, compressed
together with the part's preset dictionary: what consecutive cycles repeat costs a
back-reference (docs/performance.md, "Stored cycles"). Reading a cycle of a block
decompresses the block (about 0.3 ms for 60 cycles of 50 chargers) and decodes that
cycle's text only.

A cycle read from a block is a `Cycle` without a primary key (`in_block`), with its
document and snapshot decoded on first use; `served_trigger_list` says which triggers
it served (a row's are its `CycleTrigger` rows, which compaction deletes).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from balancing import record
from balancing.models import (
    Cycle,
    CycleBlock,
    cycle_id_of,
    cycle_id_prefix,
    cycle_seq_of,
    part_columns,
)

FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SUMMARY_LEVEL = 9
_RECORDS_LEVEL = 6  # level 9 gains under 1 % on these texts for a third more time

# The row values a block keeps of each cycle, as columns (cycle_id and microgrid are
# derived: a block holds only cycles whose id is `cycle_id_of(microgrid, seq)`).
COLUMNS = (
    "seq",
    "trigger_type",
    "scope",
    "started_at",
    "completed_at",
    "topology_version",
    "outcome",
    "source_mode",
    "reason_codes",
    "vehicles_at_risk",
)


def _micros(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _at(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


# ---- packing ----------------------------------------------------------------------------------


def pack(
    rows: list[dict[str, Any]], texts: list[bytes], part: dict[str, bytes] | None
) -> tuple[bytes, bytes]:
    """(summary, records) of a block: `rows` the cycles' COLUMNS values and `served` (the
    trigger objects each served, oldest first), in seq order; `texts` their record texts."""
    if not rows or len(rows) != len(texts):
        raise ValueError("a block packs one text per cycle, and at least one cycle")
    starts = [_micros(r["started_at"]) for r in rows]
    columns: dict[str, Any] = {"v": FORMAT}
    for name in COLUMNS:
        if name == "started_at":
            # The first start, then the step from the one before (15 s, every time).
            columns[name] = [starts[0]] + [b - a for a, b in zip(starts, starts[1:], strict=False)]
        elif name == "completed_at":
            columns[name] = [
                _micros(r["completed_at"]) - s for r, s in zip(rows, starts, strict=True)
            ]
        else:
            columns[name] = [r[name] for r in rows]
    columns["served"] = [r["served"] for r in rows]
    summary = zlib.compress(orjson.dumps(columns), _SUMMARY_LEVEL)
    text = b"[" + b",".join(texts) + b"]"
    zdict = record.dictionary(part)
    if zdict is None:
        records = zlib.compress(text, _RECORDS_LEVEL)
    else:
        z = zlib.compressobj(
            _RECORDS_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=zdict
        )
        records = z.compress(text) + z.flush()
    return summary, records


def unpack_summary(summary: bytes) -> list[dict[str, Any]]:
    """The cycles of a block as dicts of COLUMNS (times as datetimes) plus `served`."""
    columns = orjson.loads(zlib.decompress(bytes(summary)))
    if columns.get("v") != FORMAT:
        raise ValueError(f"unknown cycle block format {columns.get('v')!r}")
    out = []
    start = 0
    for i in range(len(columns["seq"])):
        start = columns["started_at"][0] if i == 0 else start + columns["started_at"][i]
        row = {name: columns[name][i] for name in COLUMNS}
        row["started_at"] = _at(start)
        row["completed_at"] = _at(start + columns["completed_at"][i])
        row["served"] = columns["served"][i]
        out.append(row)
    return out


def unpack_records(records: bytes, part: dict[str, bytes] | None) -> list[Any]:
    """The parsed record texts of a block, in seq order."""
    data = bytes(records)
    if len(data) > 1 and data[1] & 0x20:  # FDICT
        zdict = record.dictionary(part)
        if zdict is None:
            raise ValueError("a cycle block needs its part's template, which is not there")
        z = zlib.decompressobj(zdict=zdict)
        return orjson.loads(z.decompress(data) + z.flush())
    return orjson.loads(zlib.decompress(data))


# ---- reading ----------------------------------------------------------------------------------


def virtual_cycle(microgrid, row: dict[str, Any], part: str | None, encoded: Any = None) -> Cycle:
    """A cycle of a block as a `Cycle` (no primary key); `encoded` its parsed record text,
    or None for a summary only (its document is then not available)."""
    cycle = Cycle(
        cycle_id=cycle_id_of(microgrid.microgrid_id, row["seq"]),
        microgrid=microgrid,
        record_part_id=part,
        **{name: row[name] for name in COLUMNS},
    )
    cycle.served_trigger_list = row["served"]
    cycle._encoded = encoded
    if encoded is None:
        cycle._decoded = ({}, {})
    return cycle


def _blocks(microgrid):
    return CycleBlock.objects.filter(microgrid=microgrid)


def block_cycle(microgrid, seq: int) -> Cycle | None:
    """The cycle `seq` of the microgrid from its block, with its record (two queries at
    most: the block, and its part unless this process holds it), or None."""
    block = (
        _blocks(microgrid)
        .filter(first_seq__lte=seq, last_seq__gte=seq)
        .order_by("-first_seq")
        .values_list("summary", "records", "record_part_id")
        .first()
    )
    if block is None:
        return None
    summary, records, part = block
    rows = unpack_summary(summary)
    at = next((i for i, r in enumerate(rows) if r["seq"] == seq), None)
    if at is None:
        return None
    encoded = unpack_records(records, part_columns(part))[at]
    return virtual_cycle(microgrid, rows[at], part, encoded)


def find_in_block(microgrid, cycle_id: str) -> Cycle | None:
    """The compacted cycle of the microgrid with this id, or None (no query for an id that is
    not of `cycle_id_of`'s form or names another microgrid)."""
    parsed = cycle_seq_of(cycle_id)
    if parsed is None or parsed[0] != cycle_id_prefix(microgrid.microgrid_id):
        return None
    return block_cycle(microgrid, parsed[1])


def newest_first(
    microgrid,
    *,
    need: int,
    keep=None,
    since: datetime | None = None,
    until: datetime | None = None,
    floor: datetime | None = None,
    with_records: bool = False,
) -> list[Cycle]:
    """At least the `need` newest compacted cycles (all of them for `need` 0) of the microgrid (by started_at, then seq,
    newest first) for which `keep(cycle)` holds and that started in [since, until), or all
    of them: blocks are read newest first until no older block can hold a newer one. A
    caller merges them with its rows and cuts; `floor`, when its rows are `need` already,
    the start of the oldest of them (no block that ended before it can change the page)."""
    blocks = _blocks(microgrid)
    if floor is not None:
        blocks = blocks.filter(started_to__gte=floor)
    if since is not None:
        blocks = blocks.filter(started_to__gte=since)
    if until is not None:
        blocks = blocks.filter(started_from__lt=until)
    fields = ("started_to", "summary", "record_part_id") + (("records",) if with_records else ())
    found: list[Cycle] = []
    chunk = 8
    query = blocks.order_by("-started_to", "-first_seq").values_list(*fields)
    offset = 0
    while True:
        batch = list(query[offset : offset + chunk])
        offset += len(batch)
        for values in batch:
            started_to = values[0]
            if need > 0 and len(found) >= need:
                found.sort(key=_order, reverse=True)
                if started_to < found[need - 1].started_at:
                    return found
            summary, part = values[1], values[2]
            encoded = unpack_records(values[3], part_columns(part)) if with_records else None
            for i, row in enumerate(unpack_summary(summary)):
                if since is not None and row["started_at"] < since:
                    continue
                if until is not None and row["started_at"] >= until:
                    continue
                cycle = virtual_cycle(
                    microgrid, row, part, encoded[i] if encoded is not None else None
                )
                if keep is None or keep(cycle):
                    found.append(cycle)
        if len(batch) < chunk:
            found.sort(key=_order, reverse=True)
            return found
        chunk = min(chunk * 2, 256)


def _order(cycle: Cycle) -> tuple[datetime, int]:
    return (cycle.started_at, cycle.seq)


def in_seq_order(microgrid, rows: Iterable[Cycle]) -> Iterator[Cycle]:
    """Every cycle of the microgrid by seq, `rows` (its rows, by seq) merged with its blocks'
    (each block read once, records included)."""
    blocks = iter(
        _blocks(microgrid)
        .order_by("first_seq")
        .values_list("summary", "records", "record_part_id")
        .iterator(chunk_size=20)
    )
    pending: list[Cycle] = []

    def refill() -> None:
        for summary, records, part in blocks:
            encoded = unpack_records(records, part_columns(part))
            pending.extend(
                virtual_cycle(microgrid, row, part, encoded[i])
                for i, row in enumerate(unpack_summary(summary))
            )
            if pending:
                return

    refill()
    for row in rows:
        while pending and pending[0].seq < row.seq:
            yield pending.pop(0)
            if not pending:
                refill()
        yield row
    while pending:
        yield pending.pop(0)
        if not pending:
            refill()
