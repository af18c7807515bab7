"""A real HTTP receiver on 127.0.0.1 (OS-chosen port) that checks the webhook signature and
answers as the test tells it: 200, 422, 500, or only after a while."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SECRET = "s3cret-for-tests"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def signature_ok(self) -> bool:
        expected = "sha256=" + hmac.new(SECRET.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Microgrid-Signature", ""), expected)


@dataclass
class Receiver:
    url: str
    status: int = 200
    delay_s: float = 0.0
    # Answer 409 to a message that is not full, as a receiver that holds nothing must.
    conflict_unless_full: bool = False
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def bodies(self):
        with self.lock:
            return [r.json for r in self.received]


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got = Received(dict(self.headers.items()), body)
            with receiver.lock:
                receiver.received.append(got)
            if receiver.delay_s:
                # "Sleeps": answers late, or never if the test releases it first.
                receiver.release.wait(receiver.delay_s)
            # A receiver that checks the signature refuses a bad one, as real ones do.
            status = receiver.status if got.signature_ok else 401
            if status < 300 and receiver.conflict_unless_full and not got.json.get("full"):
                status = 409
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up waiting

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def receiver_factory():
    servers = []

    def make(status: int = 200, delay_s: float = 0.0) -> Receiver:
        receiver = Receiver(url="", status=status, delay_s=delay_s)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
        server.daemon_threads = True
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, receiver))
        return receiver

    yield make
    for server, receiver in servers:
        receiver.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(receiver_factory):
    return receiver_factory()
