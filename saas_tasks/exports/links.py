"""Signed, expiring download links for local storage, and the helper a web app mounts.

A link is ``{SAAS_TASKS_EXPORT_BASE_URL}/{key}?expires={unix time}&signature={hmac}``, the
HMAC-SHA256 of the key and the expiry under ``SAAS_TASKS_SECRET_KEY``. Changing the key, the
expiry or the signature, or arriving after the expiry, is refused with :class:`LinkRefused`.
Comparison is constant-time. Keys are checked to stay under the storage root.

Mount in FastAPI/Starlette (any ASGI framework)::

    from saas_tasks.exports.links import download_app
    app.mount("/exports/download", download_app())

or, in any framework, call :func:`verify` with the path and query and send the file it returns.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from saas_tasks.exports.errors import LinkRefused
from saas_tasks.settings import get_settings

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def check_key(key: str) -> str:
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or any(p in {"..", "."} for p in parts) or "\\" in key:
        raise LinkRefused(f"invalid export key {key!r}")
    return key


def resolve_under(root: Path, key: str) -> Path:
    """``root/key``, refusing any key that would leave ``root``."""
    check_key(key)
    base = root.resolve()
    path = (base / key).resolve()
    if base not in path.parents:
        raise LinkRefused(f"invalid export key {key!r}")
    return path


def signature(key: str, expires: int, secret: str | None = None) -> str:
    secret = secret or get_settings().secret_key
    message = f"{key}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(base_url: str, key: str, expires: int) -> str:
    check_key(key)
    query = f"expires={expires}&signature={signature(key, expires)}"
    return f"{base_url.rstrip('/')}/{quote(key)}?{query}"


def verify(key: str, expires: str | int, given: str, now: float | None = None) -> str:
    """The key, if ``given`` signs it and ``expires`` has not passed; else :class:`LinkRefused`."""
    check_key(key)
    try:
        deadline = int(expires)
    except (TypeError, ValueError):
        raise LinkRefused("the link's expiry is not a number") from None
    if not hmac.compare_digest(signature(key, deadline), str(given)):
        raise LinkRefused("the link's signature does not match: it was altered")
    if (time.time() if now is None else now) >= deadline:
        raise LinkRefused("the link has expired: ask for a new export link")
    return key


def verify_url(url: str, base_url: str | None = None, now: float | None = None) -> str:
    """Check a full link as :func:`sign` made it; returns the key."""
    base = urlsplit((base_url or get_settings().export_base_url).rstrip("/"))
    parts = urlsplit(url)
    if not parts.path.startswith(base.path + "/"):
        raise LinkRefused("the link does not point at the export download path")
    query = parse_qs(parts.query)
    key = unquote(parts.path[len(base.path) + 1 :])
    return verify(key, query.get("expires", [""])[-1], query.get("signature", [""])[-1], now)


def download_app(root: Path | None = None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A small ASGI app that serves verified local exports (403 when refused)."""
    from saas_tasks.exports.storage import LocalStorage, get_storage

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        storage = get_storage()
        base = root or (storage.root if isinstance(storage, LocalStorage) else None)
        path = str(scope.get("path", ""))
        mount = str(scope.get("root_path", ""))
        if mount and path.startswith(mount):
            path = path[len(mount) :]
        query = parse_qs(bytes(scope.get("query_string", b"")).decode())
        try:
            if base is None:
                raise LinkRefused("local downloads are off: exports are stored on S3")
            key = verify(
                unquote(path.lstrip("/")),
                query.get("expires", [""])[-1],
                query.get("signature", [""])[-1],
            )
            file = resolve_under(base, key)
            if not file.is_file():
                raise LinkRefused("no such export")
        except LinkRefused as exc:
            body = str(exc).encode()
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        disposition = f"attachment; filename*=UTF-8''{quote(file.name)}"
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(file.stat().st_size).encode()),
            (b"content-disposition", disposition.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with file.open("rb") as handle:
            while chunk := handle.read(256 * 1024):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app
