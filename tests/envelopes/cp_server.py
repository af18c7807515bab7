"""A small, real OSCP 2.0 Capacity Provider for tests: an HTTP server on 127.0.0.1 (port
chosen by the OS) that checks the token on every request, records what it receives, answers
as told, and sends what a CP sends (messages shaped as OSCP 2.0 defines them, the way the
public pyoscp project encodes them)."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str  # relative to the CP's base URL, e.g. "/heartbeat"
    headers: dict[str, str]  # names lower-cased
    body: Any
    status: int  # what the CP answered


@dataclass
class CapacityProvider:
    token: str = field(default_factory=lambda: "cp-token-" + secrets.token_hex(12))
    received: list[Received] = field(default_factory=list)
    status_by_path: dict[str, int] = field(default_factory=dict)
    fp_token: str | None = None  # the token this CP uses to call the FP
    fp_base_url: str | None = None
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/oscp/cp/2.0"

    # -- receiving ------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = handler.path.removeprefix("/oscp/cp/2.0")
        expected = f"Token {self.token}"
        status = self.status_by_path.get(path, 204)
        if handler.headers.get("Authorization") != expected:
            status = 401
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body, status = raw, 400
        with self.lock:
            self.received.append(
                Received(
                    handler.command,
                    path,
                    {k.lower(): v for k, v in handler.headers.items()},
                    body,
                    status,
                )
            )
            # A register from the FP hands us the token to use with it.
            if path == "/register" and status == 204 and isinstance(body, dict):
                self.fp_token = body.get("token")
                urls = body.get("version_url") or [{}]
                self.fp_base_url = urls[0].get("base_url")
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def got(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Poll (with a deadline) until `count` messages came to `path`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.got(path)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{path}: {len(self.got(path))} of {count} message(s) arrived")

    # -- sending --------------------------------------------------------------------------------

    def send(
        self,
        fp_url: str,
        path: str,
        body: Any = None,
        *,
        method: str = "POST",
        token: str | None = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """One message to the FP, as a CP sends it: Authorization: Token, X-Request-ID."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"{fp_url}{path}", data=data, method=method)
        request.add_header("Authorization", f"Token {token or self.fp_token}")
        request.add_header("X-Request-ID", request_id or secrets.token_urlsafe(8))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, None
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
            return exc.code, json.loads(text) if text else None


def start_cp(**kwargs) -> CapacityProvider:
    cp = CapacityProvider(**kwargs)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            cp.handle(self)

        do_PUT = do_DELETE = do_POST

        def log_message(self, *args):
            pass

    cp.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=cp.server.serve_forever, daemon=True).start()
    return cp


def stop_cp(cp: CapacityProvider) -> None:
    cp.server.shutdown()
    cp.server.server_close()
