"""A real HTTP receiver on loopback (http.server in a thread) for the webhook tests.

It verifies each request with the pack's shipped :func:`verify_signature`, records what came,
and answers as the test scripted: a list of replies (status, delay, headers) used in turn, the
last one repeated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from saas_tasks.webhooks import WebhookVerificationError, verify_signature


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: Any  # the parsed body, or the verification error's message
    replied: int


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    secret: str = ""
    replies: list[Reply] = field(default_factory=lambda: [Reply()])
    requests: list[Request] = field(default_factory=list)
    arrived: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def script(self, *replies: Reply) -> None:
        with self.lock:
            self.replies = list(replies)

    def received(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def accepted(self) -> list[Request]:
        return [r for r in self.received() if 200 <= r.replied < 300]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verified: Any = verify_signature(body, headers, receiver.secret)
            except WebhookVerificationError as exc:
                verified = f"refused: {exc}"
            with receiver.lock:
                number = receiver.arrived
                receiver.arrived += 1
                reply = receiver.replies[min(number, len(receiver.replies) - 1)]
            time.sleep(reply.delay)
            with receiver.lock:
                receiver.requests.append(Request(self.path, headers, body, verified, reply.status))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            data = reply.body.encode()
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is part of the slow-receiver test


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver(server=None)  # type: ignore[arg-type]
    server = _QuietServer(("127.0.0.1", 0), _handler(receiver))
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
