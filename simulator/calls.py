"""Scenario requests, made as real HTTP calls in-process against the product's URL routes.

Each request goes through Django's URL resolver, middleware, authentication,
permissions, views and services exactly as a client's would (DRF's APIClient,
no network; marked secure and addressed to an allowed host, so production
settings answer them as they answer a client: microgrid.common.inprocess). Who calls:

- REBALANCE: a simulator user in the `support` role (canonical write);
- LEGACY_REBALANCE, LEGACY_TOU_WRITE, CAPABILITY_EVENT: a simulator user in
  the `integration` role (legacy clients and status ingest);
- OSCP_*: the peer itself, `Authorization: Token <the peer's token from the
  profile>`, with `X-Request-ID` / `X-Correlation-ID` = `sim-<n>` (the
  request's position in time order: unique within a run, the same in every
  run; `simulate` removes the peer's earlier messages before it starts).

Times in bodies are given in scenario seconds and sent as timestamps:
`forecasted_blocks[].start_s/end_s` -> `start_time/end_time`,
`offline_mode_at_s` -> `offline_mode_at`, a capability event's
`observed_at_s` (default: the request's `at_s`) -> `observed_at`.
The live demo feed (`demo_feed`) plays the same requests on the wall clock at
`speed` scenario seconds per real second: its timestamps are `start + s / speed`,
its request ids `demo-<run>-<n>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from microgrid.common.inprocess import InProcessClient
from microgrid.common.models import ApiToken
from microgrid.common.roles import INTEGRATION, SUPPORT
from microgrid.topology.services import microgrid_memberships_grant
from simulator.scenario import Request

OSCP_PATHS = {
    "OSCP_FORECAST": "update_group_capacity_forecast",
    "OSCP_HEARTBEAT": "heartbeat",
    "OSCP_HANDSHAKE": "handshake",
}
SIMULATOR_USERS = {SUPPORT: "simulator-support", INTEGRATION: "simulator-integration"}


def _iso(start: datetime, seconds: float, speed: float = 1.0) -> str:
    return (start + timedelta(seconds=seconds / speed)).isoformat()


@dataclass
class Prepared:
    method: str
    path: str
    body: dict[str, Any] | None
    caller: str  # "support", "integration" or "peer:<name>"


def prepare(
    request: Request, *, microgrid_id: str, start: datetime, speed: float = 1.0
) -> Prepared:
    """The HTTP call a scenario request stands for (pure). `speed`: scenario seconds per
    second of the clock the timestamps are on (1 for `simulate`)."""
    f = request.fields
    kind = request.kind
    if kind == "REBALANCE":
        body = {"scope": f["scope"]} if "scope" in f else {}
        return Prepared("POST", f"/api/microgrids/{microgrid_id}/rebalance/", body, SUPPORT)
    if kind == "LEGACY_REBALANCE":
        return Prepared("POST", f"/api/circuit/{f['circuit_id']}/rebalance_load", None, INTEGRATION)
    if kind == "LEGACY_TOU_WRITE":
        return Prepared(
            "POST", f"/api/circuit/{f['circuit_id']}/tou_limits", f["body"], INTEGRATION
        )
    if kind == "CAPABILITY_EVENT":
        body = dict(f["body"])
        observed = body.pop("observed_at_s", request.at_s)
        body.setdefault("observed_at", _iso(start, observed, speed))
        return Prepared(
            "POST", f"/api/microgrids/{microgrid_id}/capabilities/events/", body, INTEGRATION
        )
    if kind == "OSCP_HEARTBEAT":
        body = {"offline_mode_at": _iso(start, f["offline_mode_at_s"], speed)}
    elif kind == "OSCP_FORECAST":
        body = dict(f["body"])
        blocks = body.get("forecasted_blocks")
        if isinstance(blocks, list):
            body["forecasted_blocks"] = [_block(b, start, speed) for b in blocks]
    else:
        body = f["body"]
    return Prepared("POST", f"/oscp/fp/2.0/{OSCP_PATHS[kind]}", body, f"peer:{f['peer']}")


def _block(block: Any, start: datetime, speed: float) -> Any:
    if not isinstance(block, dict):
        return block
    out = {k: v for k, v in block.items() if k not in ("start_s", "end_s")}
    if "start_s" in block:
        out["start_time"] = _iso(start, block["start_s"], speed)
    if "end_s" in block:
        out["end_time"] = _iso(start, block["end_s"], speed)
    return out


class Caller:
    """Makes the calls: API tokens for the simulator users, revoked when the run ends."""

    def __init__(
        self, peers: dict[str, str], microgrid_id: str, request_prefix: str = "sim"
    ) -> None:
        self.peers = peers
        # X-Request-ID: a peer's repeated id is a no-op (OSCP replay), so a live feed that
        # plays its scenario again and again names each run apart.
        self.request_prefix = request_prefix
        # The simulator's users call as a depot's own clients do: members of its microgrid.
        self.microgrid_id = microgrid_id
        self._keys: dict[str, str] = {}
        self._tokens: list[ApiToken] = []
        self.count = 0

    def _key(self, role: str) -> str:
        if role not in self._keys:
            user, _ = get_user_model().objects.get_or_create(username=SIMULATOR_USERS[role])
            if user.has_usable_password():
                user.set_unusable_password()
                user.save(update_fields=["password"])
            group, _ = Group.objects.get_or_create(name=role)
            user.groups.add(group)
            microgrid_memberships_grant(user=user, microgrid_ids=[self.microgrid_id])
            token, key = ApiToken.issue(user=user, name="depot simulator run")
            self._tokens.append(token)
            self._keys[role] = key
        return self._keys[role]

    def call(self, prepared: Prepared) -> tuple[int, Any]:
        self.count += 1
        client = InProcessClient()
        headers: dict[str, str] = {}
        if prepared.caller.startswith("peer:"):
            token = self.peers.get(prepared.caller[5:], "")
            headers["HTTP_AUTHORIZATION"] = f"Token {token}"
            headers["HTTP_X_REQUEST_ID"] = f"{self.request_prefix}-{self.count}"
            headers["HTTP_X_CORRELATION_ID"] = f"{self.request_prefix}-{self.count}"
        else:
            headers["HTTP_AUTHORIZATION"] = f"Token {self._key(prepared.caller)}"
        send = getattr(client, prepared.method.lower())
        if prepared.body is None:
            response = send(prepared.path, **headers)
        else:
            response = send(
                prepared.path,
                data=json.dumps(prepared.body),
                content_type="application/json",
                **headers,
            )
        return response.status_code, _answer(response)

    def close(self) -> None:
        now = timezone.now()
        for token in self._tokens:
            token.revoked_at = now
            token.save(update_fields=["revoked_at"])
        self._tokens.clear()
        self._keys.clear()


def _answer(response) -> Any:
    content = response.content
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return {"text": content.decode("utf-8", "replace")[:200]}
