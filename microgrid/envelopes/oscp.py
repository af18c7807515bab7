"""OSCP 2.0 message bodies: checked and read into plain values (pure: no ORM, no clock).

Every problem of a body is reported at once as OSCP_MESSAGE_INVALID (400)
with one FIELD_INVALID entry per bad field, so a refused message changes
nothing and its sender learns everything that was wrong with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import FieldProblem, check_datetime, check_id, is_number
from microgrid.envelopes.choices import CapacityUnit, ForecastType, MeasurementConfiguration, Phase
from microgrid.envelopes.models import MAX_CAPACITY_KW

MAX_BLOCKS = 1000
MAX_HEADER_LENGTH = 128
# A number this large is no capacity any grid has; it only guards the float maths.
MAX_RAW_CAPACITY = 1e13

FORECAST_FIELDS = ("group_id", "type", "forecasted_blocks")
BLOCK_FIELDS = ("capacity", "phase", "unit", "start_time", "end_time")


@dataclass(frozen=True)
class Block:
    index: int
    capacity: float
    phase: str
    unit: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Forecast:
    group_id: str
    forecast_type: str
    blocks: tuple[Block, ...]


def invalid(errors: list[ErrorItem], what: str = "message") -> DomainError:
    return DomainError(
        "OSCP_MESSAGE_INVALID",
        f"The OSCP {what} is invalid: {len(errors)} problem(s); first: {errors[0].message}",
        errors=errors,
        status=400,
    )


def _problem(field: str, message: str) -> ErrorItem:
    return ErrorItem("FIELD_INVALID", f"{field} {message}", field=field)


def _unknown(data: dict[str, Any], known, prefix: str = "") -> list[ErrorItem]:
    return [
        _problem(f"{prefix}{key}", "is not a field of this message")
        for key in sorted(set(data) - set(known), key=str)
    ]


def _finite(value: Any) -> float | None:
    """A finite JSON number as a float, else None (a 400-digit integer is not finite here)."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_headers(request_id: Any, correlation_id: Any) -> tuple[str, str]:
    """X-Request-ID is required; X-Correlation-ID is optional."""
    errors: list[ErrorItem] = []
    values = []
    for name, value, required in (
        ("X-Request-ID", request_id, True),
        ("X-Correlation-ID", correlation_id, False),
    ):
        text = (value or "").strip()
        if not text:
            if required:
                errors.append(_problem(name, "header is required"))
        elif len(text) > MAX_HEADER_LENGTH or any(ord(c) < 32 or ord(c) > 126 for c in text):
            errors.append(
                _problem(name, f"must be at most {MAX_HEADER_LENGTH} printable ASCII characters")
            )
        values.append(text)
    if errors:
        raise invalid(errors, "request headers")
    return values[0], values[1]


def parse_forecast(data: Any) -> Forecast:
    """An UpdateGroupCapacityForecast body: {group_id, type, forecasted_blocks: [...]}."""
    if not isinstance(data, dict):
        raise DomainError("MALFORMED_REQUEST", "The body must be a JSON object", status=400)
    errors = _unknown(data, FORECAST_FIELDS)
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
    if not isinstance(raw_blocks, list) or not raw_blocks:
        errors.append(_problem("forecasted_blocks", "must be a non-empty list of blocks"))
    elif len(raw_blocks) > MAX_BLOCKS:
        errors.append(_problem("forecasted_blocks", f"must hold at most {MAX_BLOCKS} blocks"))
    else:
        for i, raw in enumerate(raw_blocks):
            block = _block(raw, i, errors)
            if block is not None:
                blocks.append(block)
        errors.extend(_overlaps(blocks))
    if errors:
        raise invalid(errors)
    return Forecast(group_id=group_id, forecast_type=forecast_type, blocks=tuple(blocks))


def _block(raw: Any, i: int, errors: list[ErrorItem]) -> Block | None:
    prefix = f"forecasted_blocks[{i}]."
    if not isinstance(raw, dict):
        errors.append(_problem(f"forecasted_blocks[{i}]", "must be an object"))
        return None
    found = len(errors)
    errors.extend(_unknown(raw, BLOCK_FIELDS, prefix))
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
    if unit not in CapacityUnit.values:
        errors.append(_problem(f"{prefix}unit", f"must be one of {', '.join(CapacityUnit.values)}"))
    times = {}
    for name in ("start_time", "end_time"):
        try:
            times[name] = check_datetime(raw.get(name))
        except FieldProblem as exc:
            errors.append(_problem(f"{prefix}{name}", str(exc)))
    if len(times) == 2 and times["end_time"] <= times["start_time"]:
        errors.append(_problem(f"{prefix}end_time", "must be after start_time"))
    if len(errors) > found:
        return None
    return Block(
        index=i,
        capacity=capacity,
        phase=phase,
        unit=unit,
        start=times["start_time"],
        end=times["end_time"],
    )


def _overlaps(blocks: list[Block]) -> list[ErrorItem]:
    """Blocks of one message must not overlap: which one would hold would be a guess."""
    out = []
    ordered = sorted(blocks, key=lambda b: (b.start, b.index))
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.start < before.end:
            out.append(
                _problem(
                    f"forecasted_blocks[{after.index}].start_time",
                    f"overlaps forecasted_blocks[{before.index}]",
                )
            )
    return out


def capacity_kw(block: Block, *, voltage_v: float | None, phases: int | None) -> float:
    """The effective capacity in kW: W / 1000; KW as is; A x voltage_v x phases / 1000.

    A is a per-phase current limit on every phase of the scope's node (the
    root for a MICROGRID scope); `phase` does not change the conversion.
    """
    if block.unit == CapacityUnit.KW:
        value = block.capacity
    elif block.unit == CapacityUnit.W:
        value = block.capacity / 1000
    else:
        if voltage_v is None or phases is None:
            raise ValueError("A needs the node's voltage and phases")
        value = block.capacity * voltage_v * phases / 1000
    return round(value, 3)


def check_capacity(block: Block, kw: float) -> ErrorItem | None:
    if kw > MAX_CAPACITY_KW:
        return _problem(
            f"forecasted_blocks[{block.index}].capacity",
            f"is {kw:g} kW, more than {MAX_CAPACITY_KW:g} kW",
        )
    return None


def parse_heartbeat(data: Any) -> datetime:
    """A Heartbeat body: {offline_mode_at}."""
    if not isinstance(data, dict):
        raise DomainError("MALFORMED_REQUEST", "The body must be a JSON object", status=400)
    errors = _unknown(data, ("offline_mode_at",))
    at = None
    try:
        at = check_datetime(data.get("offline_mode_at"))
    except FieldProblem as exc:
        errors.append(_problem("offline_mode_at", str(exc)))
    if errors:
        raise invalid(errors)
    return at


def parse_handshake(data: Any) -> dict[str, Any]:
    """A Handshake body: {required_behaviour: {heartbeat_interval?, measurement_configuration}}."""
    if not isinstance(data, dict):
        raise DomainError("MALFORMED_REQUEST", "The body must be a JSON object", status=400)
    errors = _unknown(data, ("required_behaviour",))
    behaviour = data.get("required_behaviour")
    out: dict[str, Any] = {}
    if not isinstance(behaviour, dict):
        errors.append(_problem("required_behaviour", "must be an object"))
    else:
        prefix = "required_behaviour."
        errors.extend(
            _unknown(behaviour, ("heartbeat_interval", "measurement_configuration"), prefix)
        )
        raw_interval = behaviour.get("heartbeat_interval")
        if raw_interval is not None:
            interval = _finite(raw_interval)
            if interval is None or not 0 < interval <= 86400:
                errors.append(
                    _problem(
                        f"{prefix}heartbeat_interval", "must be a number of seconds (0, 86400]"
                    )
                )
            else:
                out["heartbeat_interval"] = raw_interval
        configuration = behaviour.get("measurement_configuration")
        allowed = MeasurementConfiguration.values
        if not isinstance(configuration, list) or any(c not in allowed for c in configuration):
            errors.append(
                _problem(
                    f"{prefix}measurement_configuration",
                    f"must be a list of {', '.join(allowed)}",
                )
            )
        else:
            out["measurement_configuration"] = list(configuration)
    if errors:
        raise invalid(errors)
    return out
