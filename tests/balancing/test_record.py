"""The stored cycle record: exactly the document and snapshot it was given, compactly."""

from __future__ import annotations

import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balancing import record

UNTIL = "2026-03-02T09:00:45.123456+00:00"


def _charger(i: int, **extra) -> dict:
    return {
        "asset_id": f"CH-{i:04d}",
        "node_id": f"grp-{i % 7}",
        "allocated_kw": round(3.7 + i * 0.1, 1) if i % 5 else None,
        "requested_kw": 22.0,
        "reason_codes": ["PHYSICAL_RATING"] if i % 3 else ["FAIR_SHARE", "TOU_LIMIT"],
        "binding": {"node_id": f"grp-{i % 7}", "limit_source": "PHYSICAL_RATING", "limit_kw": 50.0}
        if i % 4
        else None,
        "valid_until": UNTIL,
        **extra,
    }


def _document(n: int = 40, **extra) -> dict:
    return {
        "cycle_id": "c" * 32,
        "trigger": {"type": "SCHEDULED"},
        "started_at": "2026-03-02T09:00:00+00:00",
        "nodes": [{"node_id": f"grp-{i}", "allocated_kw": i * 1.5} for i in range(7)],
        "chargers": [_charger(i) for i in range(n)],
        "scope_budgets": [],
        "breaches": [],
        **extra,
    }


def _snapshot(n: int = 40) -> dict:
    return {
        "now": "2026-03-02T09:00:00+00:00",
        "engine": {
            "chargers": [
                {
                    "asset_id": f"CH-{i:04d}",
                    "plugged_in_at": None if i % 2 else f"2026-03-02T08:{i % 60:02d}:00+00:00",
                    "last_observed_at": f"2026-03-02T08:59:{i % 60:02d}.{i:06d}+00:00",
                }
                for i in range(n)
            ],
            "threshold_s": 60,
        },
    }


def _same(a, b) -> bool:
    return orjson.dumps(a) == orjson.dumps(b)


def test_a_record_gives_back_exactly_its_document_and_snapshot_key_order_included():
    doc, snap = _document(), _snapshot()
    data, part = record.encode(doc, snap, None)
    back_doc, back_snap = record.decode(data, part)
    assert _same(back_doc, doc) and _same(back_snap, snap)


def test_fields_added_later_are_kept_wherever_they_are():
    doc = _document(dispatch={"deliveries": 3, "status": "QUEUED"})
    doc["chargers"][5]["departure_at"] = "2026-03-02T17:00:00+01:00"  # one row differs
    doc["chargers"][6]["binding"] = {"node_id": "grp-6", "nested": [{"a": 1}, {"a": 2}]}
    data, part = record.encode(doc, _snapshot(), None)
    assert _same(record.decode(data, part)[0], doc)


def test_a_second_cycle_stores_only_what_changed_and_names_the_shared_columns():
    first_doc, snap = _document(400), _snapshot(400)
    first, part = record.encode(first_doc, snap, None)
    assert part is not None
    second_doc = _document(400)
    second_doc["chargers"][0]["allocated_kw"] = 99.9
    second, new_part = record.encode(second_doc, snap, part)
    assert new_part is None  # the same topology: the part is reused
    assert len(second) < len(first) or len(second) < 2000
    assert _same(record.decode(second, part)[0], second_doc)


def test_a_record_without_its_part_is_refused_not_misread():
    data, part = record.encode(_document(400), _snapshot(400), None)
    with pytest.raises(ValueError):
        record.decode(data, None)


def test_a_changed_topology_makes_a_new_part():
    _, part = record.encode(_document(400), _snapshot(400), None)
    other = _document(400)
    for c in other["chargers"]:
        c["asset_id"] = "X" + c["asset_id"]
        c["node_id"] = "Y" + c["node_id"]
    data, new_part = record.encode(other, {}, part)
    assert new_part is not None and new_part != part
    assert _same(record.decode(data, new_part)[0], other)


def test_timestamps_that_would_not_print_back_the_same_are_kept_as_text():
    rows = [
        {"t": "2026-03-02T09:00:00.000000+00:00", "k": 1},
        {"t": "2026-03-02T09:00:01+00:00", "k": 2},
    ]
    data, part = record.encode({"rows": rows}, {}, None)
    assert record.decode(data, part)[0] == {"rows": rows}


def test_parts_survive_their_own_encoding():
    _, part = record.encode(_document(400), _snapshot(400), None)
    blob = record.encode_part(part)
    assert record.decode_part(blob) == part


ROW = {
    "d": {
        "cycle_id": "c" * 32,
        "trigger": {"type": "SCHEDULED"},
        "started_at": "2026-03-02T09:00:00+00:00",
    },
    "s": {"now": "2026-03-02T09:00:00.000000Z"},
}


def test_values_the_row_holds_are_taken_from_the_row_and_nothing_else_is():
    doc = _document(40)
    snap = {**_snapshot(40), "now": "2026-03-02T09:00:00.000000Z"}
    data, part = record.encode(doc, snap, None, row=ROW)
    text = record._decompress(data, part)
    assert b"c" * 32 not in text and b"09:00:00.000000Z" not in text
    back_doc, back_snap = record.decode(data, part, row=ROW)
    assert _same(back_doc, doc) and _same(back_snap, snap)
    with pytest.raises(ValueError):
        record.decode(data, part)  # it needs its row
    # A value the row does not give back exactly stays in the record.
    other = _document(40, trigger={"type": "SCHEDULED", "note": "x"})
    data, new_part = record.encode(other, snap, part, row=ROW)
    assert new_part is None
    assert _same(record.decode(data, part, row=ROW)[0], other)


def test_a_record_is_compressed_against_its_parts_template():
    doc, snap = _document(400), _snapshot(400)
    first, part = record.encode(doc, snap, None)
    assert record.TEMPLATE in part
    second_doc = _document(400)
    second_doc["chargers"][3]["allocated_kw"] = 42.0
    second, new_part = record.encode(second_doc, snap, part)
    assert new_part is None
    alone = zlib.compress(record._decompress(second, part), 6)
    assert len(second) * 3 < len(alone)
    assert _same(record.decode(second, part)[0], second_doc)
    # Without its template it is refused, not misread.
    columns = {k: v for k, v in part.items() if k != record.TEMPLATE}
    with pytest.raises(ValueError):
        record.decode(second, columns)


def test_an_unchanged_object_without_tables_is_shared_whole():
    limits = {
        f"n-{i}": {"effective_limit_kw": 50.0 + i, "constraints": [["NODE", i]]} for i in range(60)
    }
    snap = {**_snapshot(40), "limits": limits}
    _, part = record.encode(_document(40), snap, None)
    data, new_part = record.encode(_document(40), snap, part)
    assert new_part is None
    assert b'"limits":{"\\u0000p"' in record._decompress(data, part)
    assert _same(record.decode(data, part)[1], snap)
    changed = {**snap, "limits": {**limits, "n-0": {"effective_limit_kw": 1.0}}}
    data, new_part = record.encode(_document(40), changed, part)
    assert _same(record.decode(data, new_part or part)[1], changed)


def test_records_of_format_1_still_read():
    doc, snap = _document(40), _snapshot(40)
    data = zlib.compress(orjson.dumps({"v": 1, "d": doc, "s": snap}), 1)
    back_doc, back_snap = record.decode(data, None)
    assert _same(back_doc, doc) and _same(back_snap, snap)


def test_timestamps_in_either_form_are_stored_as_offsets_in_their_unit():
    rows = [
        {"t": "2026-03-02T09:00:00.123000Z"},
        {"t": "2026-03-02T09:00:14.001000Z"},
        {"t": None},
    ]
    encoded = record._encode_value({"rows": rows})
    column = encoded["rows"]["c"][0]
    assert column["u"] == 1000 and column["o"] == [0, 13878, None] and column["z"] == 1
    data, part = record.encode({"rows": rows}, {}, None)
    assert record.decode(data, part)[0] == {"rows": rows}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "a": json_values,
            "b": json_values,
            "t": st.none()
            | st.sampled_from(
                [
                    UNTIL,
                    "2026-03-02T09:00:00+00:00",
                    "2026-03-02T10:00:00+01:00",
                    "2026-03-02T09:00:00.123000Z",
                    "2026-03-02T09:00:00Z",
                ]
            ),
        }
    ),
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=5), json_values | rows, max_size=4), extra=rows)
def test_any_json_document_round_trips(doc, extra):
    doc = {**doc, "chargers": extra}
    _, part = record.encode(doc, {"x": extra}, None)
    data, _ = record.encode(doc, {"x": extra}, part)
    back_doc, back_snap = record.decode(data, part)
    assert _same(back_doc, doc) and _same(back_snap, {"x": extra})
