"""Signing and verifying webhooks the Standard Webhooks way (https://www.standardwebhooks.com).

    webhook-id:         msg_2b8c...            the event id, the same on every retry
    webhook-timestamp:  1732363200             seconds since the epoch, of this attempt
    webhook-signature:  v1,<base64>            HMAC-SHA256 of "{id}.{timestamp}.{body}"

The secret is ``whsec_`` followed by base64 of random bytes; the HMAC key is those bytes.
Signing the id and the timestamp with the body means a captured request cannot be replayed
later (the timestamp falls out of the tolerance window) nor passed off as another event.
Receivers call :func:`verify_signature` on the raw body before parsing it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from saas_tasks.webhooks.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300  # seconds either side of now, as the standard recommends


def generate_secret(nbytes: int = 32) -> str:
    """A new endpoint secret: ``whsec_`` and base64 of ``nbytes`` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def _key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError(
            "the webhook secret is not whsec_<base64>; copy it again from the endpoint"
        ) from None


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one request: ``v1,<base64 HMAC-SHA256>``."""
    content = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(
    secret: str, event_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The three headers of a delivery, signed at ``now``."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, event_id, timestamp, body),
    }


def verify_signature(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Any:
    """Check a received webhook and return its parsed JSON body.

    ``body`` must be the raw request body, before any JSON parsing (re-serialising changes the
    bytes and breaks the signature). Raises :class:`WebhookVerificationError` when a header is
    missing, the timestamp is more than ``tolerance`` seconds from now (a replay or a badly
    wrong clock), or no signature in the header matches (several may be listed, space-separated,
    while a secret is being rotated).
    """
    raw = body.encode() if isinstance(body, str) else body
    lower = {name.lower(): value for name, value in headers.items()}
    try:
        event_id = lower["webhook-id"]
        stamp = lower["webhook-timestamp"]
        offered = lower["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is {int(current - timestamp)}s away from now "
            f"(tolerance {tolerance}s): a replayed or delayed message"
        )
    expected = sign(secret, event_id, timestamp, raw).encode()
    for candidate in offered.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return json.loads(raw)
    raise WebhookVerificationError("no webhook-signature matches this secret and body")
