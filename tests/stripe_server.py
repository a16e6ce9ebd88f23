"""A local HTTP server that speaks Stripe's list API, for the Stripe adapter's tests.

``GET /v1/charges`` and ``GET /v1/balance_transactions`` page through the objects given, with
Stripe's ``limit``/``starting_after`` parameters and ``has_more`` answers, filter by
``created[gte]``/``created[lt]``, and refuse a request without the expected bearer key. A
``stall_after`` page count makes the next page wait until ``release`` is set (to kill a run
mid-import).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "sk_test_local"


@dataclass
class FakeStripe:
    objects: dict[str, list[dict[str, Any]]]
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    stall_after: int | None = None
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def page(self, resource: str, query: dict[str, list[str]]) -> dict[str, Any]:
        items = sorted(self.objects.get(resource, []), key=lambda o: o["id"])
        gte = int(query.get("created[gte]", ["0"])[0])
        lt = int(query.get("created[lt]", [str(2**62)])[0])
        items = [o for o in items if gte <= o["created"] < lt]
        after = query.get("starting_after", [None])[0]
        if after is not None:
            items = [o for o in items if o["id"] > after]
        limit = int(query.get("limit", ["10"])[0])
        return {
            "object": "list",
            "url": f"/v1/{resource}",
            "data": items[:limit],
            "has_more": len(items) > limit,
        }


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            fake.requests.append({"path": parts.path, "query": query})
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                return self._send(
                    401,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "message": "Invalid API Key provided",
                        }
                    },
                )
            if fake.stall_after is not None and len(fake.requests) > fake.stall_after:
                fake.stalled.set()
                fake.release.wait(30)
            resource = parts.path.removeprefix("/v1/")
            if resource not in {"charges", "balance_transactions"}:
                return self._send(
                    404,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "message": "Unrecognized request URL",
                        }
                    },
                )
            self._send(200, fake.page(resource, query))

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def fake_stripe(objects: dict[str, list[dict[str, Any]]]) -> Iterator[FakeStripe]:
    fake = FakeStripe(objects)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()


def charge(
    id: str,
    amount: int,
    created: int,
    *,
    currency: str = "usd",
    invoice_id: int | None = None,
    tenant_id: int | None = None,
    refunded: bool = False,
    disputed: bool = False,
) -> dict[str, Any]:
    metadata = {
        k: str(v)
        for k, v in (("invoice_id", invoice_id), ("tenant_id", tenant_id))
        if v is not None
    }
    return {
        "id": id,
        "object": "charge",
        "amount": amount,
        "currency": currency,
        "created": created,
        "status": "succeeded",
        "refunded": refunded,
        "disputed": disputed,
        "metadata": metadata,
    }


def refund_txn(id: str, charge_id: str, amount: int, created: int) -> dict[str, Any]:
    return {
        "id": id,
        "object": "balance_transaction",
        "type": "refund",
        "amount": -amount,
        "currency": "usd",
        "created": created,
        "source": {"id": f"re_{id}", "object": "refund", "charge": charge_id},
    }
