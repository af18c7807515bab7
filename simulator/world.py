"""The simulated depot: EVs on chargers, uncontrolled loads and meters (pure: no ORM, no clock).

The world is what the product steers but does not own. It knows the scenario's
sessions and curves, receives setpoints from the simulator's dispatcher and
produces the telemetry the product reads. Everything random comes from the one
`random.Random(seed)` handed in, consumed in a fixed order (random sessions in
their order, then per step the load curves by asset_id), and every collection
is visited in sorted id order, so the same profile and seed give the same world
whatever the order of nodes and assets in the file.

The model (spec 8.2):
- An EV draws `min(setpoint, its max_power_kw, the charger's max_power_kw)`
  until it departs or has the energy it came for; a charger whose setpoint is
  past its `valid_until` (or that never had one) draws its
  `failsafe_power_kw` instead. Draws are integrated exactly between events
  (arrivals, departures, setpoint expiries, and every time the simulator stops
  the clock), so energy is conserved.
- A charger reports `connected` (an EV is plugged in), `requested_kw` (what
  the EV asks for now: its max_power_kw, or less when the energy it still
  needs would be delivered within one step at that power: remaining kWh
  spread over one step) and `power_kw` (the average it drew since its
  previous report).
- SITE_LOAD and BATTERY follow a raised cosine over the local day,
  `base + (peak - base) * (1 + cos(2 pi (h - peak_at) / 24)) / 2`; PV a
  half-cosine around its peak, `peak * cos(pi (h - peak_at) / daylight_h)`
  while positive (0 at night); each plus uniform noise in
  `[-noise_kw, +noise_kw]`; never negative except a battery. An uncontrolled
  asset without a curve draws 0.
- A METER reports the flow through its node: what the chargers below it drew
  since the previous report plus the loads below it now, minus PV (never
  below 0: meters measure import).
- Phases (issue 19): an EV charges on `phases` of a session (1 or 3; default as
  many as its charger has), never on more than its charger has; a single-phase
  EV on a three-phase charger draws on the charger's L1. Chargers report
  `current_a` of their own L1, L2, L3: the average power over the phases drawn
  on, `kW x 1000 / (voltage_v x phases drawn)`, at their node's voltage; meters
  report their node's phase currents: the chargers' currents mapped through
  their `phase_rotation`, plus the uncontrolled loads spread evenly over the
  node's phases (PV subtracted likewise, each phase at least 0).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from balancing.phase_alloc import rotation_phases
from simulator.scenario import LoadCurve, Scenario, Session

_EPS = 1e-9


def _r3(value: float) -> float:
    out = round(value, 3)
    return 0.0 if out == 0 else out


def _floor3(value: float) -> float:
    return math.floor(value * 1000 + 1e-6) / 1000


@dataclass
class SessionState:
    session: Session
    max_power_kw: float  # the EV's own limit (the charger's maximum when the profile gives none)
    delivered_kwh: float = 0.0

    @property
    def remaining_kwh(self) -> float:
        return max(self.session.energy_kwh - self.delivered_kwh, 0.0)


@dataclass
class ChargerState:
    asset_id: str
    node_id: str
    max_power_kw: float
    failsafe_power_kw: float
    sessions: list[SessionState] = field(default_factory=list)
    setpoint_kw: float | None = None
    valid_until_s: float | None = None
    energy_since_report_kwh: float = 0.0
    phases: int = 3
    wired: tuple[int, ...] = (0, 1, 2)  # node phases of the charger's own L1, L2, L3
    voltage_v: float = 230.0

    def session_at(self, t: float) -> SessionState | None:
        for s in self.sessions:
            if s.session.arrive_s <= t < s.session.depart_s:
                return s
        return None

    def advance(self, a: float, b: float) -> float:
        """Integrate the draw over [a, b); returns the energy delivered (kWh)."""
        if b <= a:
            return 0.0
        cuts = {a, b}
        for s in self.sessions:
            for edge in (s.session.arrive_s, s.session.depart_s):
                if a < edge < b:
                    cuts.add(float(edge))
        if self.valid_until_s is not None and a < self.valid_until_s < b:
            cuts.add(self.valid_until_s)
        points = sorted(cuts)
        total = 0.0
        for x, y in zip(points, points[1:], strict=False):
            ev = self.session_at(x)
            if ev is None or ev.remaining_kwh <= _EPS:
                continue
            hears = (
                self.setpoint_kw is not None
                and self.valid_until_s is not None
                and x < self.valid_until_s
            )
            target = self.setpoint_kw if hears else self.failsafe_power_kw
            power = max(min(target, ev.max_power_kw, self.max_power_kw), 0.0)
            energy = min(power * (y - x) / 3600.0, ev.remaining_kwh)
            ev.delivered_kwh += energy
            total += energy
        self.energy_since_report_kwh += total
        return total


@dataclass(frozen=True)
class SessionResult:
    asset_id: str
    arrive_s: int
    depart_s: int
    energy_kwh: float
    delivered_kwh: float
    origin: str
    departed: bool  # False: still plugged in when the run ended


class World:
    def __init__(
        self,
        scenario: Scenario,
        *,
        nodes: list[dict],
        assets: list[dict],
        timezone_name: str,
        rng: random.Random,
    ) -> None:
        self.scenario = scenario
        self.rng = rng
        self.t = 0.0
        self.last_report_t: float | None = None
        try:
            self.zone = ZoneInfo(timezone_name)
        except Exception:  # an unusable zone name: evaluate in UTC, as the limits do
            self.zone = ZoneInfo("UTC")
        parent = {n["node_id"]: n["parent_id"] for n in nodes}
        self.node_ids = [n["node_id"] for n in nodes]
        self.kind = {a["asset_id"]: a["kind"] for a in assets}
        self.asset_node = {a["asset_id"]: a["node_id"] for a in assets}
        # node -> the assets in its subtree, for meters
        self.below: dict[str, list[str]] = {n: [] for n in self.node_ids}
        for a in sorted(assets, key=lambda a: a["asset_id"]):
            node = a["node_id"]
            while node is not None:
                self.below[node].append(a["asset_id"])
                node = parent.get(node)
        self.voltage = {n["node_id"]: float(n.get("voltage_v") or 230.0) for n in nodes}
        self.node_phases = {n["node_id"]: int(n.get("phases") or 3) for n in nodes}
        self.chargers: dict[str, ChargerState] = {}
        for a in sorted(assets, key=lambda a: a["asset_id"]):
            if a["kind"] != "CHARGER":
                continue
            phases = int(a.get("phases") or 3)
            self.chargers[a["asset_id"]] = ChargerState(
                a["asset_id"],
                a["node_id"],
                float(a["max_power_kw"]),
                float(a["failsafe_power_kw"] if a["failsafe_power_kw"] is not None else 0.0),
                phases=phases,
                wired=rotation_phases(phases, a.get("phase_rotation")),
                voltage_v=self.voltage[a["node_id"]],
            )
        self.curves: dict[str, LoadCurve] = {c.asset_id: c for c in scenario.loads}
        self.load_kw: dict[str, float] = {
            a["asset_id"]: 0.0
            for a in sorted(assets, key=lambda a: a["asset_id"])
            if a["kind"] in ("SITE_LOAD", "BATTERY", "PV")
        }
        self.turned_away = 0
        for session in (*scenario.sessions, *self._random_sessions()):
            charger = self.chargers[session.asset_id]
            ev_max = session.max_power_kw or charger.max_power_kw
            charger.sessions.append(SessionState(session, ev_max))
        for charger in self.chargers.values():
            charger.sessions.sort(key=lambda s: s.session.arrive_s)

    # ---- set up -------------------------------------------------------------------------------

    def _random_sessions(self) -> list[Session]:
        spec = self.scenario.random_sessions
        if spec is None or not spec.count:
            return []
        pool = list(spec.chargers or sorted(self.chargers))
        busy: dict[str, list[tuple[int, int]]] = {a: [] for a in pool}
        for s in self.scenario.sessions:
            if s.asset_id in busy:
                busy[s.asset_id].append((s.arrive_s, s.depart_s))
        out: list[Session] = []
        rng = self.rng
        for i in range(spec.count):
            arrive = rng.randint(*spec.arrive_s)
            dwell = rng.randint(*spec.dwell_s)
            energy = round(rng.uniform(*spec.energy_kwh), 1)
            max_kw = round(rng.uniform(*spec.max_power_kw), 1) if spec.max_power_kw else None
            depart = arrive + dwell
            free = [a for a in pool if all(depart <= lo or hi <= arrive for lo, hi in busy[a])]
            # Drawn even when nothing is free, so one turned-away EV does not shift the rest.
            pick = rng.random()
            if not free:
                self.turned_away += 1
                continue
            asset_id = free[min(int(pick * len(free)), len(free) - 1)]
            busy[asset_id].append((arrive, depart))
            out.append(
                Session(asset_id, arrive, depart, max(energy, 0.1), max_kw, f"random_sessions[{i}]")
            )
        return out

    # ---- time ---------------------------------------------------------------------------------

    def advance(self, to_s: float) -> None:
        """Let the chargers draw until `to_s` (seconds from start)."""
        if to_s < self.t:
            raise ValueError("the world never runs backwards")
        for charger in self.chargers.values():
            charger.advance(self.t, to_s)
        self.t = to_s

    def local_hours(self, t_s: float) -> float:
        moment: datetime = (self.scenario.start + timedelta(seconds=t_s)).astimezone(self.zone)
        return moment.hour + moment.minute / 60 + moment.second / 3600

    def update_loads(self, t_s: float) -> None:
        """The uncontrolled assets' power at `t_s` (draws noise in asset_id order)."""
        hours = self.local_hours(t_s)
        for asset_id in sorted(self.curves):
            c = self.curves[asset_id]
            delta = (hours - c.peak_at_h + 12) % 24 - 12  # hours from the peak, in [-12, 12)
            if c.kind == "PV":
                shape = math.cos(math.pi * delta / c.daylight_h)
                value = c.peak_kw * shape if abs(delta) < c.daylight_h / 2 else 0.0
            else:
                value = (
                    c.base_kw
                    + (c.peak_kw - c.base_kw) * (1 + math.cos(2 * math.pi * delta / 24)) / 2
                )
            if c.noise_kw > 0:
                value += self.rng.uniform(-c.noise_kw, c.noise_kw)
            if c.kind != "BATTERY":
                value = max(value, 0.0)
            self.load_kw[asset_id] = _r3(value)

    # ---- setpoints ----------------------------------------------------------------------------

    def apply_setpoint(self, asset_id: str, limit_kw: float, valid_until_s: float) -> None:
        charger = self.chargers.get(asset_id)
        if charger is not None:
            charger.setpoint_kw = limit_kw
            charger.valid_until_s = valid_until_s

    def drop_setpoints(self) -> None:
        """A full dispatch message: the chargers hold only what it names."""
        for charger in self.chargers.values():
            charger.setpoint_kw = None
            charger.valid_until_s = None

    def renew_setpoints(self, now_s: float, valid_until_s: float) -> None:
        """Every setpoint still held at `now_s` (not past its expiry) takes the message's
        valid_until; an expired one is not revived (the charger stays on its failsafe)."""
        for charger in self.chargers.values():
            if (
                charger.setpoint_kw is not None
                and charger.valid_until_s is not None
                and charger.valid_until_s > now_s
            ):
                charger.valid_until_s = valid_until_s

    def apply_budget(self, asset_ids: list[str], budget_kw: float, valid_until_s: float) -> None:
        """Act as the external controller of a delegated scope: share its budget fairly.

        Water filling over the connected chargers of the scope by what they ask
        for (max-min fair, in asset_id order for ties), setpoints rounded down
        to 0.1 kW so their sum stays within the budget.
        """
        wants = {}
        for asset_id in sorted(asset_ids):
            charger = self.chargers.get(asset_id)
            if charger is None:
                continue
            wants[asset_id] = self.requested_kw(charger, self.t)
        left = max(budget_kw, 0.0)
        share: dict[str, float] = dict.fromkeys(wants, 0.0)
        pending = sorted(wants, key=lambda a: (wants[a], a))
        while pending:
            fair = left / len(pending)
            asset_id = pending[0]
            give = min(wants[asset_id], fair)
            share[asset_id] = give
            left -= give
            pending.pop(0)
        for asset_id, kw in share.items():
            self.apply_setpoint(asset_id, math.floor(kw * 10 + 1e-6) / 10, valid_until_s)

    # ---- telemetry ----------------------------------------------------------------------------

    def requested_kw(self, charger: ChargerState, t_s: float) -> float:
        ev = charger.session_at(t_s)
        if ev is None or ev.remaining_kwh <= _EPS:
            return 0.0
        return _floor3(min(ev.max_power_kw, ev.remaining_kwh * 3600.0 / self.scenario.step_s))

    def readings(self, t_s: float, silent: set[str], observed_at: str) -> list[dict]:
        """Every asset's reading at `t_s`, except those in `silent` (degraded)."""
        elapsed = t_s - (self.last_report_t if self.last_report_t is not None else 0.0)
        drawn: dict[str, float] = {}
        for asset_id, charger in self.chargers.items():
            drawn[asset_id] = (
                charger.energy_since_report_kwh * 3600.0 / elapsed if elapsed > 0 else 0.0
            )
            charger.energy_since_report_kwh = 0.0
        self.last_report_t = t_s
        own_amps = {
            asset_id: self._charger_amps(charger, drawn[asset_id], t_s)
            for asset_id, charger in self.chargers.items()
        }
        out: list[dict] = []
        for asset_id in sorted(self.kind):
            kind = self.kind[asset_id]
            if asset_id in silent:
                continue
            if kind == "CHARGER":
                charger = self.chargers[asset_id]
                connected = charger.session_at(t_s) is not None
                out.append(
                    {
                        "asset_id": asset_id,
                        "power_kw": _r3(drawn[asset_id]),
                        "observed_at": observed_at,
                        "connected": connected,
                        "requested_kw": self.requested_kw(charger, t_s) if connected else 0.0,
                        "current_a": [_r3(x) for x in own_amps[asset_id]],
                    }
                )
            elif kind == "METER":
                node = self.asset_node[asset_id]
                flow = 0.0
                for other in self.below[node]:
                    other_kind = self.kind[other]
                    if other_kind == "CHARGER":
                        flow += drawn[other]
                    elif other_kind == "PV":
                        flow -= self.load_kw[other]
                    elif other_kind in ("SITE_LOAD", "BATTERY"):
                        flow += self.load_kw[other]
                out.append(
                    {
                        "asset_id": asset_id,
                        "power_kw": _r3(max(flow, 0.0)),
                        "observed_at": observed_at,
                        "current_a": self._meter_amps(node, own_amps),
                    }
                )
            else:
                out.append(
                    {
                        "asset_id": asset_id,
                        "power_kw": self.load_kw[asset_id],
                        "observed_at": observed_at,
                    }
                )
        return out

    def _charger_amps(self, charger: ChargerState, kw: float, t_s: float) -> list[float]:
        """The charger's own L1, L2, L3 currents for an average draw of `kw`."""
        ev = charger.session_at(t_s)
        ev_phases = (ev.session.phases if ev is not None else None) or charger.phases
        k = min(ev_phases, charger.phases)
        amps = kw * 1000.0 / (charger.voltage_v * k) if kw > 0 else 0.0
        return [amps if i < k else 0.0 for i in range(3)]

    def _meter_amps(self, node: str, own_amps: dict[str, list[float]]) -> list[float]:
        """The node's phase currents: chargers by their rotation, loads spread evenly."""
        phases = self.node_phases[node]
        amps = [0.0, 0.0, 0.0]
        for other in self.below[node]:
            other_kind = self.kind[other]
            if other_kind == "CHARGER":
                charger = self.chargers[other]
                for k, node_phase in enumerate(charger.wired):
                    amps[node_phase if phases == 3 else 0] += own_amps[other][k]
            elif other_kind in ("SITE_LOAD", "BATTERY", "PV"):
                kw = self.load_kw[other] * (-1.0 if other_kind == "PV" else 1.0)
                share = kw * 1000.0 / (self.voltage[self.asset_node[other]] * phases)
                for p in range(phases):
                    amps[p] += share
        return [_r3(max(x, 0.0)) for x in amps]

    # ---- results ------------------------------------------------------------------------------

    def sessions(self) -> list[SessionResult]:
        out = []
        for asset_id in sorted(self.chargers):
            for s in self.chargers[asset_id].sessions:
                out.append(
                    SessionResult(
                        asset_id,
                        s.session.arrive_s,
                        s.session.depart_s,
                        s.session.energy_kwh,
                        s.delivered_kwh,
                        s.session.origin,
                        s.session.depart_s <= self.t,
                    )
                )
        return out
