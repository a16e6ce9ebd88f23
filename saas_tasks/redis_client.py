"""The Redis client for locks, rate limits and enqueue-once keys (not the broker's connection).

redis-py's pool notices a fork and opens fresh connections in the child, so one client per
process is safe under prefork.
"""

from __future__ import annotations

import functools

import redis

from saas_tasks.settings import get_settings


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        get_settings().redis_url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
    )
