"""Checks of untrusted JSON values, shared by every validator.

Each checker returns the cleaned value or raises `FieldProblem`, which the
caller turns into a FIELD_INVALID error naming the field.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

# The constants of the API contract, defined once: the serializers, the URL converter, the
# OpenAPI document, the models' check constraints and the Manage forms import them from here.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
# Python: \Z, not $: "$" also matches before a trailing newline, which would let "MG-1\n" in.
ID_RE = re.compile(rf"^{ID_PATTERN}\Z")
# JSON Schema (ECMA 262, no multiline flag): "$" matches only at the end of the input, the
# same semantics as Python's \Z above.
ID_SCHEMA_PATTERN = rf"^{ID_PATTERN}$"
# Every power (kW) the API accepts is at most this in magnitude: limits, ratings, envelope
# capacities, legacy configured capacities, telemetry readings.
MAX_KW = 1e7
# Every current the API accepts (per phase, A) is at most this.
MAX_A = 1e5
# Text fields: trimmed, not blank, no control characters (check_text), as a JSON Schema pattern.
TEXT_SCHEMA_PATTERN = r"^[^\u0000-\u001f]*\S[^\u0000-\u001f]*$"
TEXT_MAX_LENGTH = 200
# List endpoints: `limit` is a whole number from 1 to this.
MAX_LIST_LIMIT = 1000


class FieldProblem(ValueError):
    pass


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


ID_PROBLEM = (
    "must be a string of 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit"
)


def check_id(value: Any, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise FieldProblem(f"{what} {ID_PROBLEM}")
    return value


def check_id_value(value: Any) -> str:
    """An id; the problem's text does not name the field (the caller does)."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise FieldProblem(ID_PROBLEM)
    return value


def check_kw(
    value: Any,
    *,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    maximum: float = MAX_KW,
) -> float:
    """A power in kW: a finite JSON number, rounded to 3 decimals (spec units)."""
    if not is_number(value):
        raise FieldProblem("must be a number")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        raise FieldProblem("must be finite") from None
    if not math.isfinite(number):
        raise FieldProblem("must be finite")
    number = round(number, 3)
    if exclusive_minimum is not None and number <= exclusive_minimum:
        raise FieldProblem(f"must be greater than {exclusive_minimum:g}")
    if minimum is not None and number < minimum:
        raise FieldProblem(f"must be at least {minimum:g}")
    if abs(number) > maximum:
        raise FieldProblem(f"must be at most {maximum:g} in magnitude")
    return number


def check_amps(
    value: Any, *, minimum: float | None = None, exclusive_minimum: float | None = None
) -> float:
    """A current per phase in A: a finite JSON number, 3 decimals, at most MAX_A."""
    return check_kw(value, minimum=minimum, exclusive_minimum=exclusive_minimum, maximum=MAX_A)


def check_int(value: Any, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldProblem("must be an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise FieldProblem("must be an integer")
        value = int(value)
    if not minimum <= value <= maximum:
        raise FieldProblem(f"must be between {minimum} and {maximum}")
    return value


def check_text(value: Any, *, max_length: int = TEXT_MAX_LENGTH, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise FieldProblem("must be a string")
    value = value.strip()
    if not value and not allow_empty:
        raise FieldProblem("must not be empty")
    if len(value) > max_length:
        raise FieldProblem(f"must be at most {max_length} characters")
    if any(ord(c) < 32 for c in value):
        raise FieldProblem("must not contain control characters")
    return value


def check_choice(value: Any, choices) -> str:
    allowed = [str(c) for c in choices]
    if not isinstance(value, str) or value not in allowed:
        raise FieldProblem(f"must be one of {', '.join(allowed)}")
    return value


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldProblem("must be true or false")
    return value


def contains_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character in any string or key (PostgreSQL's text and
    jsonb cannot store one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


def check_datetime(value: Any) -> datetime:
    """An ISO 8601 timestamp with an offset (naive times are ambiguous: refused)."""
    if not isinstance(value, str):
        raise FieldProblem("must be an ISO 8601 timestamp string")
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise FieldProblem("must be an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise FieldProblem("must carry a UTC offset")
    if not 1970 <= parsed.year <= 2200:
        raise FieldProblem("is out of range")
    return parsed


# An unencoded "+" of a UTC offset arrives in a query string as a space ("...T12:00:00 01:00"):
# it is read as the "+" the client meant. Only a space directly before a trailing offset is.
_PLUS_AS_SPACE = re.compile(r" (\d{2}(?::?\d{2})?)\Z")


def check_query_time(raw: str) -> datetime:
    """The one reading of a time query parameter (`since`, `at`, `until`): `check_datetime`
    after restoring a "+" that arrived as a space."""
    return check_datetime(_PLUS_AS_SPACE.sub(r"+\1", raw.strip()))


def check_list_limit(raw: str) -> int:
    """A `limit` query parameter: a whole number (ASCII digits) from 1 to MAX_LIST_LIMIT."""
    # isdigit() alone lets "²" through, which int() refuses.
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise FieldProblem(f"must be a whole number from 1 to {MAX_LIST_LIMIT}")
    return int(text)
