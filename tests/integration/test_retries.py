"""Retries: only transient errors retry, with growing delays, a bounded number of times; then
the task lands in the dead-letter queue exactly once, with its traceback."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from saas_tasks.reliability import deadletter
from tests import sample_tasks
from tests.conftest import wait_for


def dead_letters(**filters: Any) -> list[Any]:
    return deadletter.list_entries(deadletter.Filters(**filters))


def test_transient_error_retries_then_succeeds(worker: Any) -> None:
    result = sample_tasks.flaky.delay("recovers", failures=2)
    assert result.get(timeout=20) == {"key": "recovers", "attempts": 3}
    assert dead_letters(task="tests.flaky") == []


def test_transient_error_retries_with_growing_delays_then_dead_letters_once(
    worker: Any, redis_client: Any
) -> None:
    result = sample_tasks.flaky.delay("never", failures=99)
    with pytest.raises(Exception, match="attempt 4 fails on purpose"):
        result.get(timeout=30)

    times = [float(t) for t in redis_client.lrange("test:attempt-times:never", 0, -1)]
    assert len(times) == 4  # one run and max_attempts - 1 = 3 retries, never more
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # policy test_fast: base 0.3s doubling, no jitter: 0.3, 0.6, 1.2
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[2] >= 1.2
    assert gaps[0] < gaps[1] < gaps[2]

    entries = wait_for(lambda: dead_letters(task="tests.flaky"), message="the dead letter")
    assert len(entries) == 1
    entry = entries[0]
    assert entry.task_id == result.id
    assert entry.retries == 3
    assert entry.exception_type == "saas_tasks.exceptions.TransientError"
    assert "Traceback" in entry.traceback and "attempt 4 fails on purpose" in entry.traceback
    assert entry.args == ["never"] and entry.kwargs == {"failures": 99}
    assert entry.worker  # the host that ran it
    assert entry.queue == "default"


def test_non_transient_error_dead_letters_at_once_without_retry(
    worker: Any, redis_client: Any
) -> None:
    result = sample_tasks.broken.delay("a bug")
    with pytest.raises(ValueError, match="broken on purpose"):
        result.get(timeout=20)
    entry = wait_for(lambda: dead_letters(task="tests.broken"), message="dead letter")[0]
    assert int(redis_client.get("test:attempts:broken")) == 1
    assert entry.retries == 0
    assert entry.exception_type == "ValueError"
    assert entry.reason == "failure"
    assert entry.args == ["a bug"]


def test_invalid_payload_dead_letters_without_retry_and_names_the_field(worker: Any) -> None:
    result = sample_tasks.charge.delay(invoice_id="not-a-number", amount=-5, currency="usd")
    with pytest.raises(Exception, match=r"invalid payload for tests\.charge"):
        result.get(timeout=20)
    entry = wait_for(lambda: dead_letters(task="tests.charge"), message="dead letter")[0]
    assert entry.reason == "invalid_payload"
    assert entry.exception_type == "saas_tasks.exceptions.InvalidPayload"
    assert "invoice_id" in entry.exception_message and "amount" in entry.exception_message
    assert entry.retries == 0
