"""The Redis token bucket on its own (the system tier proves it across worker processes)."""

from __future__ import annotations

import time
from typing import Any

from saas_tasks.email.ratelimit import TokenBucket


def test_the_token_bucket_lets_one_message_through_every_one_over_rate_seconds(
    clean_state: None, redis_client: Any
) -> None:
    bucket = TokenBucket("test-spacing", rate=20, burst=1, client=redis_client)
    started = time.monotonic()
    for _ in range(11):
        bucket.take()
    assert time.monotonic() - started >= 10 / 20 * 0.9


def test_two_buckets_with_the_same_name_share_their_tokens(
    clean_state: None, redis_client: Any
) -> None:
    one = TokenBucket("test-shared", rate=1, burst=2, client=redis_client)
    two = TokenBucket("test-shared", rate=1, burst=2, client=redis_client)
    assert one.try_take() == 0 and two.try_take() == 0  # the burst of two, between them
    wait = one.try_take()
    assert 0.5 < wait <= 1.0  # the third waits about a second, whoever asks
    assert two.try_take() > 0


def test_a_rate_of_zero_is_unlimited_and_never_asks_redis() -> None:
    class NoRedis:
        def register_script(self, *_: Any) -> Any:
            raise AssertionError("an unlimited bucket must not talk to Redis")

    bucket = TokenBucket("test-unlimited", rate=0, client=NoRedis())
    assert bucket.unlimited and [bucket.take() for _ in range(1000)] == [0.0] * 1000
