"""A token bucket in Redis, shared by every worker process on every host.

Providers limit the account, not the process: 10 workers each allowed 5 messages/s would send
50/s. So the bucket lives in Redis and a Lua script refills and takes tokens atomically, on
Redis's own clock (``TIME``), so that hosts with drifting clocks still agree. A caller that
finds the bucket empty learns how long to wait and sleeps; nothing spins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from saas_tasks.redis_client import get_redis

# KEYS[1] the bucket; ARGV: rate (tokens/s), burst (capacity), tokens wanted.
# Returns 0 when the tokens were taken, else the microseconds to wait before asking again.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000000)
else
  now = at
end
local wait = 0
if tokens >= wanted then
  tokens = tokens - wanted
else
  wait = math.ceil((wanted - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 60000)
return wait
"""


class TokenBucket:
    """``rate`` messages per second for everyone sharing ``name``; ``rate <= 0`` is unlimited."""

    def __init__(
        self,
        name: str,
        rate: float,
        burst: int = 1,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = f"saas_tasks:email:ratelimit:{name}"
        self.rate = rate
        self.burst = max(1, burst)
        self._client = client
        self._sleep = sleep
        self._script: Any = None

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def try_take(self, tokens: int = 1) -> float:
        """Take ``tokens`` now and return 0, or return the seconds to wait (nothing taken)."""
        if self.unlimited:
            return 0.0
        if self._script is None:
            self._script = (self._client or get_redis()).register_script(_TAKE)
        wait_us = int(self._script(keys=[self.key], args=[self.rate, self.burst, tokens]))
        return wait_us / 1_000_000

    def take(self, tokens: int = 1) -> float:
        """Block until ``tokens`` are taken; returns the seconds spent waiting."""
        waited = 0.0
        while (wait := self.try_take(tokens)) > 0:
            self._sleep(wait)
            waited += wait
        return waited
