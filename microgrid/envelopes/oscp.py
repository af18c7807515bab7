"""OSCP 2.0 message bodies and headers: checked and read into plain values (pure: no ORM,
no clock).

Exact where OSCP is exact (enums, required fields, times with offsets in forecasts), tolerant
where real peers differ (unknown fields are ignored and kept in the stored raw body, an
empty required_behaviour, a heartbeat time without offset read as UTC and noted). Every
problem of a body is reported at once as OSCP_MESSAGE_INVALID (400) with one FIELD_INVALID
entry per bad field, so a refused message changes nothing and its sender learns everything
that was wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_datetime, check_id, is_number
from microgrid.envelopes.choices import (
    ENERGY_UNITS,
    PER_PHASE,
    CapacityUnit,
    ForecastType,
    MeasurementConfiguration,
    Phase,
)
from microgrid.envelopes.models import MAX_CAPACITY_KW

VERSION = "2.0"
MAX_BLOCKS = 1000
MAX_HEADER_LENGTH = 128
MAX_SEGMENTS = 100
# A heartbeat interval this long is no heartbeat; it only guards the datetime maths.
MAX_HEARTBEAT_INTERVAL_S = 10_000_000
# A number this large is no capacity any grid has; it only guards the float maths.
MAX_RAW_CAPACITY = 1e13
NOT_CAPACITY_UNITS = ("EUR", "EUR/KWH")  # in pyoscp's enum; prices are no capacity


@dataclass(frozen=True)
class Block:
    index: int
    capacity: float
    phase: str
    unit: str
    start: datetime
    end: datetime

    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


@dataclass(frozen=True)
class Forecast:
    group_id: str
    forecast_type: str
    blocks: tuple[Block, ...]  # empty: the peer withdraws its forecast of this group and type


@dataclass(frozen=True)
class Handshake:
    heartbeat_interval: int | None
    measurement_configuration: tuple[str, ...]
    behaviour: dict[str, Any]  # as stored on the peer


@dataclass(frozen=True)
class Register:
    token: str
    base_url: str  # of the version both speak ("2.0")
    versions: tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    index: int
    count: int


def invalid(errors: list[ErrorItem], what: str = "message") -> DomainError:
    return DomainError(
        "OSCP_MESSAGE_INVALID",
        f"The OSCP {what} is invalid: {len(errors)} problem(s); first: {errors[0].message}",
        errors=errors,
        status=400,
    )


def _problem(field: str, message: str) -> ErrorItem:
    return ErrorItem("FIELD_INVALID", f"{field} {message}", field=field)


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise DomainError("MALFORMED_REQUEST", "The body must be a JSON object", status=400)
    return data


def _finite(value: Any) -> float | None:
    """A finite JSON number as a float, else None (a 400-digit integer is not finite here)."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def body_hash(data: Any) -> str:
    """SHA-256 of the canonical JSON: the same message re-serialised is the same body."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- headers ------------------------------------------------------------------------------------


def _header_text(name: str, value: Any, required: bool, errors: list[ErrorItem]) -> str:
    text = (value or "").strip()
    if not text:
        if required:
            errors.append(_problem(name, "header is required"))
    elif len(text) > MAX_HEADER_LENGTH or any(ord(c) < 32 or ord(c) > 126 for c in text):
        errors.append(
            _problem(name, f"must be at most {MAX_HEADER_LENGTH} printable ASCII characters")
        )
    return text


def check_headers(request_id: Any, correlation_id: Any) -> tuple[str, str]:
    """X-Request-ID is required; X-Correlation-ID is optional."""
    errors: list[ErrorItem] = []
    rid = _header_text("X-Request-ID", request_id, True, errors)
    cid = _header_text("X-Correlation-ID", correlation_id, False, errors)
    if errors:
        raise invalid(errors, "request headers")
    return rid, cid


def check_segment_headers(index: Any, count: Any, correlation_id: str) -> Segment | None:
    """X-Segment-Index / X-Segment-Count: both or neither; whole numbers, count 1 to 100,
    the index 0 to count (peers number from 0 or from 1; a set holds count distinct ones);
    an X-Correlation-ID names the set. A count of 1 is an unsegmented message."""
    raw_index = (index or "").strip()
    raw_count = (count or "").strip()
    if not raw_index and not raw_count:
        return None
    errors: list[ErrorItem] = []
    values = {}
    for name, raw in (("X-Segment-Index", raw_index), ("X-Segment-Count", raw_count)):
        if not raw:
            errors.append(_problem(name, "header is required with the other segment header"))
        elif not (raw.isascii() and raw.isdigit()) or len(raw) > 4:
            errors.append(_problem(name, "must be a whole number"))
        else:
            values[name] = int(raw)
    number, total = values.get("X-Segment-Index"), values.get("X-Segment-Count")
    if total is not None and not 1 <= total <= MAX_SEGMENTS:
        errors.append(_problem("X-Segment-Count", f"must be from 1 to {MAX_SEGMENTS}"))
    elif number is not None and total is not None and number > total:
        errors.append(_problem("X-Segment-Index", "must not be more than X-Segment-Count"))
    if not correlation_id:
        errors.append(_problem("X-Correlation-ID", "header is required with segment headers"))
    if errors:
        raise invalid(errors, "request headers")
    if total == 1:
        return None
    return Segment(index=number, count=total)


# -- times --------------------------------------------------------------------------------------


def _datetime(value: Any, field: str, errors: list[ErrorItem]) -> datetime | None:
    try:
        return check_datetime(value)
    except FieldProblem as exc:
        errors.append(_problem(field, str(exc)))
        return None


def lenient_datetime(value: Any) -> tuple[datetime, bool]:
    """An ISO 8601 time; one without an offset is taken as UTC -> (time, assumed_utc)."""
    try:
        return check_datetime(value), False
    except FieldProblem:
        if not isinstance(value, str):
            raise
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise FieldProblem("must be an ISO 8601 timestamp") from None
        if parsed.tzinfo is not None or not 1970 <= parsed.year <= 2200:
            raise FieldProblem("is out of range") from None
        return parsed.replace(tzinfo=UTC), True


def iso(at: datetime) -> str:
    """How this product writes OSCP times: UTC with an offset and milliseconds."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


# -- update_group_capacity_forecast -------------------------------------------------------------


def parse_forecast(data: Any) -> Forecast:
    """{group_id, type, forecasted_blocks: [...]}; an empty list withdraws."""
    data = _object(data)
    errors: list[ErrorItem] = []
    group_id = forecast_type = None
    try:
        group_id = check_id(data.get("group_id"), "group_id")
    except FieldProblem as exc:
        errors.append(ErrorItem("FIELD_INVALID", str(exc), field="group_id"))
    raw_type = data.get("type")
    if raw_type not in ForecastType.values:
        errors.append(_problem("type", f"must be one of {', '.join(ForecastType.values)}"))
    else:
        forecast_type = raw_type
    raw_blocks = data.get("forecasted_blocks")
    blocks: list[Block] = []
    if not isinstance(raw_blocks, list):
        errors.append(_problem("forecasted_blocks", "must be a list of blocks (empty: withdraw)"))
    elif len(raw_blocks) > MAX_BLOCKS:
        errors.append(_problem("forecasted_blocks", f"must hold at most {MAX_BLOCKS} blocks"))
    else:
        for i, raw in enumerate(raw_blocks):
            block = _block(raw, i, errors)
            if block is not None:
                blocks.append(block)
        errors.extend(overlaps(blocks))
    if errors:
        raise invalid(errors)
    return Forecast(group_id=group_id, forecast_type=forecast_type, blocks=tuple(blocks))


def _block(raw: Any, i: int, errors: list[ErrorItem]) -> Block | None:
    prefix = f"forecasted_blocks[{i}]."
    if not isinstance(raw, dict):
        errors.append(_problem(f"forecasted_blocks[{i}]", "must be an object"))
        return None
    found = len(errors)
    capacity = _finite(raw.get("capacity"))
    if capacity is None:
        errors.append(_problem(f"{prefix}capacity", "must be a finite number"))
    elif capacity < 0:
        errors.append(_problem(f"{prefix}capacity", "must not be negative (0 means pause)"))
    elif capacity > MAX_RAW_CAPACITY:
        errors.append(_problem(f"{prefix}capacity", "is out of range"))
    phase, unit = raw.get("phase"), raw.get("unit")
    if phase not in Phase.values:
        errors.append(_problem(f"{prefix}phase", f"must be one of {', '.join(Phase.values)}"))
    if unit in NOT_CAPACITY_UNITS:
        errors.append(_problem(f"{prefix}unit", f"{unit} is a price, not a capacity"))
    elif unit not in CapacityUnit.values:
        errors.append(_problem(f"{prefix}unit", f"must be one of {', '.join(CapacityUnit.values)}"))
    start = _datetime(raw.get("start_time"), f"{prefix}start_time", errors)
    end = _datetime(raw.get("end_time"), f"{prefix}end_time", errors)
    if start is not None and end is not None and end <= start:
        errors.append(_problem(f"{prefix}end_time", "must be after start_time"))
    if len(errors) > found:
        return None
    return Block(index=i, capacity=capacity, phase=phase, unit=unit, start=start, end=end)


def overlaps(blocks: list[Block] | tuple[Block, ...]) -> list[ErrorItem]:
    """Blocks of one message and one phase must not overlap: which one would hold would be a
    guess. Blocks of different phases in one window are per-phase values, not overlaps."""
    out = []
    ordered = sorted(blocks, key=lambda b: (b.phase, b.start, b.index))
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.phase == before.phase and after.start < before.end:
            out.append(
                _problem(
                    f"forecasted_blocks[{after.index}].start_time",
                    f"overlaps forecasted_blocks[{before.index}] (phase {after.phase})",
                )
            )
    return out


def _g(x: float) -> str:
    return f"{round(x, 3):g}"


def capacity_kw(block: Block, *, voltage_v: float | None, phases: int | None) -> tuple[float, str]:
    """The effective capacity in kW on the scope's node, and how it was worked out.

    W / 1000; KW as is; A x voltage_v per phase; WH and KWH are energy over the block:
    average power = energy / the block's hours. A block for one phase (ONE, TWO, THREE) is
    a per-phase value: until the per-phase model exists it is enforced conservatively on
    the whole node as value x the node's phases (with several phases in one window the
    smallest applies, being the smallest envelope). A in ALL / UNKNOWN is a per-phase
    current on every phase, as before.
    """
    unit = block.unit
    if unit == CapacityUnit.KW:
        kw, how = block.capacity, f"{_g(block.capacity)} KW"
    elif unit == CapacityUnit.W:
        kw, how = block.capacity / 1000, f"{_g(block.capacity)} W / 1000"
    elif unit in ENERGY_UNITS:
        energy_kwh = block.capacity / 1000 if unit == CapacityUnit.WH else block.capacity
        kw = energy_kwh / block.hours()
        how = f"{_g(block.capacity)} {unit} over {_g(block.hours())} h (average power)"
    else:
        if voltage_v is None or phases is None:
            raise ValueError("A needs the node's voltage and phases")
        kw, how = block.capacity * voltage_v / 1000, f"{_g(block.capacity)} A x {_g(voltage_v)} V"
    if block.phase in PER_PHASE:
        if phases is None:
            raise ValueError("a per-phase block needs the node's phases")
        total = kw * phases
        note = (
            f"phase {block.phase}: {how} = {_g(kw)} kW on one phase; enforced on the whole "
            f"node as {_g(kw)} kW x {phases} phases = {_g(total)} kW (per-phase values are "
            "applied conservatively to the node until per-phase limits exist)"
        )
        return round(total, 3), note
    if unit == CapacityUnit.A:
        total = kw * phases
        return round(total, 3), f"{how} x {phases} phases / 1000 = {_g(total)} kW"
    return round(kw, 3), f"{how} = {_g(kw)} kW"


def needs_node(block: Block) -> bool:
    """A in any phase and any per-phase value need the node's voltage / phases."""
    return block.unit == CapacityUnit.A or block.phase in PER_PHASE


def check_capacity(block: Block, kw: float) -> ErrorItem | None:
    if kw > MAX_CAPACITY_KW:
        return _problem(
            f"forecasted_blocks[{block.index}].capacity",
            f"is {kw:g} kW, more than {MAX_CAPACITY_KW:g} kW",
        )
    return None


# -- heartbeat, handshake, register -------------------------------------------------------------


def parse_heartbeat(data: Any) -> tuple[datetime, list[str]]:
    """{offline_mode_at}; a time without offset (pyoscp sends local time without one) is
    taken as UTC, and the returned notes say so."""
    data = _object(data)
    raw = data.get("offline_mode_at")
    try:
        at, assumed = lenient_datetime(raw)
    except FieldProblem as exc:
        raise invalid([_problem("offline_mode_at", str(exc))]) from None
    notes = [f"offline_mode_at {raw!r} had no UTC offset: taken as UTC"] if assumed else []
    return at, notes


def parse_handshake(data: Any) -> Handshake:
    """{required_behaviour: {heartbeat_interval?, measurement_configuration?}}; the behaviour
    may be empty or absent, the interval any whole number >= 1 of seconds."""
    data = _object(data)
    errors: list[ErrorItem] = []
    behaviour = data.get("required_behaviour")
    if behaviour is None:
        behaviour = {}
    interval = None
    configuration: tuple[str, ...] = ()
    prefix = "required_behaviour."
    if not isinstance(behaviour, dict):
        errors.append(_problem("required_behaviour", "must be an object"))
    else:
        raw_interval = behaviour.get("heartbeat_interval")
        if raw_interval is not None:
            number = _finite(raw_interval)
            if (
                number is None
                or number != int(number)
                or not 1 <= number <= MAX_HEARTBEAT_INTERVAL_S
            ):
                errors.append(
                    _problem(
                        f"{prefix}heartbeat_interval",
                        f"must be a whole number of seconds from 1 to {MAX_HEARTBEAT_INTERVAL_S}",
                    )
                )
            else:
                interval = int(number)
        raw_configuration = behaviour.get("measurement_configuration")
        allowed = MeasurementConfiguration.values
        if raw_configuration is not None:
            if not isinstance(raw_configuration, list) or any(
                c not in allowed for c in raw_configuration
            ):
                errors.append(
                    _problem(
                        f"{prefix}measurement_configuration",
                        f"must be a list of {', '.join(allowed)}",
                    )
                )
            else:
                configuration = tuple(raw_configuration)
    if errors:
        raise invalid(errors)
    stored: dict[str, Any] = {}
    if interval is not None:
        stored["heartbeat_interval"] = interval
    stored["measurement_configuration"] = list(configuration)
    return Handshake(interval, configuration, stored)


def _http_url(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 300:
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (a bad port raises here, not later when sending)
    except ValueError:  # "http://[" and the like
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def parse_register(data: Any) -> Register:
    """{token, version_url: [{version, base_url}]}: the CP's token for us and the versions
    it speaks; this product speaks 2.0 only."""
    data = _object(data)
    errors: list[ErrorItem] = []
    token = data.get("token")
    if (
        not isinstance(token, str)
        or not 16 <= len(token.strip()) <= 256
        or any(not 33 <= ord(c) <= 126 for c in token.strip())
    ):
        errors.append(_problem("token", "must be 16 to 256 printable ASCII characters"))
    urls = data.get("version_url")
    versions: list[str] = []
    base_url = None
    if not isinstance(urls, list) or not urls:
        errors.append(_problem("version_url", "must be a non-empty list of {version, base_url}"))
    else:
        for i, entry in enumerate(urls):
            if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
                errors.append(_problem(f"version_url[{i}]", "must be {version, base_url}"))
                continue
            versions.append(entry["version"])
            if entry["version"] == VERSION:
                if _http_url(entry.get("base_url")):
                    base_url = entry["base_url"].rstrip("/")
                else:
                    errors.append(_problem(f"version_url[{i}].base_url", "must be an http(s) URL"))
        if not errors and base_url is None:
            errors.append(_problem("version_url", f"must offer version {VERSION}"))
    if errors:
        raise invalid(errors)
    return Register(token=token.strip(), base_url=base_url, versions=tuple(versions))


def masked(data: dict[str, Any]) -> dict[str, Any]:
    """A register body as stored: its token masked (the raw message is shown to staff)."""
    out = dict(data)
    if isinstance(out.get("token"), str):
        out["token"] = out["token"][:4] + "..." if len(out["token"]) > 4 else "..."
    return out
