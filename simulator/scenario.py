"""The `scenario:` section of a depot profile (spec 8.2): parsed and checked whole, without writing.

`parse_scenario(value, profile)` returns the scenario as frozen dataclasses and
every problem at once (the API's codes: PROFILE_INVALID for unknown fields,
FIELD_INVALID for bad values, ASSET_NOT_FOUND / NODE_NOT_FOUND /
CIRCUIT_NOT_FOUND for references that name nothing in the profile). All times
are whole seconds from `start`; windows are half-open `[from_s, until_s)`.

Request bodies are sent as written, apart from the `*_s` times converted to
timestamps (see `simulator.requests`): the API validates them and its answer is
recorded, so a scenario can exercise refusals on purpose. What the simulator
itself needs (kinds, times, circuit ids, peer names, scopes) is checked here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from microgrid.common.errors import ErrorItem
from microgrid.common.fields import FieldProblem, check_datetime, check_id, check_int, is_number
from microgrid.topology.tree import subtree_ids

SECTION = "scenario"
MAX_DURATION_S = 31 * 24 * 3600
MAX_STEPS = 100_000
MAX_SESSIONS = 100_000
MAX_ENERGY_KWH = 100_000.0
MAX_KW = 1e6

SCENARIO_FIELDS = (
    "seed",
    "start",
    "duration_s",
    "step_s",
    "sessions",
    "random_sessions",
    "loads",
    "degradations",
    "requests",
    "report_sessions",
)
SESSION_FIELDS = ("asset_id", "arrive_s", "depart_s", "energy_kwh", "max_power_kw", "phases")
RANDOM_FIELDS = ("count", "arrive_s", "dwell_s", "energy_kwh", "max_power_kw", "chargers")
LOAD_FIELDS = {
    "SITE_LOAD": ("asset_id", "base_kw", "peak_kw", "peak_at", "noise_kw"),
    "BATTERY": ("asset_id", "base_kw", "peak_kw", "peak_at", "noise_kw"),
    "PV": ("asset_id", "peak_kw", "peak_at", "noise_kw", "daylight_h"),
}
DEGRADATION_FIELDS = ("target", "kind", "from_s", "until_s")
DEGRADATION_KINDS = ("MISSING", "STALE")

# kind -> (required fields, optional fields) besides at_s and kind
REQUEST_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "REBALANCE": ((), ("scope",)),
    "LEGACY_REBALANCE": (("circuit_id",), ()),
    "LEGACY_TOU_WRITE": (("circuit_id", "body"), ()),
    "OSCP_FORECAST": (("peer", "body"), ()),
    "OSCP_HEARTBEAT": (("peer", "offline_mode_at_s"), ()),
    "OSCP_HANDSHAKE": (("peer", "body"), ()),
    "CAPABILITY_EVENT": (("body",), ()),
}

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True)
class Session:
    asset_id: str
    arrive_s: int
    depart_s: int
    energy_kwh: float
    max_power_kw: float | None  # None: the charger's own maximum
    origin: str  # "sessions[2]" or "random_sessions[7]"
    phases: int | None = None  # the EV's phases (1 or 3); None: as many as the charger has


@dataclass(frozen=True)
class RandomSessions:
    count: int
    arrive_s: tuple[int, int]
    dwell_s: tuple[int, int]
    energy_kwh: tuple[float, float]
    max_power_kw: tuple[float, float] | None
    chargers: tuple[str, ...]  # empty: every charger


@dataclass(frozen=True)
class LoadCurve:
    asset_id: str
    kind: str  # SITE_LOAD | BATTERY | PV
    base_kw: float
    peak_kw: float
    peak_at_h: float  # local time of day of the peak, in hours
    noise_kw: float
    daylight_h: float


@dataclass(frozen=True)
class Degradation:
    target: str
    kind: str  # MISSING | STALE
    from_s: int
    until_s: int
    asset_ids: tuple[str, ...]  # the target, or every asset in the target node's subtree

    def covers(self, t: float) -> bool:
        return self.from_s <= t < self.until_s


@dataclass(frozen=True)
class Request:
    index: int  # position in the profile's list (ties at one time keep this order)
    at_s: int
    kind: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    seed: int
    start: datetime
    duration_s: int
    step_s: int
    sessions: tuple[Session, ...]
    random_sessions: RandomSessions | None
    loads: tuple[LoadCurve, ...]
    degradations: tuple[Degradation, ...]
    requests: tuple[Request, ...]
    # The simulated integration reports each EV's departure and energy need when it plugs in
    # (PUT .../chargers/{asset_id}/session/), as a depot's fleet system would (issue 20).
    report_sessions: bool = False

    def step_times(self) -> range:
        return range(0, self.duration_s, self.step_s)


@dataclass
class _Facts:
    """What the scenario may refer to, read tolerantly from the raw profile."""

    asset_kind: dict[str, str]
    asset_node: dict[str, str]
    node_pairs: list[tuple[str, str | None]]
    circuits: set[str]
    peers: set[str]

    @property
    def node_ids(self) -> set[str]:
        return {n for n, _ in self.node_pairs}


def _facts(profile: dict[str, Any]) -> _Facts:
    def rows(name: str) -> list[dict[str, Any]]:
        value = profile.get(name)
        return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []

    asset_kind: dict[str, str] = {}
    asset_node: dict[str, str] = {}
    for a in rows("assets"):
        if isinstance(a.get("asset_id"), str):
            asset_kind.setdefault(a["asset_id"], str(a.get("kind")))
            asset_node.setdefault(a["asset_id"], str(a.get("node_id")))
    pairs = [
        (n["node_id"], n.get("parent_id") if isinstance(n.get("parent_id"), str) else None)
        for n in rows("nodes")
        if isinstance(n.get("node_id"), str)
    ]
    circuits = {
        c["circuit_id"] for c in rows("legacy_circuits") if isinstance(c.get("circuit_id"), str)
    }
    peers = {p["name"] for p in rows("oscp_peers") if isinstance(p.get("name"), str)}
    return _Facts(asset_kind, asset_node, pairs, circuits, peers)


class _Checker:
    """Collects problems; each `take_*` returns the clean value or None."""

    def __init__(self) -> None:
        self.errors: list[ErrorItem] = []

    def bad(self, field: str, message: str, code: str = "FIELD_INVALID", **ids: str) -> None:
        self.errors.append(ErrorItem(code, f"{field} {message}", field=field, **ids))

    def unknown(self, raw: dict, known, prefix: str) -> None:
        for key in sorted(set(raw) - set(known), key=str):
            self.errors.append(
                ErrorItem(
                    "PROFILE_INVALID",
                    f"{prefix}.{key} is not a known field (known: {', '.join(known)})",
                    field=f"{prefix}.{key}",
                )
            )

    def mapping(self, value: Any, field: str) -> dict | None:
        if not isinstance(value, dict):
            self.bad(field, "must be a mapping")
            return None
        return value

    def seconds(
        self, raw: dict, key: str, prefix: str, *, minimum: int = 0, maximum: int = MAX_DURATION_S
    ) -> int | None:
        if key not in raw:
            self.bad(f"{prefix}.{key}", "is required")
            return None
        try:
            return check_int(raw[key], minimum=minimum, maximum=maximum)
        except FieldProblem as exc:
            self.bad(f"{prefix}.{key}", f"{exc} (whole seconds)")
            return None

    def number(
        self,
        raw: dict,
        key: str,
        prefix: str,
        *,
        required: bool = True,
        default: float | None = None,
        minimum: float | None = 0.0,
        positive: bool = False,
        maximum: float = MAX_KW,
    ) -> float | None:
        if key not in raw:
            if required:
                self.bad(f"{prefix}.{key}", "is required")
            return default
        value = raw[key]
        if not is_number(value) or value != value or abs(float(value)) > maximum:
            self.bad(f"{prefix}.{key}", f"must be a finite number of at most {maximum:g}")
            return None
        value = float(value)
        if positive and value <= 0:
            self.bad(f"{prefix}.{key}", "must be greater than 0")
            return None
        if minimum is not None and value < minimum:
            self.bad(f"{prefix}.{key}", f"must be at least {minimum:g}")
            return None
        return value

    def pair(
        self, raw: dict, key: str, prefix: str, *, integer: bool, positive: bool = False
    ) -> tuple[Any, Any] | None:
        value = raw.get(key)
        field = f"{prefix}.{key}"
        if key not in raw:
            self.bad(field, "is required: [low, high]")
            return None
        ok = isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)
        if ok and integer:
            ok = all(float(v).is_integer() for v in value)
        if not ok:
            self.bad(field, f"must be [low, high] ({'whole seconds' if integer else 'numbers'})")
            return None
        lo, hi = (int(v) if integer else float(v) for v in value)
        if lo > hi or lo < 0 or (positive and lo <= 0) or hi > MAX_DURATION_S * 10:
            self.bad(
                field,
                "must be [low, high] with 0 <= low <= high" + (" and low > 0" if positive else ""),
            )
            return None
        return lo, hi


def check_scenario(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    """The loader's check for the `scenario:` section (pure: no writes)."""
    return parse_scenario(value, profile)[1]


def parse_scenario(value: Any, profile: dict[str, Any]) -> tuple[Scenario | None, list[ErrorItem]]:
    c = _Checker()
    raw = c.mapping(value, SECTION)
    if raw is None:
        return None, c.errors
    facts = _facts(profile)
    c.unknown(raw, SCENARIO_FIELDS, SECTION)

    seed = 0
    if "seed" in raw:
        try:
            seed = check_int(raw["seed"], minimum=0, maximum=2**63 - 1)
        except FieldProblem as exc:
            c.bad(f"{SECTION}.seed", str(exc))
    start = _start(c, raw)
    duration = c.seconds(raw, "duration_s", SECTION, minimum=1)
    step = c.seconds(raw, "step_s", SECTION, minimum=1, maximum=86_400)
    if duration is not None and step is not None:
        if step > duration:
            c.bad(f"{SECTION}.step_s", "must not be longer than duration_s")
        elif duration / step > MAX_STEPS:
            c.bad(f"{SECTION}.step_s", f"gives more than {MAX_STEPS} steps: use a longer step")
    horizon = duration if duration is not None else MAX_DURATION_S

    sessions = _sessions(c, raw.get("sessions", []), facts, horizon)
    random_sessions = _random_sessions(c, raw.get("random_sessions"), facts, horizon)
    loads = _loads(c, raw.get("loads", []), facts)
    degradations = _degradations(c, raw.get("degradations", []), facts)
    requests = _requests(c, raw.get("requests", []), facts, horizon)
    report_sessions = raw.get("report_sessions", False)
    if not isinstance(report_sessions, bool):
        c.bad(f"{SECTION}.report_sessions", "must be true or false")
    if c.errors or start is None or duration is None or step is None:
        return None, c.errors
    return (
        Scenario(
            seed=seed,
            start=start,
            duration_s=duration,
            step_s=step,
            sessions=tuple(sorted(sessions, key=lambda s: (s.asset_id, s.arrive_s))),
            random_sessions=random_sessions,
            loads=tuple(sorted(loads, key=lambda ld: ld.asset_id)),
            degradations=tuple(degradations),
            requests=tuple(sorted(requests, key=lambda r: (r.at_s, r.index))),
            report_sessions=report_sessions,
        ),
        [],
    )


def _start(c: _Checker, raw: dict) -> datetime | None:
    field = f"{SECTION}.start"
    if "start" not in raw:
        c.bad(field, "is required (an ISO 8601 time with offset, quoted)")
        return None
    value = raw["start"]
    if isinstance(value, datetime):  # YAML reads an unquoted timestamp as a datetime
        if value.tzinfo is None or value.utcoffset() is None:
            c.bad(field, "must carry a UTC offset")
            return None
        return value
    try:
        return check_datetime(value)
    except FieldProblem as exc:
        c.bad(field, str(exc))
        return None


def _list(c: _Checker, value: Any, field: str) -> list:
    if not isinstance(value, list):
        c.bad(field, "must be a list")
        return []
    return value


def _charger(c: _Checker, asset_id: Any, field: str, facts: _Facts) -> str | None:
    try:
        check_id(asset_id, "asset_id")
    except FieldProblem as exc:
        c.bad(field, str(exc))
        return None
    kind = facts.asset_kind.get(asset_id)
    if kind is None:
        c.bad(
            field,
            f"names no asset of this profile: {asset_id!r}",
            "ASSET_NOT_FOUND",
            asset_id=asset_id,
        )
        return None
    if kind != "CHARGER":
        c.bad(field, f"must name a CHARGER, {asset_id!r} is a {kind}", asset_id=asset_id)
        return None
    return asset_id


def _sessions(c: _Checker, value: Any, facts: _Facts, horizon: int) -> list[Session]:
    out: list[Session] = []
    for i, raw in enumerate(_list(c, value, f"{SECTION}.sessions")):
        prefix = f"{SECTION}.sessions[{i}]"
        if c.mapping(raw, prefix) is None:
            continue
        c.unknown(raw, SESSION_FIELDS, prefix)
        asset_id = None
        if "asset_id" not in raw:
            c.bad(f"{prefix}.asset_id", "is required")
        else:
            asset_id = _charger(c, raw["asset_id"], f"{prefix}.asset_id", facts)
        arrive = c.seconds(raw, "arrive_s", prefix, maximum=max(horizon - 1, 0))
        depart = c.seconds(raw, "depart_s", prefix, minimum=1, maximum=MAX_DURATION_S * 10)
        energy = c.number(raw, "energy_kwh", prefix, positive=True, maximum=MAX_ENERGY_KWH)
        max_kw = c.number(raw, "max_power_kw", prefix, required=False, positive=True)
        ev_phases = raw.get("phases")
        if ev_phases is not None and (
            isinstance(ev_phases, bool) or not isinstance(ev_phases, int) or ev_phases not in (1, 3)
        ):
            c.bad(f"{prefix}.phases", "must be 1 or 3 (the phases the EV charges on)")
            continue
        if arrive is not None and depart is not None and depart <= arrive:
            c.bad(f"{prefix}.depart_s", "must be later than arrive_s")
            continue
        if None in (asset_id, arrive, depart, energy) or ("max_power_kw" in raw and max_kw is None):
            continue
        session = Session(asset_id, arrive, depart, energy, max_kw, f"sessions[{i}]", ev_phases)
        for other in out:
            if other.asset_id == asset_id and other.arrive_s < depart and arrive < other.depart_s:
                c.bad(
                    f"{prefix}.arrive_s",
                    f"overlaps {other.origin} on charger {asset_id!r}: one EV per charger at a time",
                    asset_id=asset_id,
                )
                break
        else:
            out.append(session)
    return out


def _random_sessions(c: _Checker, value: Any, facts: _Facts, horizon: int) -> RandomSessions | None:
    if value is None:
        return None
    prefix = f"{SECTION}.random_sessions"
    if c.mapping(value, prefix) is None:
        return None
    c.unknown(value, RANDOM_FIELDS, prefix)
    count = c.seconds(value, "count", prefix, maximum=MAX_SESSIONS)
    arrive = c.pair(value, "arrive_s", prefix, integer=True)
    if arrive is not None and arrive[1] >= horizon:
        c.bad(f"{prefix}.arrive_s", "must end before duration_s")
        arrive = None
    dwell = c.pair(value, "dwell_s", prefix, integer=True, positive=True)
    energy = c.pair(value, "energy_kwh", prefix, integer=False, positive=True)
    max_kw = None
    if "max_power_kw" in value:
        max_kw = c.pair(value, "max_power_kw", prefix, integer=False, positive=True)
        if max_kw is None:
            return None
    chargers: list[str] = []
    if "chargers" in value:
        for j, item in enumerate(_list(c, value["chargers"], f"{prefix}.chargers")):
            asset_id = _charger(c, item, f"{prefix}.chargers[{j}]", facts)
            if asset_id is not None:
                chargers.append(asset_id)
    elif not any(k == "CHARGER" for k in facts.asset_kind.values()) and count:
        c.bad(prefix, "needs chargers, and the profile has none")
    if None in (count, arrive, dwell, energy):
        return None
    return RandomSessions(count, arrive, dwell, energy, max_kw, tuple(sorted(set(chargers))))


def _loads(c: _Checker, value: Any, facts: _Facts) -> list[LoadCurve]:
    out: list[LoadCurve] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(_list(c, value, f"{SECTION}.loads")):
        prefix = f"{SECTION}.loads[{i}]"
        if c.mapping(raw, prefix) is None:
            continue
        asset_id = raw.get("asset_id")
        try:
            check_id(asset_id, "asset_id")
        except FieldProblem as exc:
            c.bad(f"{prefix}.asset_id", str(exc))
            continue
        kind = facts.asset_kind.get(asset_id)
        if kind is None:
            c.bad(
                f"{prefix}.asset_id",
                f"names no asset of this profile: {asset_id!r}",
                "ASSET_NOT_FOUND",
                asset_id=asset_id,
            )
            continue
        if kind not in LOAD_FIELDS:
            c.bad(
                f"{prefix}.asset_id",
                f"must name a SITE_LOAD, BATTERY or PV, {asset_id!r} is a {kind} "
                "(chargers follow their sessions, meters measure their node)",
                asset_id=asset_id,
            )
            continue
        if asset_id in seen:
            c.bad(
                f"{prefix}.asset_id",
                f"{asset_id!r} already has a curve (loads[{seen[asset_id]}])",
                asset_id=asset_id,
            )
            continue
        seen[asset_id] = i
        c.unknown(raw, LOAD_FIELDS[kind], prefix)
        signed = kind == "BATTERY"
        minimum = None if signed else 0.0
        base = c.number(raw, "base_kw", prefix, required=False, default=0.0, minimum=minimum)
        peak = c.number(raw, "peak_kw", prefix, minimum=minimum)
        noise = c.number(raw, "noise_kw", prefix, required=False, default=0.0)
        daylight = c.number(
            raw, "daylight_h", prefix, required=False, default=12.0, positive=True, maximum=24
        )
        peak_at = raw.get("peak_at")
        hours = None
        match = _HHMM.match(peak_at) if isinstance(peak_at, str) else None
        if match:
            hours = int(match.group(1)) + int(match.group(2)) / 60
        else:
            c.bad(f"{prefix}.peak_at", 'must be a quoted local time "HH:MM"')
        if None in (base, peak, noise, daylight, hours):
            continue
        out.append(LoadCurve(asset_id, kind, base, peak, hours, noise, daylight))
    return out


def _degradations(c: _Checker, value: Any, facts: _Facts) -> list[Degradation]:
    out: list[Degradation] = []
    nodes = facts.node_ids
    for i, raw in enumerate(_list(c, value, f"{SECTION}.degradations")):
        prefix = f"{SECTION}.degradations[{i}]"
        if c.mapping(raw, prefix) is None:
            continue
        c.unknown(raw, DEGRADATION_FIELDS, prefix)
        target = raw.get("target")
        assets: tuple[str, ...] | None = None
        try:
            check_id(target, "target")
        except FieldProblem as exc:
            c.bad(f"{prefix}.target", str(exc))
        else:
            if target in nodes:
                below = subtree_ids(facts.node_pairs, target)
                assets = tuple(sorted(a for a, n in facts.asset_node.items() if n in below))
            elif target in facts.asset_kind:
                assets = (target,)
            else:
                c.bad(
                    f"{prefix}.target",
                    f"names no asset and no Microgrid Node of this profile: {target!r}",
                    "ASSET_NOT_FOUND",
                    asset_id=target,
                )
        kind = raw.get("kind")
        if kind not in DEGRADATION_KINDS:
            c.bad(f"{prefix}.kind", f"must be one of {', '.join(DEGRADATION_KINDS)}")
        start = c.seconds(raw, "from_s", prefix)
        until = c.seconds(raw, "until_s", prefix, minimum=1, maximum=MAX_DURATION_S * 10)
        if start is not None and until is not None and until <= start:
            c.bad(f"{prefix}.until_s", "must be later than from_s (windows are [from_s, until_s))")
            continue
        if assets is None or kind not in DEGRADATION_KINDS or start is None or until is None:
            continue
        out.append(Degradation(target, kind, start, until, assets))
    return out


def _requests(c: _Checker, value: Any, facts: _Facts, horizon: int) -> list[Request]:
    out: list[Request] = []
    for i, raw in enumerate(_list(c, value, f"{SECTION}.requests")):
        prefix = f"{SECTION}.requests[{i}]"
        if c.mapping(raw, prefix) is None:
            continue
        kind = raw.get("kind")
        at = c.seconds(raw, "at_s", prefix, maximum=max(horizon - 1, 0))
        if kind not in REQUEST_KINDS:
            c.bad(f"{prefix}.kind", f"must be one of {', '.join(REQUEST_KINDS)}")
            continue
        required, optional = REQUEST_KINDS[kind]
        c.unknown(raw, ("at_s", "kind", *required, *optional), prefix)
        before = len(c.errors)
        for key in required:
            if key not in raw:
                c.bad(f"{prefix}.{key}", f"is required for {kind}")
        if "circuit_id" in raw:
            circuit_id = raw["circuit_id"]
            if not isinstance(circuit_id, str) or circuit_id not in facts.circuits:
                c.bad(
                    f"{prefix}.circuit_id",
                    f"names no circuit of this profile's legacy_circuits: {circuit_id!r}",
                    "CIRCUIT_NOT_FOUND",
                )
        if "peer" in raw and (not isinstance(raw["peer"], str) or raw["peer"] not in facts.peers):
            c.bad(f"{prefix}.peer", f"names no peer of this profile's oscp_peers: {raw['peer']!r}")
        if "scope" in raw:
            _scope(c, raw["scope"], f"{prefix}.scope", facts)
        if "offline_mode_at_s" in raw:
            c.seconds(raw, "offline_mode_at_s", prefix, maximum=MAX_DURATION_S * 10)
        if "body" in raw and c.mapping(raw["body"], f"{prefix}.body") is not None:
            _body_times(c, kind, raw["body"], f"{prefix}.body")
        if at is None or len(c.errors) > before:
            continue
        fields = {k: v for k, v in raw.items() if k not in ("at_s", "kind")}
        out.append(Request(i, at, kind, fields))
    return out


def _scope(c: _Checker, scope: Any, field: str, facts: _Facts) -> None:
    if scope == {"type": "MICROGRID"}:
        return
    if (
        isinstance(scope, dict)
        and scope.get("type") == "NODE"
        and set(scope) == {"type", "node_id"}
    ):
        if scope["node_id"] not in facts.node_ids:
            c.bad(
                f"{field}.node_id",
                f"names no Microgrid Node of this profile: {scope['node_id']!r}",
                "NODE_NOT_FOUND",
                node_id=str(scope["node_id"]),
            )
        return
    c.bad(field, "must be {type: MICROGRID} or {type: NODE, node_id: ...}")


def _body_times(c: _Checker, kind: str, body: dict, field: str) -> None:
    """The `*_s` times the simulator turns into timestamps must be whole seconds."""
    if kind == "OSCP_FORECAST" and isinstance(body.get("forecasted_blocks"), list):
        for j, block in enumerate(body["forecasted_blocks"]):
            if isinstance(block, dict):
                for key in ("start_s", "end_s"):
                    if key in block:
                        c.seconds(
                            block,
                            key,
                            f"{field}.forecasted_blocks[{j}]",
                            maximum=MAX_DURATION_S * 10,
                        )
    if kind == "CAPABILITY_EVENT" and "observed_at_s" in body:
        c.seconds(body, "observed_at_s", field, maximum=MAX_DURATION_S * 10)
