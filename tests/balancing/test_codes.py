"""The reason and breach code lists are defined once (balancing/codes.py) and everything that
shows or documents a code uses that definition: the engine, breach detection, the labels, the
OpenAPI document and the spec's table."""

from __future__ import annotations

import re
from pathlib import Path

from balancing import breaches, codes, engine
from balancing.choices import CODE_LABELS

SPEC = Path(__file__).resolve().parents[2] / "docs/system-design/microgrid/spec.md"


def _document() -> dict:
    """The OpenAPI document as drf-spectacular generates it from the serializers."""
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _spec_section(title: str) -> str:
    text = SPEC.read_text()
    start = text.index(title)
    return text[start : text.index("\n### ", start + 1)]


def test_the_spec_table_lists_the_reason_codes_in_precedence_order():
    rows = re.findall(r"^\| (\d+) \| ([A-Z_]+) \|", _spec_section("### 4.5"), re.M)
    assert [int(rank) for rank, _ in rows] == list(range(1, len(rows) + 1))
    assert tuple(code for _, code in rows) == codes.REASON_PRECEDENCE


def test_the_spec_lists_the_breach_codes_in_precedence_order():
    section = _spec_section("### 4.5")
    line = section[section.index("Breach precedence") :].split(".\n")[0]
    assert tuple(re.findall(r"`(BREACH_[A-Z_]+)`", line)) == codes.BREACH_PRECEDENCE


def test_engine_breaches_labels_and_openapi_use_the_one_definition():
    assert engine.REASON_PRECEDENCE is codes.REASON_PRECEDENCE
    assert engine.LIMIT_SOURCE_TO_REASON is codes.LIMIT_SOURCE_TO_REASON
    assert engine.sort_reasons is codes.sort_reasons
    assert breaches.BREACH_PRECEDENCE is codes.BREACH_PRECEDENCE
    schemas = _document()["components"]["schemas"]
    assert schemas["Cycle"]["properties"]["reason_codes"]["items"]["enum"] == list(
        codes.REASON_PRECEDENCE
    )
    assert schemas["CycleNode"]["properties"]["reason_codes"]["items"]["enum"] == list(
        codes.REASON_PRECEDENCE
    )
    assert schemas["Breach"]["properties"]["primary_reason_code"]["enum"] == list(
        codes.BREACH_PRECEDENCE
    )
    assert schemas["Breach"]["properties"]["exceeded"]["items"]["enum"] == list(
        codes.BREACH_PRECEDENCE
    )
    for code in (*codes.REASON_PRECEDENCE, *codes.BREACH_PRECEDENCE):
        assert CODE_LABELS[code] == {**codes.REASON_LABELS, **codes.BREACH_LABELS}[code]


def test_every_limit_source_has_a_reason_and_a_breach_code():
    # Every breach code is a limit source's, except the per-phase one (issue 19), whose limit
    # (A per phase) can come from several sources.
    assert set(codes.LIMIT_SOURCE_TO_BREACH.values()) | {codes.BREACH_PHASE_CURRENT} == set(
        codes.BREACH_PRECEDENCE
    )
    assert set(codes.REASON_PRECEDENCE) >= codes.LIMIT_REASONS
    assert set(codes.LIMIT_SOURCE_TO_REASON) == set(codes.LIMIT_SOURCE_TO_BREACH)


def test_breach_rank_puts_unknown_codes_last():
    ranks = [codes.breach_rank(c) for c in codes.BREACH_PRECEDENCE]
    assert ranks == sorted(ranks) == list(range(len(ranks)))
    assert codes.breach_rank("BREACH_SOMETHING_NEW") == len(ranks)


def test_the_limit_sources_are_the_limits_apps_constraint_sources():
    from microgrid.limits.choices import ConstraintSource

    assert list(codes.LIMIT_SOURCE_TO_REASON) == list(ConstraintSource.values)
