"""An overlap lock for scheduled jobs: at most one run of a job at a time.

One object, usable as a context manager or a decorator: an atomic Redis ``SET NX PX`` with a
token, released only by its holder (compare-and-delete in Lua), with a TTL of at least the
job's hard time limit so that a SIGKILLed run frees the job when the TTL runs out and never
blocks it for longer.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import redis

from saas_tasks.exceptions import LockHeld
from saas_tasks.redis_client import get_redis

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class OverlapLock:
    """``with OverlapLock("cleanup.sessions", ttl=600): ...`` raises :class:`LockHeld` if held."""

    prefix = "saas_tasks:lock:"

    def __init__(self, name: str, ttl: float, client: redis.Redis | None = None) -> None:
        if ttl <= 0:
            raise ValueError("an overlap lock needs a positive TTL (seconds)")
        self.name = name
        self.ttl = ttl
        self._client = client
        self._token: str | None = None

    @property
    def key(self) -> str:
        return self.prefix + self.name

    @property
    def client(self) -> redis.Redis:
        return self._client or get_redis()

    def acquire(self) -> bool:
        token = secrets.token_hex(16)
        if self.client.set(self.key, token, nx=True, px=int(self.ttl * 1000)):
            self._token = token
            return True
        return False

    def release(self) -> bool:
        if self._token is None:
            return False
        released = bool(self.client.eval(_RELEASE, 1, self.key, self._token))
        self._token = None
        if not released:
            log.warning(
                "lock %s expired before its holder released it (ttl %ss)", self.name, self.ttl
            )
        return released

    def held_for(self) -> float | None:
        """Seconds the current holder still has, or None when free."""
        remaining = self.client.pttl(self.key)
        return remaining / 1000 if isinstance(remaining, int) and remaining > 0 else None

    def __enter__(self) -> OverlapLock:
        if not self.acquire():
            raise LockHeld(
                f"job {self.name!r} is still running (lock held for another "
                f"{self.held_for() or 0:.0f}s); this run is skipped"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with OverlapLock(self.name, self.ttl, self._client):
                return fn(*args, **kwargs)

        return wrapper


def flush_locks(names: list[str] | None = None, client: Any = None) -> int:
    """Delete locks by name (all the pack's locks when None): for operators after an incident."""
    client = client or get_redis()
    keys = (
        [OverlapLock.prefix + n for n in names]
        if names
        else list(client.scan_iter(OverlapLock.prefix + "*"))
    )
    return int(client.delete(*keys)) if keys else 0
