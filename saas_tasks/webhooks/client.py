"""One POST to a webhook receiver, and what it came to as an :class:`Attempt`.

Connects to the address :mod:`~saas_tasks.webhooks.addresses` checked (the URL's host goes in
the Host header and, for https, in SNI and certificate checking), with separate connect and read
timeouts, no redirects followed (a redirect could point anywhere, the metadata service
included), no proxies from the environment, and at most ``EXCERPT_BYTES`` of the answer read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx

from saas_tasks.settings import get_settings
from saas_tasks.webhooks.addresses import resolve
from saas_tasks.webhooks.errors import AddressRefused, InvalidEndpoint

EXCERPT_BYTES = 1024
USER_AGENT = "saas-tasks-webhooks/1"

#: ``succeeded``: 2xx. ``retry``: worth another attempt later. ``failed``: never retried.
Verdict = Literal["succeeded", "retry", "failed"]
RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class Attempt:
    verdict: Verdict
    status_code: int | None
    excerpt: str | None
    duration_ms: int
    error: str | None
    retry_after: float | None = None


def verdict_for(status: int) -> Verdict:
    """2xx succeeds; 5xx, 408 and 429 retry; anything else (410 included) is final."""
    if 200 <= status < 300:
        return "succeeded"
    if status >= 500 or status in RETRY_STATUSES:
        return "retry"
    return "failed"


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def post(url: str, body: bytes, headers: dict[str, str]) -> Attempt:
    """POST ``body`` to ``url``; never raises for the receiver's failures, only reports them."""
    settings = get_settings()
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = resolve(url, settings.webhook_networks)
    except (AddressRefused, InvalidEndpoint) as exc:
        return Attempt("failed", None, None, elapsed(), str(exc))
    except ConnectionError as exc:
        return Attempt("retry", None, None, elapsed(), str(exc))
    request_url = httpx.URL(url).copy_with(host=target.address)
    timeout = httpx.Timeout(
        connect=settings.webhook_connect_timeout,
        read=settings.webhook_read_timeout,
        write=settings.webhook_read_timeout,
        pool=settings.webhook_connect_timeout,
    )
    sent = {
        **headers,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": httpx.URL(url).netloc.decode("ascii"),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST", request_url, content=body, headers=sent, extensions=extensions
            ) as response,
        ):
            excerpt = _excerpt(response)
    except httpx.TimeoutException as exc:
        return Attempt("retry", None, None, elapsed(), f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return Attempt("retry", None, None, elapsed(), f"{type(exc).__name__}: {exc}")
    status = response.status_code
    verdict = verdict_for(status)
    error = None
    if 300 <= status < 400:
        error = f"HTTP {status}: redirects are not followed; give the final URL"
    elif verdict != "succeeded":
        error = f"HTTP {status}"
    wait = retry_after(response.headers.get("retry-after")) if verdict == "retry" else None
    return Attempt(verdict, status, excerpt, elapsed(), error, wait)


def _excerpt(response: httpx.Response) -> str:
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace")
