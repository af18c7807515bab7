"""How a batch's targets and a receiver's held setpoints are stored: compact JSON text in one
column (parallel arrays), written and read with orjson. A 2,000-charger cycle's batch is one
value of about 40 KB, not 2,000 rows; text, not jsonb, because nothing queries inside it and
PostgreSQL parsing it into jsonb cost as much as the rest of the write."""

from __future__ import annotations

from typing import Any

from microgrid.common import jsonfast


def pack_targets(chargers: list[tuple[str, float, bool]], budgets: list[list[Any]]) -> str:
    """`chargers` as (asset_id, limit_kw, sent), in asset_id order; `budgets` as
    [scope, budget_kw]."""
    return pack_columns(
        [c[0] for c in chargers],
        [c[1] for c in chargers],
        "".join("1" if c[2] else "0" for c in chargers),
        budgets,
    )


def pack_columns(ids: list[str], kw: list[float], send: str, budgets: list[list[Any]]) -> str:
    """The same from its columns (what the outbox builds: no tuple per charger): `send` has a
    "1" (sent) or "0" (only renewed) per charger."""
    return jsonfast.dumps({"ids": ids, "kw": kw, "send": send, "budgets": budgets}).decode()


def unpack_targets(text: str) -> tuple[list[tuple[str, float, bool]], list[list[Any]]]:
    data = jsonfast.loads(text)
    chargers = [
        (asset_id, kw, flag == "1")
        for asset_id, kw, flag in zip(data["ids"], data["kw"], data["send"], strict=True)
    ]
    return chargers, data["budgets"]


def pack_held(held: dict[str, float]) -> str:
    return jsonfast.dumps(held).decode()


def unpack_held(text: str) -> dict[str, float]:
    return jsonfast.loads(text) if text else {}
